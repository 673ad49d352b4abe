"""Wan 2.1 / 2.2 (``WanTransformer3DModel``): latents (B,C,F,H,W), blocks in ``blocks``, a block returns a tensor."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning
from interp.sites import MOD_HOOKS


class HookedWanBlock(WanTransformerBlock):
    """``WanTransformerBlock.forward`` (diffusers 0.42.1) with hook points; numerically identical.

    Modulation sites: the six chunks of ``scale_shift_table + temb`` (float32), (B, 1, d) or per token (B, T, d)
    for Wan2.2 TI2V's per-token timesteps; the cross-attention is not modulated."""

    HOOKS = ("hook_resid_pre", *MOD_HOOKS, "hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post")
    COPIED_FROM_SHA = "21c15441b009932c"

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: torch.Tensor,
    ) -> torch.Tensor:
        hidden_states = self.hook_resid_pre(hidden_states)
        if temb.ndim == 4:
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
                self.scale_shift_table.unsqueeze(0) + temb.float()
            ).chunk(6, dim=2)
            shift_msa = shift_msa.squeeze(2)
            scale_msa = scale_msa.squeeze(2)
            gate_msa = gate_msa.squeeze(2)
            c_shift_msa = c_shift_msa.squeeze(2)
            c_scale_msa = c_scale_msa.squeeze(2)
            c_gate_msa = c_gate_msa.squeeze(2)
        else:
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
                self.scale_shift_table + temb.float()
            ).chunk(6, dim=1)
        shift_msa = self.hook_mod_shift_msa(shift_msa)
        scale_msa = self.hook_mod_scale_msa(scale_msa)
        gate_msa = self.hook_mod_gate_msa(gate_msa)
        c_shift_msa = self.hook_mod_shift_mlp(c_shift_msa)
        c_scale_msa = self.hook_mod_scale_mlp(c_scale_msa)
        c_gate_msa = self.hook_mod_gate_mlp(c_gate_msa)

        # 1. Self-attention
        norm_hidden_states = (self.norm1(hidden_states.float()) * (1 + scale_msa) + shift_msa).type_as(hidden_states)
        attn_output = self.attn1(norm_hidden_states, None, None, rotary_emb)
        hidden_states = (hidden_states.float() + self.hook_attn_out(attn_output * gate_msa)).type_as(hidden_states)

        # 2. Cross-attention
        norm_hidden_states = self.norm2(hidden_states.float()).type_as(hidden_states)
        attn_output = self.attn2(norm_hidden_states, encoder_hidden_states, None, None)
        hidden_states = hidden_states + self.hook_cross_attn_out(attn_output)

        # 3. Feed-forward
        norm_hidden_states = (self.norm3(hidden_states.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(
            hidden_states
        )
        ff_output = self.ffn(norm_hidden_states)
        hidden_states = (hidden_states.float() + self.hook_mlp_out(ff_output.float() * c_gate_msa)).type_as(
            hidden_states
        )

        return self.hook_resid_post(hidden_states)


class WanAdapter(Adapter):
    family = "wan"
    class_name = "WanTransformer3DModel"
    block_lists = ("blocks",)

    @property
    def model_class(self) -> type[nn.Module]:
        return WanTransformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=16, ffn_dim=32, num_layers=3, cross_attn_norm=True, rope_max_seq_len=32,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedWanBlock

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        return args[0] if args else kwargs["hidden_states"]

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        return tuple(transformer.config.patch_size)  # type: ignore[return-value]

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.text_dim

    def readout_conditioning(self, transformer, timestep, text=None) -> dict[str, Tensor]:
        """``temb`` as ``WanTimeTextImageEmbedding.forward`` computes it (its time part only)."""
        ce = transformer.condition_embedder
        ts_seq_len = None
        if timestep.ndim == 2:  # per-token timesteps (Wan2.2 TI2V)
            ts_seq_len = timestep.shape[1]
            timestep = timestep.flatten()
        t = ce.timesteps_proj(timestep)
        if ts_seq_len is not None:
            t = t.unflatten(0, (-1, ts_seq_len))
        time_embedder_dtype = next(iter(ce.time_embedder.parameters())).dtype
        if t.dtype != time_embedder_dtype and time_embedder_dtype != torch.int8:
            t = t.to(time_embedder_dtype)
        dtype = self.model_dtype(transformer) if text is None else text.encoder_hidden_states.dtype
        return {"temb": ce.time_embedder(t).to(dtype)}

    def readout(self, transformer, resid, conditioning, latent_shape) -> Tensor:
        """``WanTransformer3DModel.forward`` step 5: norm, ``scale_shift_table + temb``, ``proj_out``, unpatchify."""
        temb, hidden_states = conditioning["temb"], resid
        batch_size = resid.shape[0]
        p_t, p_h, p_w = transformer.config.patch_size
        f, h, w = self.token_grid(transformer, latent_shape)
        if temb.ndim == 3:
            table = transformer.scale_shift_table
            shift, scale = (table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift = shift.squeeze(2)
            scale = scale.squeeze(2)
        else:
            shift, scale = (transformer.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        shift = shift.to(hidden_states.device)
        scale = scale.to(hidden_states.device)
        hidden_states = (transformer.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = transformer.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_size, f, h, w, p_t, p_h, p_w, -1)
        hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        self.check_channels(transformer, latents, condition)
        x = self.concat_condition(latents, condition)
        return transformer(
            hidden_states=x,
            timestep=timestep,
            encoder_hidden_states=text.encoder_hidden_states,
            return_dict=False,
            **text.extras,
        )[0]
