"""Mochi (``MochiTransformer3DModel``): latents (B,C,F,H,W), patches 2D per frame (``patch_size`` p, temporal patch
1); blocks in ``transformer_blocks`` called by keyword, a block returns (video tokens, text tokens); the text mask
``encoder_attention_mask`` is a forward argument (the pipeline's T5 attention mask). Sites hold the video tokens.
The last block is ``context_pre_only`` (its text stream is not updated); its video-stream sites are the same."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import MochiTransformer3DModel
from diffusers.models.transformers.transformer_mochi import MochiTransformerBlock
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning


class HookedMochiBlock(MochiTransformerBlock):
    """``MochiTransformerBlock.forward`` (diffusers 0.42.1) with hook points on the video stream; numerically
    identical. Attention is joint (text and video in one attention): no separate cross-attention site;
    ``hook_attn_out`` / ``hook_mlp_out`` are the gated, RMS-normalised contributions the stream adds."""

    HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")
    COPIED_FROM_SHA = "c12382d76d66dd9f"

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = self.hook_resid_pre(hidden_states)
        norm_hidden_states, gate_msa, scale_mlp, gate_mlp = self.norm1(hidden_states, temb)

        if not self.context_pre_only:
            norm_encoder_hidden_states, enc_gate_msa, enc_scale_mlp, enc_gate_mlp = self.norm1_context(
                encoder_hidden_states, temb
            )
        else:
            norm_encoder_hidden_states = self.norm1_context(encoder_hidden_states, temb)

        attn_hidden_states, context_attn_hidden_states = self.attn1(
            hidden_states=norm_hidden_states,
            encoder_hidden_states=norm_encoder_hidden_states,
            image_rotary_emb=image_rotary_emb,
            attention_mask=encoder_attention_mask,
        )

        hidden_states = hidden_states + self.hook_attn_out(
            self.norm2(attn_hidden_states, torch.tanh(gate_msa).unsqueeze(1))
        )
        norm_hidden_states = self.norm3(hidden_states, (1 + scale_mlp.unsqueeze(1).to(torch.float32)))
        ff_output = self.ff(norm_hidden_states)
        hidden_states = hidden_states + self.hook_mlp_out(self.norm4(ff_output, torch.tanh(gate_mlp).unsqueeze(1)))

        if not self.context_pre_only:
            encoder_hidden_states = encoder_hidden_states + self.norm2_context(
                context_attn_hidden_states, torch.tanh(enc_gate_msa).unsqueeze(1)
            )
            norm_encoder_hidden_states = self.norm3_context(
                encoder_hidden_states, (1 + enc_scale_mlp.unsqueeze(1).to(torch.float32))
            )
            context_ff_output = self.ff_context(norm_encoder_hidden_states)
            encoder_hidden_states = encoder_hidden_states + self.norm4_context(
                context_ff_output, torch.tanh(enc_gate_mlp).unsqueeze(1)
            )

        return self.hook_resid_post(hidden_states), encoder_hidden_states


class MochiAdapter(Adapter):
    family = "mochi"
    class_name = "MochiTransformer3DModel"
    block_lists = ("transformer_blocks",)

    @property
    def model_class(self) -> type[nn.Module]:
        return MochiTransformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=3, pooled_projection_dim=16,
            in_channels=4, text_embed_dim=16, time_embed_dim=4, max_sequence_length=self.text_len,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedMochiBlock

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        names = ("hidden_states", "encoder_hidden_states")
        return tuple(args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        p = transformer.config.patch_size
        return (1, p, p)

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.text_embed_dim

    def default_extras(self, transformer, batch, text_len, generator) -> dict[str, Tensor]:
        return {"encoder_attention_mask": torch.ones(batch, text_len)}

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        self.check_channels(transformer, latents, condition)
        extras = dict(text.extras)
        mask = extras.pop("encoder_attention_mask", None)
        if mask is None:
            mask = torch.ones(text.encoder_hidden_states.shape[:2], device=latents.device)
        return transformer(
            hidden_states=self.concat_condition(latents, condition),
            encoder_hidden_states=text.encoder_hidden_states,
            timestep=timestep,
            encoder_attention_mask=mask,
            return_dict=False,
            **extras,
        )[0]
