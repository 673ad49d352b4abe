"""Wan 2.1 / 2.2 (``WanTransformer3DModel``): latents (B,C,F,H,W), blocks in ``blocks``, a block returns a tensor."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning


class HookedWanBlock(WanTransformerBlock):
    """``WanTransformerBlock.forward`` (diffusers 0.42.1) with hook points; numerically identical."""

    HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post")
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
