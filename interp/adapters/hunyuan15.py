"""HunyuanVideo 1.5 (``HunyuanVideo15Transformer3DModel``): latents (B,C,F,H,W) with the pipeline's condition
concatenated on channels (``in_channels = 2 * latent + 1``: condition latents and a mask, zeros for text-to-video);
dual-stream blocks in ``transformer_blocks``, called positionally, returning (video tokens, text tokens). Needs the
Qwen text mask, the ByT5 glyph embeddings and their mask, and ``image_embeds`` (SigLIP tokens; all zeros means
text-to-video)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import HunyuanVideo15Transformer3DModel
from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15TransformerBlock
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning
from interp.adapters.hunyuan import HookedHunyuanBlock


class HookedHunyuan15Block(HunyuanVideo15TransformerBlock):
    """``HunyuanVideo15TransformerBlock.forward`` (diffusers 0.42.1) with hook points; numerically identical.

    Its source is character for character ``HunyuanVideoTransformerBlock.forward`` (the same hash), so the hooked
    copy is HunyuanVideo's, shared rather than duplicated; the hash test fails if either diverges.
    """

    HOOKS = HookedHunyuanBlock.HOOKS
    COPIED_FROM_SHA = "dc6d07e7f1c452e3"
    INLINED_SHAS = HookedHunyuanBlock.INLINED_SHAS  # the shared copy writes out the same adaLN norm
    forward = HookedHunyuanBlock.forward


class HunyuanVideo15Adapter(Adapter):
    family = "hunyuan15"
    class_name = "HunyuanVideo15Transformer3DModel"
    block_lists = ("transformer_blocks",)
    nullable_extras = ("encoder_hidden_states_2",)
    text_2_len = 4  # ByT5 glyph tokens of random inputs
    image_tokens = 4  # SigLIP tokens of random inputs (zeros: text-to-video)

    @property
    def model_class(self) -> type[nn.Module]:
        return HunyuanVideo15Transformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=3,
            num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16,
            text_embed_2_dim=8, image_embed_dim=8, rope_axes_dim=(2, 2, 4),
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedHunyuan15Block

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        return (args[0], args[1])

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        c = transformer.config
        return (c.patch_size_t, c.patch_size, c.patch_size)

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.text_embed_dim

    def default_extras(self, transformer, batch, text_len, generator) -> dict[str, Tensor]:
        c = transformer.config
        return {
            "encoder_attention_mask": torch.ones(batch, text_len),
            "encoder_hidden_states_2": torch.randn(batch, self.text_2_len, c.text_embed_2_dim, generator=generator),
            "encoder_attention_mask_2": torch.ones(batch, self.text_2_len),
            "image_embeds": torch.zeros(batch, self.image_tokens, c.image_embed_dim),
        }

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        """``condition=None`` is text-to-video: zero condition latents and mask, as ``HunyuanVideo15Pipeline``'s
        ``prepare_cond_latents_and_mask``."""
        cc = self.condition_channels(transformer)
        if condition is None and cc:
            b, _, f, h, w = latents.shape
            condition = latents.new_zeros(b, cc, f, h, w)
        self.check_channels(transformer, latents, condition)
        extras = dict(text.extras)
        needed = ("encoder_hidden_states_2", "encoder_attention_mask_2", "image_embeds")
        missing = [k for k in needed if k not in extras]
        if missing:
            raise ValueError(f"hunyuan15: text conditioning lacks extras {missing} (has {sorted(extras)})")
        mask = extras.pop("encoder_attention_mask", None)
        if mask is None:
            mask = torch.ones(text.encoder_hidden_states.shape[:2], device=latents.device)
        return transformer(
            hidden_states=self.concat_condition(latents, condition),
            timestep=timestep,
            encoder_hidden_states=text.encoder_hidden_states,
            encoder_attention_mask=mask,
            return_dict=False,
            **extras,
        )[0]
