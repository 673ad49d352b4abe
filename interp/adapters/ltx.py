"""LTX-Video (``LTXVideoTransformer3DModel``): the model takes patchified tokens (B, F*H*W, C*pt*p*p) plus the
grid size and a text mask; blocks in ``transformer_blocks`` called by keyword, a block returns a tensor."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import LTXVideoTransformer3DModel
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformerBlock
from einops import rearrange
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning
from interp.sites import MOD_HOOKS


class HookedLTXBlock(LTXVideoTransformerBlock):
    """``LTXVideoTransformerBlock.forward`` (diffusers 0.42.1) with hook points; numerically identical.

    Modulation sites: ``scale_shift_table + temb`` unbound into six, (B, 1, d) (per token with per-token timesteps)."""

    HOOKS = ("hook_resid_pre", *MOD_HOOKS, "hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post")
    COPIED_FROM_SHA = "da45ce5e81f3b50e"

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden_states = self.hook_resid_pre(hidden_states)
        batch_size = hidden_states.size(0)
        norm_hidden_states = self.norm1(hidden_states)

        num_ada_params = self.scale_shift_table.shape[0]
        ada_values = self.scale_shift_table[None, None].to(temb.device) + temb.reshape(
            batch_size, temb.size(1), num_ada_params, -1
        )
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ada_values.unbind(dim=2)
        shift_msa = self.hook_mod_shift_msa(shift_msa)
        scale_msa = self.hook_mod_scale_msa(scale_msa)
        gate_msa = self.hook_mod_gate_msa(gate_msa)
        shift_mlp = self.hook_mod_shift_mlp(shift_mlp)
        scale_mlp = self.hook_mod_scale_mlp(scale_mlp)
        gate_mlp = self.hook_mod_gate_mlp(gate_mlp)
        norm_hidden_states = norm_hidden_states * (1 + scale_msa) + shift_msa

        attn_hidden_states = self.attn1(
            hidden_states=norm_hidden_states,
            encoder_hidden_states=None,
            image_rotary_emb=image_rotary_emb,
        )
        hidden_states = hidden_states + self.hook_attn_out(attn_hidden_states * gate_msa)

        attn_hidden_states = self.attn2(
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            image_rotary_emb=None,
            attention_mask=encoder_attention_mask,
        )
        hidden_states = hidden_states + self.hook_cross_attn_out(attn_hidden_states)
        norm_hidden_states = self.norm2(hidden_states) * (1 + scale_mlp) + shift_mlp

        ff_output = self.ff(norm_hidden_states)
        hidden_states = hidden_states + self.hook_mlp_out(ff_output * gate_mlp)

        return self.hook_resid_post(hidden_states)


class LTXAdapter(Adapter):
    family = "ltx"
    class_name = "LTXVideoTransformer3DModel"
    block_lists = ("transformer_blocks",)
    # LTXPipeline's default: (VAE temporal ratio / frame_rate, spatial ratio, spatial ratio) = (8 / 25, 32, 32)
    rope_interpolation_scale = (8 / 25, 32, 32)

    @property
    def model_class(self) -> type[nn.Module]:
        return LTXVideoTransformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
            cross_attention_dim=16, num_layers=3, caption_channels=16,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedLTXBlock

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        return args[0] if args else kwargs["hidden_states"]

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        c = transformer.config
        return (c.patch_size_t, c.patch_size, c.patch_size)

    def _packed(self, transformer: nn.Module) -> int:
        pt, p, _ = self.patch_size(transformer)
        return pt * p * p

    def latent_channels(self, transformer: nn.Module) -> int:
        c = transformer.config
        return (c.out_channels or c.in_channels) // self._packed(transformer)

    def model_in_channels(self, transformer: nn.Module) -> int:
        return transformer.config.in_channels // self._packed(transformer)

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.caption_channels

    def default_extras(self, transformer, batch, text_len, generator) -> dict[str, Tensor]:
        return {"encoder_attention_mask": torch.ones(batch, text_len)}

    def pack(self, transformer: nn.Module, x: Tensor) -> Tensor:
        """(B,C,F,H,W) -> LTX tokens (B, F'H'W', C*pt*p*p), as the LTX pipeline's ``_pack_latents``."""
        pt, p, _ = self.patch_size(transformer)
        return rearrange(x, "b c (f pt) (h ph) (w pw) -> b (f h w) (c pt ph pw)", pt=pt, ph=p, pw=p)

    def unpack(self, transformer: nn.Module, tokens: Tensor, latent_shape: tuple[int, ...]) -> Tensor:
        pt, p, _ = self.patch_size(transformer)
        f, h, w = self.token_grid(transformer, latent_shape)
        return rearrange(
            tokens, "b (f h w) (c pt ph pw) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=p, pw=p
        )

    def readout_conditioning(self, transformer, timestep, text=None) -> dict[str, Tensor]:
        """``embedded_timestep`` of ``time_embed`` (AdaLayerNormSingle), as ``LTXVideoTransformer3DModel.forward``."""
        batch_size = timestep.shape[0]
        _, embedded_timestep = transformer.time_embed(
            timestep.flatten(), batch_size=batch_size, hidden_dtype=self.model_dtype(transformer)
        )
        return {"embedded_timestep": embedded_timestep.view(batch_size, -1, embedded_timestep.size(-1))}

    def readout(self, transformer, resid, conditioning, latent_shape) -> Tensor:
        """``LTXVideoTransformer3DModel.forward``'s end: ``scale_shift_table``, ``norm_out``, ``proj_out``; unpacked."""
        embedded_timestep = conditioning["embedded_timestep"]
        scale_shift_values = transformer.scale_shift_table[None, None] + embedded_timestep[:, :, None]
        shift, scale = scale_shift_values[:, :, 0], scale_shift_values[:, :, 1]
        hidden_states = transformer.norm_out(resid)
        hidden_states = hidden_states * (1 + scale) + shift
        output = transformer.proj_out(hidden_states)
        return self.unpack(transformer, output, latent_shape)

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        self.check_channels(transformer, latents, condition)
        f, h, w = self.token_grid(transformer, latents.shape)
        extras = dict(text.extras)
        mask = extras.pop("encoder_attention_mask", None)
        if mask is None:
            mask = torch.ones(text.encoder_hidden_states.shape[:2], device=latents.device)
        extras.setdefault("rope_interpolation_scale", self.rope_interpolation_scale)
        out = transformer(
            hidden_states=self.pack(transformer, self.concat_condition(latents, condition)),
            encoder_hidden_states=text.encoder_hidden_states,
            timestep=timestep,
            encoder_attention_mask=mask,
            num_frames=f,
            height=h,
            width=w,
            return_dict=False,
            **extras,
        )[0]
        return self.unpack(transformer, out, latents.shape)
