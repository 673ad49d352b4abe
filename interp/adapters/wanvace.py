"""Wan VACE (``WanVACETransformer3DModel``): Wan's blocks in ``blocks`` (the denoising stream, hooked as Wan's) plus a
control branch, ``vace_blocks``, that runs first on the VACE control latents and hands one hint per layer in
``config.vace_layers`` to the stream: after block ``vace_layers[j]`` the model adds
``hint_j * control_hidden_states_scale[j]`` to the stream, outside any block. So at those layers
``blocks.{i}.hook_resid_post + hint * scale == blocks.{i+1}.hook_resid_pre`` (tested), not the same tensor.

The control branch's blocks are hooked too and are named sites of :class:`~interp.trace.Traced` off the block axis
(``vace_blocks.{j}.hook_resid_pre`` ... ``hook_resid_post``: the control stream; ``vace_blocks.{j}.hook_hint``: the
projected hint), read, edited and (sublayers) skipped like block sites; they run before ``hook_embed``'s block 0.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import WanVACETransformer3DModel
from diffusers.models.transformers.transformer_wan_vace import WanVACETransformerBlock
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning, install_hooked_class
from interp.adapters.wan import HookedWanBlock


class HookedWanVACEBlock(WanVACETransformerBlock):
    """``WanVACETransformerBlock.forward`` (diffusers 0.42.1) with hook points on the control stream; numerically
    identical. ``hook_resid_pre`` is the control stream after the input projection (block 0 adds the main stream's
    embedded tokens to it there); ``hook_hint`` is the projected hint the model adds to the denoising stream."""

    HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post", "hook_hint")
    COPIED_FROM_SHA = "5dbfa51a74b89a97"

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        control_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: torch.Tensor,
    ) -> torch.Tensor:
        if self.proj_in is not None:
            control_hidden_states = self.proj_in(control_hidden_states)
            control_hidden_states = control_hidden_states + hidden_states
        control_hidden_states = self.hook_resid_pre(control_hidden_states)

        shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
            self.scale_shift_table.to(temb.device) + temb.float()
        ).chunk(6, dim=1)

        # 1. Self-attention
        norm_hidden_states = (self.norm1(control_hidden_states.float()) * (1 + scale_msa) + shift_msa).type_as(
            control_hidden_states
        )
        attn_output = self.attn1(norm_hidden_states, None, None, rotary_emb)
        control_hidden_states = (control_hidden_states.float() + self.hook_attn_out(attn_output * gate_msa)).type_as(
            control_hidden_states
        )

        # 2. Cross-attention
        norm_hidden_states = self.norm2(control_hidden_states.float()).type_as(control_hidden_states)
        attn_output = self.attn2(norm_hidden_states, encoder_hidden_states, None, None)
        control_hidden_states = control_hidden_states + self.hook_cross_attn_out(attn_output)

        # 3. Feed-forward
        norm_hidden_states = (self.norm3(control_hidden_states.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(
            control_hidden_states
        )
        ff_output = self.ffn(norm_hidden_states)
        control_hidden_states = (
            control_hidden_states.float() + self.hook_mlp_out(ff_output.float() * c_gate_msa)
        ).type_as(control_hidden_states)
        control_hidden_states = self.hook_resid_post(control_hidden_states)

        conditioning_states = None
        if self.proj_out is not None:
            conditioning_states = self.hook_hint(self.proj_out(control_hidden_states))

        return conditioning_states, control_hidden_states


class WanVACEAdapter(Adapter):
    family = "wanvace"
    class_name = "WanVACETransformer3DModel"
    block_lists = ("blocks",)
    control_key = "control_hidden_states"

    @property
    def model_class(self) -> type[nn.Module]:
        return WanVACETransformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=16, ffn_dim=32, num_layers=3, cross_attn_norm=True, rope_max_seq_len=32,
            vace_layers=[0, 1], vace_in_channels=6,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedWanBlock

    def install_hooks(self, transformer: nn.Module) -> nn.Module:
        super().install_hooks(transformer)
        for block in transformer.vace_blocks:
            install_hooked_class(block, HookedWanVACEBlock)
        return transformer

    def stream_injections(self, transformer: nn.Module) -> tuple[int, ...]:
        return tuple(transformer.config.vace_layers)

    def branch_sites(self, transformer: nn.Module) -> list[tuple[str, str]]:
        names = [f"vace_blocks.{j}.{h}" for j in range(len(transformer.vace_blocks)) for h in HookedWanVACEBlock.HOOKS]
        return [(n, n) for n in names]

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        return args[0] if args else kwargs["hidden_states"]

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        return tuple(transformer.config.patch_size)  # type: ignore[return-value]

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.text_dim

    def control_shape(self, transformer: nn.Module, latents: Tensor) -> tuple[int, ...]:
        """(B, vace_in_channels, F, H, W): the VACE control latents for ``latents``."""
        b, _, f, h, w = latents.shape
        return (b, transformer.config.vace_in_channels, f, h, w)

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        """``text.extras`` carries ``control_hidden_states`` (the pipeline's ``prepare_video_latents`` and
        ``prepare_masks``, concatenated) and optionally ``control_hidden_states_scale``; without them the control
        latents are zeros (the documented random input)."""
        self.check_channels(transformer, latents, condition)
        extras = dict(text.extras)
        if self.control_key not in extras:
            extras[self.control_key] = latents.new_zeros(self.control_shape(transformer, latents))
        return transformer(
            hidden_states=self.concat_condition(latents, condition),
            timestep=timestep,
            encoder_hidden_states=text.encoder_hidden_states,
            return_dict=False,
            **extras,
        )[0]
