"""HunyuanVideo (``HunyuanVideoTransformer3DModel``): latents (B,C,F,H,W); two block lists run in order,
``transformer_blocks`` (dual-stream) then ``single_transformer_blocks``, numbered here on one axis. Blocks are
called positionally and return (video tokens, text tokens). Needs a text mask, pooled projections and guidance."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import HunyuanVideoTransformer3DModel
from diffusers.models.normalization import AdaLayerNormZero, AdaLayerNormZeroSingle
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoSingleTransformerBlock,
    HunyuanVideoTransformerBlock,
)
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning
from interp.sites import MOD_HOOKS


class HookedHunyuanBlock(HunyuanVideoTransformerBlock):
    """``HunyuanVideoTransformerBlock.forward`` (diffusers 0.42.1) with hook points; numerically identical.

    ``norm1`` (AdaLayerNormZero) is inlined (same operations) so the video stream's six modulation values are sites,
    (B, 1, d); the text stream's (``norm1_context``) are not."""

    HOOKS = ("hook_resid_pre", *MOD_HOOKS, "hook_attn_out", "hook_mlp_out", "hook_resid_post")
    COPIED_FROM_SHA = "dc6d07e7f1c452e3"
    INLINED_SHAS = {AdaLayerNormZero: "93374820c014f812"}

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        freqs_cis: tuple[torch.Tensor, torch.Tensor] | None = None,
        *args,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = self.hook_resid_pre(hidden_states)
        # self.norm1 (AdaLayerNormZero.forward, emb given) inlined, with the modulation as sites
        emb = self.norm1.linear(self.norm1.silu(temb))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = emb.chunk(6, dim=1)
        shift_msa = self.hook_mod_shift_msa(shift_msa[:, None])
        scale_msa = self.hook_mod_scale_msa(scale_msa[:, None])
        gate_msa = self.hook_mod_gate_msa(gate_msa.unsqueeze(1))
        shift_mlp = self.hook_mod_shift_mlp(shift_mlp[:, None])
        scale_mlp = self.hook_mod_scale_mlp(scale_mlp[:, None])
        gate_mlp = self.hook_mod_gate_mlp(gate_mlp.unsqueeze(1))
        norm_hidden_states = self.norm1.norm(hidden_states) * (1 + scale_msa) + shift_msa
        norm_encoder_hidden_states, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(
            encoder_hidden_states, emb=temb
        )
        attn_output, context_attn_output = self.attn(
            hidden_states=norm_hidden_states,
            encoder_hidden_states=norm_encoder_hidden_states,
            attention_mask=attention_mask,
            image_rotary_emb=freqs_cis,
        )
        hidden_states = hidden_states + self.hook_attn_out(attn_output * gate_msa)
        encoder_hidden_states = encoder_hidden_states + context_attn_output * c_gate_msa.unsqueeze(1)

        norm_hidden_states = self.norm2(hidden_states)
        norm_encoder_hidden_states = self.norm2_context(encoder_hidden_states)
        norm_hidden_states = norm_hidden_states * (1 + scale_mlp) + shift_mlp
        norm_encoder_hidden_states = norm_encoder_hidden_states * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]

        ff_output = self.ff(norm_hidden_states)
        context_ff_output = self.ff_context(norm_encoder_hidden_states)

        hidden_states = hidden_states + self.hook_mlp_out(gate_mlp * ff_output)
        encoder_hidden_states = encoder_hidden_states + c_gate_mlp.unsqueeze(1) * context_ff_output

        return self.hook_resid_post(hidden_states), encoder_hidden_states


class HookedHunyuanSingleBlock(HunyuanVideoSingleTransformerBlock):
    """``HunyuanVideoSingleTransformerBlock.forward`` (diffusers 0.42.1) with residual hook points.

    Attention and MLP run in parallel and share one output projection (``proj_out`` of their concatenation), so
    their contributions are not separate tensors: only ``hook_resid_pre`` / ``hook_resid_post`` exist here, and one
    shift / scale / gate for both (``hook_mod_*_msa``; ``norm`` inlined), applied to video and text tokens alike.
    """

    HOOKS = ("hook_resid_pre", "hook_mod_shift_msa", "hook_mod_scale_msa", "hook_mod_gate_msa", "hook_resid_post")
    COPIED_FROM_SHA = "3e921434984e3891"
    INLINED_SHAS = {AdaLayerNormZeroSingle: "d48dfb2b1e75e64f"}

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        *args,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = self.hook_resid_pre(hidden_states)
        text_seq_length = encoder_hidden_states.shape[1]
        hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)

        residual = hidden_states

        # self.norm (AdaLayerNormZeroSingle.forward) inlined, with the modulation as sites
        emb = self.norm.linear(self.norm.silu(temb))
        shift_msa, scale_msa, gate = emb.chunk(3, dim=1)
        shift_msa = self.hook_mod_shift_msa(shift_msa[:, None])
        scale_msa = self.hook_mod_scale_msa(scale_msa[:, None])
        gate = self.hook_mod_gate_msa(gate.unsqueeze(1))
        norm_hidden_states = self.norm.norm(hidden_states) * (1 + scale_msa) + shift_msa
        mlp_hidden_states = self.act_mlp(self.proj_mlp(norm_hidden_states))

        norm_hidden_states, norm_encoder_hidden_states = (
            norm_hidden_states[:, :-text_seq_length, :],
            norm_hidden_states[:, -text_seq_length:, :],
        )
        attn_output, context_attn_output = self.attn(
            hidden_states=norm_hidden_states,
            encoder_hidden_states=norm_encoder_hidden_states,
            attention_mask=attention_mask,
            image_rotary_emb=image_rotary_emb,
        )
        attn_output = torch.cat([attn_output, context_attn_output], dim=1)

        hidden_states = torch.cat([attn_output, mlp_hidden_states], dim=2)
        hidden_states = gate * self.proj_out(hidden_states)
        hidden_states = hidden_states + residual

        hidden_states, encoder_hidden_states = (
            hidden_states[:, :-text_seq_length, :],
            hidden_states[:, -text_seq_length:, :],
        )
        return self.hook_resid_post(hidden_states), encoder_hidden_states


class HunyuanAdapter(Adapter):
    family = "hunyuan"
    class_name = "HunyuanVideoTransformer3DModel"
    block_lists = ("transformer_blocks", "single_transformer_blocks")
    nullable_extras = ("pooled_projections",)
    guidance = 6.0  # default embedded guidance of random inputs (the pipeline passes guidance * 1000)

    @property
    def model_class(self) -> type[nn.Module]:
        return HunyuanVideoTransformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
            num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
            text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 2, 4), guidance_embeds=True,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        if isinstance(block, HunyuanVideoSingleTransformerBlock):
            return HookedHunyuanSingleBlock
        if isinstance(block, HunyuanVideoTransformerBlock):
            return HookedHunyuanBlock
        raise TypeError(
            f"hunyuan: no hooked version of {type(block).__name__} (token_replace image conditioning is not supported)"
        )

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        return (args[0], args[1])

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        c = transformer.config
        return (c.patch_size_t, c.patch_size, c.patch_size)

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.text_embed_dim

    def default_extras(self, transformer, batch, text_len, generator) -> dict[str, Tensor]:
        c = transformer.config
        extras = {
            "encoder_attention_mask": torch.ones(batch, text_len),
            "pooled_projections": torch.randn(batch, c.pooled_projection_dim, generator=generator),
        }
        if c.guidance_embeds:
            extras["guidance"] = torch.full((batch,), self.guidance * 1000.0)
        return extras

    readout_reads_text = True  # the final AdaLayerNormContinuous reads temb, which embeds pooled text and guidance

    def readout_conditioning(self, transformer, timestep, text=None) -> dict[str, Tensor]:
        """``temb`` of ``time_text_embed(timestep, pooled_projections, guidance)``, as the forward computes it."""
        if text is None or "pooled_projections" not in text.extras:
            raise ValueError("hunyuan: the final modulation embeds the pooled projections (and guidance): the readout "
                             "needs the text conditioning")  # fmt: skip
        temb, _ = transformer.time_text_embed(timestep, text.extras["pooled_projections"], text.extras.get("guidance"))
        return {"temb": temb}

    def readout(self, transformer, resid, conditioning, latent_shape) -> Tensor:
        """``HunyuanVideoTransformer3DModel.forward`` step 5: ``norm_out`` (AdaLayerNormContinuous), ``proj_out``,
        unpatchify."""
        batch_size = resid.shape[0]
        p, p_t = transformer.config.patch_size, transformer.config.patch_size_t
        f, h, w = self.token_grid(transformer, latent_shape)
        hidden_states = transformer.norm_out(resid, conditioning["temb"])
        hidden_states = transformer.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_size, f, h, w, -1, p_t, p, p)
        hidden_states = hidden_states.permute(0, 4, 1, 5, 2, 6, 3, 7)
        return hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        self.check_channels(transformer, latents, condition)
        extras = dict(text.extras)
        missing = [k for k in ("pooled_projections",) if k not in extras]
        if transformer.config.guidance_embeds and "guidance" not in extras:
            missing.append("guidance")
        if missing:
            raise ValueError(f"hunyuan: text conditioning lacks extras {missing} (has {sorted(extras)})")
        mask = extras.pop("encoder_attention_mask", None)
        if mask is None:
            mask = torch.ones(text.encoder_hidden_states.shape[:2], device=latents.device)
        return transformer(
            self.concat_condition(latents, condition),
            timestep,
            text.encoder_hidden_states,
            mask,
            return_dict=False,
            **extras,
        )[0]
