"""SkyReels-V2 (``SkyReelsV2Transformer3DModel``): Wan's layout (latents (B,C,F,H,W), blocks in ``blocks``, a block
returns a tensor) with a self-attention mask (causal blocks of frames when ``num_frame_per_block > 1``), diffusion
forcing (per-frame timesteps, ``enable_diffusion_forcing=True`` in the extras) and optional fps conditioning."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import SkyReelsV2Transformer3DModel
from diffusers.models.transformers.transformer_skyreels_v2 import SkyReelsV2TransformerBlock
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning


class HookedSkyReelsV2Block(SkyReelsV2TransformerBlock):
    """``SkyReelsV2TransformerBlock.forward`` (diffusers 0.42.1) with hook points; numerically identical."""

    HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post")
    COPIED_FROM_SHA = "3f34de9e2b0be16c"

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        hidden_states = self.hook_resid_pre(hidden_states)
        if temb.dim() == 3:
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
                self.scale_shift_table + temb.float()
            ).chunk(6, dim=1)
        elif temb.dim() == 4:
            # For 4D temb in Diffusion Forcing framework, we assume the shape is  (b, 6, f * pp_h * pp_w, inner_dim)
            e = (self.scale_shift_table.unsqueeze(2) + temb.float()).chunk(6, dim=1)
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = [ei.squeeze(1) for ei in e]

        # 1. Self-attention
        norm_hidden_states = (self.norm1(hidden_states.float()) * (1 + scale_msa) + shift_msa).type_as(hidden_states)
        attn_output = self.attn1(norm_hidden_states, None, attention_mask, rotary_emb)
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


class SkyReelsV2Adapter(Adapter):
    family = "skyreels"
    class_name = "SkyReelsV2Transformer3DModel"
    block_lists = ("blocks",)

    @property
    def model_class(self) -> type[nn.Module]:
        return SkyReelsV2Transformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=16, ffn_dim=32, num_layers=3, cross_attn_norm=True, rope_max_seq_len=32,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedSkyReelsV2Block

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        return args[0] if args else kwargs["hidden_states"]

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        return tuple(transformer.config.patch_size)  # type: ignore[return-value]

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.text_dim

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        self.check_channels(transformer, latents, condition)
        return transformer(
            hidden_states=self.concat_condition(latents, condition),
            timestep=timestep,
            encoder_hidden_states=text.encoder_hidden_states,
            return_dict=False,
            **text.extras,
        )[0]
