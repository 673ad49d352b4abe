"""CogVideoX (``CogVideoXTransformer3DModel``): latents (B,F,C,H,W) natively, blocks in ``transformer_blocks``
called by keyword, a block returns (video tokens, text tokens). Sites hold the video tokens."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.normalization import CogVideoXLayerNormZero
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from einops import rearrange
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning
from interp.sites import MOD_HOOKS


class HookedCogVideoXBlock(CogVideoXBlock):
    """``CogVideoXBlock.forward`` (diffusers 0.42.1) with hook points on the video stream; numerically identical.

    Attention is joint (text and video in one attention), so there is no separate cross-attention site. The two
    ``CogVideoXLayerNormZero`` calls are inlined (same operations) so the video stream's shift / scale / gate are
    sites, (B, 1, d); the text stream's modulation is not a site.
    """

    HOOKS = ("hook_resid_pre", *MOD_HOOKS[:3], "hook_attn_out", *MOD_HOOKS[3:], "hook_mlp_out", "hook_resid_post")
    COPIED_FROM_SHA = "f27caf0be5d9de2d"
    INLINED_SHAS = {CogVideoXLayerNormZero: "8e8e6c80a6b8de20"}

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = self.hook_resid_pre(hidden_states)
        text_seq_length = encoder_hidden_states.size(1)
        attention_kwargs = attention_kwargs or {}

        # self.norm1 (CogVideoXLayerNormZero.forward) inlined, with the video stream's modulation as sites
        shift, scale, gate, enc_shift, enc_scale, enc_gate = self.norm1.linear(self.norm1.silu(temb)).chunk(6, dim=1)
        shift = self.hook_mod_shift_msa(shift[:, None, :])
        scale = self.hook_mod_scale_msa(scale[:, None, :])
        gate_msa = self.hook_mod_gate_msa(gate[:, None, :])
        norm_hidden_states = self.norm1.norm(hidden_states) * (1 + scale) + shift
        norm_encoder_hidden_states = (
            self.norm1.norm(encoder_hidden_states) * (1 + enc_scale)[:, None, :] + enc_shift[:, None, :]
        )
        enc_gate_msa = enc_gate[:, None, :]
        attn_hidden_states, attn_encoder_hidden_states = self.attn1(
            hidden_states=norm_hidden_states,
            encoder_hidden_states=norm_encoder_hidden_states,
            image_rotary_emb=image_rotary_emb,
            **attention_kwargs,
        )
        hidden_states = hidden_states + self.hook_attn_out(gate_msa * attn_hidden_states)
        encoder_hidden_states = encoder_hidden_states + enc_gate_msa * attn_encoder_hidden_states

        # self.norm2 inlined likewise
        shift, scale, gate, enc_shift, enc_scale, enc_gate = self.norm2.linear(self.norm2.silu(temb)).chunk(6, dim=1)
        shift = self.hook_mod_shift_mlp(shift[:, None, :])
        scale = self.hook_mod_scale_mlp(scale[:, None, :])
        gate_ff = self.hook_mod_gate_mlp(gate[:, None, :])
        norm_hidden_states = self.norm2.norm(hidden_states) * (1 + scale) + shift
        norm_encoder_hidden_states = (
            self.norm2.norm(encoder_hidden_states) * (1 + enc_scale)[:, None, :] + enc_shift[:, None, :]
        )
        enc_gate_ff = enc_gate[:, None, :]
        norm_hidden_states = torch.cat([norm_encoder_hidden_states, norm_hidden_states], dim=1)
        ff_output = self.ff(norm_hidden_states)

        hidden_states = hidden_states + self.hook_mlp_out(gate_ff * ff_output[:, text_seq_length:])
        encoder_hidden_states = encoder_hidden_states + enc_gate_ff * ff_output[:, :text_seq_length]

        return self.hook_resid_post(hidden_states), encoder_hidden_states


class CogVideoXAdapter(Adapter):
    family = "cogvideox"
    class_name = "CogVideoXTransformer3DModel"
    block_lists = ("transformer_blocks",)

    @property
    def model_class(self) -> type[nn.Module]:
        return CogVideoXTransformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=16,
            text_embed_dim=16, num_layers=3, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
            max_text_seq_length=self.text_len, use_rotary_positional_embeddings=False,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedCogVideoXBlock

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        names = ("hidden_states", "encoder_hidden_states")
        return tuple(args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        c = transformer.config
        return (c.patch_size_t or 1, c.patch_size, c.patch_size)

    def text_dim(self, transformer: nn.Module) -> int:
        return transformer.config.text_embed_dim

    def random_text(self, transformer, batch, generator, text_len=None) -> TextConditioning:
        # learned positional embeddings cover exactly max_text_seq_length text tokens
        return super().random_text(transformer, batch, generator, text_len or transformer.config.max_text_seq_length)

    def rotary_emb(self, transformer: nn.Module, latent_shape: tuple[int, ...], device) -> tuple[Tensor, Tensor]:
        """3D RoPE as ``CogVideoXPipeline._prepare_rotary_positional_embeddings`` computes it (CogVideoX 1.0/1.5)."""
        c = transformer.config
        f, h, w = latent_shape[-3:]
        gh, gw = h // c.patch_size, w // c.patch_size
        base_w, base_h = c.sample_width // c.patch_size, c.sample_height // c.patch_size
        if c.patch_size_t is None:
            crops = get_resize_crop_region_for_grid((gh, gw), base_w, base_h)
            return get_3d_rotary_pos_embed(
                embed_dim=c.attention_head_dim, crops_coords=crops, grid_size=(gh, gw), temporal_size=f, device=device
            )
        return get_3d_rotary_pos_embed(
            embed_dim=c.attention_head_dim, crops_coords=None, grid_size=(gh, gw),
            temporal_size=(f + c.patch_size_t - 1) // c.patch_size_t, grid_type="slice", max_size=(base_h, base_w),
            device=device,
        )  # fmt: skip

    def readout_conditioning(self, transformer, timestep, text=None) -> dict[str, Tensor]:
        """``emb`` as ``CogVideoXTransformer3DModel.forward`` step 1 computes it (``ofs``, CogVideoX1.5 I2V, and
        ``timestep_cond`` from the text extras)."""
        extras = {} if text is None else text.extras
        dtype = self.model_dtype(transformer)
        t_emb = transformer.time_proj(timestep)
        t_emb = t_emb.to(dtype=dtype)
        emb = transformer.time_embedding(t_emb, extras.get("timestep_cond"))
        if transformer.ofs_embedding is not None:
            if extras.get("ofs") is None:
                raise ValueError("cogvideox: this model embeds ofs; the readout needs the text conditioning's ofs")
            ofs_emb = transformer.ofs_proj(extras["ofs"])
            ofs_emb = ofs_emb.to(dtype=dtype)
            ofs_emb = transformer.ofs_embedding(ofs_emb)
            emb = emb + ofs_emb
        return {"temb": emb}

    def readout(self, transformer, resid, conditioning, latent_shape) -> Tensor:
        """``CogVideoXTransformer3DModel.forward`` from ``norm_final`` on: norms, ``proj_out``, unpatchify."""
        batch_size = resid.shape[0]
        num_frames, height, width = latent_shape[-3:]
        hidden_states = transformer.norm_final(resid)
        hidden_states = transformer.norm_out(hidden_states, temb=conditioning["temb"])
        hidden_states = transformer.proj_out(hidden_states)
        p = transformer.config.patch_size
        p_t = transformer.config.patch_size_t
        if p_t is None:
            output = hidden_states.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
            output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        else:
            output = hidden_states.reshape(
                batch_size, (num_frames + p_t - 1) // p_t, height // p, width // p, -1, p_t, p, p
            )
            output = output.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)
        return rearrange(output, "b f c h w -> b c f h w")

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        self.check_channels(transformer, latents, condition)
        x = rearrange(self.concat_condition(latents, condition), "b c f h w -> b f c h w")
        extras = dict(text.extras)
        if transformer.config.use_rotary_positional_embeddings and "image_rotary_emb" not in extras:
            extras["image_rotary_emb"] = self.rotary_emb(transformer, latents.shape, latents.device)
        out = transformer(
            hidden_states=x,
            encoder_hidden_states=text.encoder_hidden_states,
            timestep=timestep,
            return_dict=False,
            **extras,
        )[0]
        return rearrange(out, "b f c h w -> b c f h w")
