"""LTX-2 (``LTX2VideoTransformer3DModel``): one model denoises video and audio together. Video latents are packed
to tokens (B, F*H*W, C*pt*p*p) as LTX-Video's; the audio latents (B, audio tokens, audio channels) ride along in the
text extras (``audio_hidden_states``) with their own text embeddings (``audio_encoder_hidden_states``). Blocks in
``transformer_blocks`` are called by keyword and return (video tokens, audio tokens).

Sites: the video stream's ``hook_resid_pre``, ``hook_attn_out`` (self-attention), ``hook_cross_attn_out`` (text),
``hook_a2v_attn_out`` (audio-to-video cross-attention: queries video, keys / values audio), ``hook_mlp_out``,
``hook_resid_post``; the audio stream's ``hook_audio_resid_pre``, ``hook_audio_attn_out``,
``hook_audio_cross_attn_out``, ``hook_audio_v2a_attn_out`` (video-to-audio), ``hook_audio_mlp_out``,
``hook_audio_resid_post``, in the order the block runs them. ``hook_out`` and the adapter's forward return the
video prediction; :meth:`LTX2Adapter.forward_streams` also returns the audio prediction (packed, as the model gives
it), which the loop steps with its own copy of the scheduler when the inputs carry the audio latents as a stream
(``LTX2Pipeline``: :mod:`interp.pipelines.ltx2`)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import LTX2VideoTransformer3DModel
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformerBlock
from torch import Tensor, nn

from interp.adapters.base import TextConditioning
from interp.adapters.ltx import LTXAdapter


class HookedLTX2Block(LTX2VideoTransformerBlock):
    """``LTX2VideoTransformerBlock.forward`` (diffusers 0.42.1) with hook points on both streams; numerically
    identical. A site of a cross-modal attention turned off (``use_a2v_cross_attention=False``) does not run."""

    HOOKS = (
        "hook_resid_pre", "hook_audio_resid_pre", "hook_attn_out", "hook_audio_attn_out", "hook_cross_attn_out",
        "hook_audio_cross_attn_out", "hook_a2v_attn_out", "hook_audio_v2a_attn_out", "hook_mlp_out",
        "hook_audio_mlp_out", "hook_resid_post", "hook_audio_resid_post",
    )  # fmt: skip
    COPIED_FROM_SHA = "1dbdd9ab731b53b9"

    def forward(
        self,
        hidden_states: torch.Tensor,
        audio_hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        audio_encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        temb_audio: torch.Tensor,
        temb_ca_scale_shift: torch.Tensor,
        temb_ca_audio_scale_shift: torch.Tensor,
        temb_ca_gate: torch.Tensor,
        temb_ca_audio_gate: torch.Tensor,
        temb_prompt: torch.Tensor | None = None,
        temb_prompt_audio: torch.Tensor | None = None,
        video_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        audio_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        ca_video_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        ca_audio_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        audio_encoder_attention_mask: torch.Tensor | None = None,
        self_attention_mask: torch.Tensor | None = None,
        audio_self_attention_mask: torch.Tensor | None = None,
        a2v_cross_attention_mask: torch.Tensor | None = None,
        v2a_cross_attention_mask: torch.Tensor | None = None,
        use_a2v_cross_attention: bool = True,
        use_v2a_cross_attention: bool = True,
        perturbation_mask: torch.Tensor | None = None,
        all_perturbed: bool | None = None,
    ) -> torch.Tensor:
        hidden_states = self.hook_resid_pre(hidden_states)
        audio_hidden_states = self.hook_audio_resid_pre(audio_hidden_states)
        batch_size = hidden_states.size(0)

        # 1. Video and Audio Self-Attention
        # 1.1. Video Self-Attention
        video_ada_params = self.get_mod_params(self.scale_shift_table, temb, batch_size)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = video_ada_params[:6]
        if self.video_cross_attn_adaln:
            shift_text_q, scale_text_q, gate_text_q = video_ada_params[6:9]

        norm_hidden_states = self.norm1(hidden_states)
        norm_hidden_states = norm_hidden_states * (1 + scale_msa) + shift_msa

        video_self_attn_args = {
            "hidden_states": norm_hidden_states,
            "encoder_hidden_states": None,
            "query_rotary_emb": video_rotary_emb,
            "attention_mask": self_attention_mask,
        }
        if self.perturbed_attn:
            video_self_attn_args["perturbation_mask"] = perturbation_mask
            video_self_attn_args["all_perturbed"] = all_perturbed

        attn_hidden_states = self.attn1(**video_self_attn_args)
        hidden_states = hidden_states + self.hook_attn_out(attn_hidden_states * gate_msa)

        # 1.2. Audio Self-Attention
        audio_ada_params = self.get_mod_params(self.audio_scale_shift_table, temb_audio, batch_size)
        audio_shift_msa, audio_scale_msa, audio_gate_msa, audio_shift_mlp, audio_scale_mlp, audio_gate_mlp = (
            audio_ada_params[:6]
        )
        if self.audio_cross_attn_adaln:
            audio_shift_text_q, audio_scale_text_q, audio_gate_text_q = audio_ada_params[6:9]

        norm_audio_hidden_states = self.audio_norm1(audio_hidden_states)
        norm_audio_hidden_states = norm_audio_hidden_states * (1 + audio_scale_msa) + audio_shift_msa

        audio_self_attn_args = {
            "hidden_states": norm_audio_hidden_states,
            "encoder_hidden_states": None,
            "query_rotary_emb": audio_rotary_emb,
            "attention_mask": audio_self_attention_mask,
        }
        if self.perturbed_attn:
            audio_self_attn_args["perturbation_mask"] = perturbation_mask
            audio_self_attn_args["all_perturbed"] = all_perturbed

        attn_audio_hidden_states = self.audio_attn1(**audio_self_attn_args)
        audio_hidden_states = audio_hidden_states + self.hook_audio_attn_out(attn_audio_hidden_states * audio_gate_msa)

        # 2. Video and Audio Cross-Attention with the text embeddings (Q: Video or Audio; K,V: Text)
        if self.cross_attn_adaln:
            # `temb_prompt`/`temb_prompt_audio` are `None` when `use_prompt_adaln_single=False` (KV-cacheable
            # cross-attention): the prompt-side scale/shift is then timestep-independent, so only the static
            # per-layer table is used.
            if temb_prompt is not None:
                shift_text_kv, scale_text_kv = self.get_mod_params(
                    self.prompt_scale_shift_table, temb_prompt, batch_size
                )
            else:
                shift_text_kv, scale_text_kv = (
                    self.prompt_scale_shift_table[None, None]
                    .to(device=hidden_states.device, dtype=hidden_states.dtype)
                    .unbind(dim=2)
                )

            if temb_prompt_audio is not None:
                audio_shift_text_kv, audio_scale_text_kv = self.get_mod_params(
                    self.audio_prompt_scale_shift_table, temb_prompt_audio, batch_size
                )
            else:
                audio_shift_text_kv, audio_scale_text_kv = (
                    self.audio_prompt_scale_shift_table[None, None]
                    .to(device=audio_hidden_states.device, dtype=audio_hidden_states.dtype)
                    .unbind(dim=2)
                )

        # 2.1. Video-Text Cross-Attention (Q: Video; K,V: Text)
        norm_hidden_states = self.norm2(hidden_states)
        if self.video_cross_attn_adaln:
            norm_hidden_states = norm_hidden_states * (1 + scale_text_q) + shift_text_q
        if self.cross_attn_adaln:
            encoder_hidden_states = encoder_hidden_states * (1 + scale_text_kv) + shift_text_kv

        attn_hidden_states = self.attn2(
            norm_hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            query_rotary_emb=None,
            attention_mask=encoder_attention_mask,
        )
        if self.video_cross_attn_adaln:
            attn_hidden_states = attn_hidden_states * gate_text_q
        hidden_states = hidden_states + self.hook_cross_attn_out(attn_hidden_states)

        # 2.2. Audio-Text Cross-Attention
        norm_audio_hidden_states = self.audio_norm2(audio_hidden_states)
        if self.audio_cross_attn_adaln:
            norm_audio_hidden_states = norm_audio_hidden_states * (1 + audio_scale_text_q) + audio_shift_text_q
        if self.cross_attn_adaln:
            audio_encoder_hidden_states = audio_encoder_hidden_states * (1 + audio_scale_text_kv) + audio_shift_text_kv

        attn_audio_hidden_states = self.audio_attn2(
            norm_audio_hidden_states,
            encoder_hidden_states=audio_encoder_hidden_states,
            query_rotary_emb=None,
            attention_mask=audio_encoder_attention_mask,
        )
        if self.audio_cross_attn_adaln:
            attn_audio_hidden_states = attn_audio_hidden_states * audio_gate_text_q
        audio_hidden_states = audio_hidden_states + self.hook_audio_cross_attn_out(attn_audio_hidden_states)

        # 3. Audio-to-Video (a2v) and Video-to-Audio (v2a) Cross-Attention
        if use_a2v_cross_attention or use_v2a_cross_attention:
            norm_hidden_states = self.audio_to_video_norm(hidden_states)
            norm_audio_hidden_states = self.video_to_audio_norm(audio_hidden_states)

            # 3.1. Combine global and per-layer cross attention modulation parameters
            # Video
            video_per_layer_ca_scale_shift = self.video_a2v_cross_attn_scale_shift_table[:4, :]
            video_per_layer_ca_gate = self.video_a2v_cross_attn_scale_shift_table[4:, :]

            video_ca_ada_params = self.get_mod_params(video_per_layer_ca_scale_shift, temb_ca_scale_shift, batch_size)
            video_ca_gate_param = self.get_mod_params(video_per_layer_ca_gate, temb_ca_gate, batch_size)

            video_a2v_ca_scale, video_a2v_ca_shift, video_v2a_ca_scale, video_v2a_ca_shift = video_ca_ada_params
            a2v_gate = video_ca_gate_param[0].squeeze(2)

            # Audio
            audio_per_layer_ca_scale_shift = self.audio_a2v_cross_attn_scale_shift_table[:4, :]
            audio_per_layer_ca_gate = self.audio_a2v_cross_attn_scale_shift_table[4:, :]

            audio_ca_ada_params = self.get_mod_params(
                audio_per_layer_ca_scale_shift, temb_ca_audio_scale_shift, batch_size
            )
            audio_ca_gate_param = self.get_mod_params(audio_per_layer_ca_gate, temb_ca_audio_gate, batch_size)

            audio_a2v_ca_scale, audio_a2v_ca_shift, audio_v2a_ca_scale, audio_v2a_ca_shift = audio_ca_ada_params
            v2a_gate = audio_ca_gate_param[0].squeeze(2)

            # 3.2. Audio-to-Video Cross Attention: Q: Video; K,V: Audio
            if use_a2v_cross_attention:
                mod_norm_hidden_states = norm_hidden_states * (
                    1 + video_a2v_ca_scale.squeeze(2)
                ) + video_a2v_ca_shift.squeeze(2)
                mod_norm_audio_hidden_states = norm_audio_hidden_states * (
                    1 + audio_a2v_ca_scale.squeeze(2)
                ) + audio_a2v_ca_shift.squeeze(2)

                a2v_attn_hidden_states = self.audio_to_video_attn(
                    mod_norm_hidden_states,
                    encoder_hidden_states=mod_norm_audio_hidden_states,
                    query_rotary_emb=ca_video_rotary_emb,
                    key_rotary_emb=ca_audio_rotary_emb,
                    attention_mask=a2v_cross_attention_mask,
                )

                hidden_states = hidden_states + self.hook_a2v_attn_out(a2v_gate * a2v_attn_hidden_states)

            # 3.3. Video-to-Audio Cross Attention: Q: Audio; K,V: Video
            if use_v2a_cross_attention:
                mod_norm_hidden_states = norm_hidden_states * (
                    1 + video_v2a_ca_scale.squeeze(2)
                ) + video_v2a_ca_shift.squeeze(2)
                mod_norm_audio_hidden_states = norm_audio_hidden_states * (
                    1 + audio_v2a_ca_scale.squeeze(2)
                ) + audio_v2a_ca_shift.squeeze(2)

                v2a_attn_hidden_states = self.video_to_audio_attn(
                    mod_norm_audio_hidden_states,
                    encoder_hidden_states=mod_norm_hidden_states,
                    query_rotary_emb=ca_audio_rotary_emb,
                    key_rotary_emb=ca_video_rotary_emb,
                    attention_mask=v2a_cross_attention_mask,
                )

                audio_hidden_states = audio_hidden_states + self.hook_audio_v2a_attn_out(
                    v2a_gate * v2a_attn_hidden_states
                )

        # 4. Feedforward
        norm_hidden_states = self.norm3(hidden_states) * (1 + scale_mlp) + shift_mlp
        ff_output = self.ff(norm_hidden_states)
        hidden_states = hidden_states + self.hook_mlp_out(ff_output * gate_mlp)

        norm_audio_hidden_states = self.audio_norm3(audio_hidden_states) * (1 + audio_scale_mlp) + audio_shift_mlp
        audio_ff_output = self.audio_ff(norm_audio_hidden_states)
        audio_hidden_states = audio_hidden_states + self.hook_audio_mlp_out(audio_ff_output * audio_gate_mlp)

        return self.hook_resid_post(hidden_states), self.hook_audio_resid_post(audio_hidden_states)


class LTX2Adapter(LTXAdapter):
    """LTX-2 / 2.3: LTX-Video's token packing, plus the audio stream's inputs in the extras."""

    family = "ltx2"
    class_name = "LTX2VideoTransformer3DModel"
    block_lists = ("transformer_blocks",)
    audio_len = 5  # audio latent tokens of random inputs

    @property
    def model_class(self) -> type[nn.Module]:
        return LTX2VideoTransformer3DModel

    def tiny_config(self) -> dict[str, Any]:
        return dict(
            in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
            cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
            audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=3, caption_channels=16,
        )  # fmt: skip

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        return HookedLTX2Block

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        names = ("hidden_states", "audio_hidden_states")
        return tuple(args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))

    def default_extras(self, transformer, batch, text_len, generator) -> dict[str, Tensor]:
        c = transformer.config
        return {
            "encoder_attention_mask": torch.ones(batch, text_len),
            "audio_hidden_states": torch.randn(batch, self.audio_len, c.audio_in_channels, generator=generator),
            "audio_encoder_hidden_states": torch.randn(batch, text_len, c.caption_channels, generator=generator),
        }

    nullable_extras = ("audio_encoder_hidden_states",)

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        return self.forward_streams(transformer, latents, timestep, text, condition)[0]

    def forward_streams(self, transformer, latents, timestep, text: TextConditioning,
                        condition=None) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """(video prediction, ``{"audio_hidden_states": audio prediction}``), as ``LTX2Pipeline`` calls the model:
        packed video tokens and the grid size, the audio latents and their text embeddings, one text mask for both
        streams (the extras' ``audio_encoder_attention_mask`` overrides it), ``sigma = timestep`` (read by LTX-2.3's
        prompt modulation), ``audio_num_frames`` = the audio tokens. A per-token timestep (B, tokens)
        (``LTX2ImageToVideoPipeline``: the first frame's tokens at 0) is the video's; the audio stream and ``sigma``
        take the sample's own, ``timestep.amax(1)``, as that pipeline passes them."""
        self.check_channels(transformer, latents, condition)
        f, h, w = self.token_grid(transformer, latents.shape)
        extras = dict(text.extras)
        missing = [k for k in ("audio_hidden_states", "audio_encoder_hidden_states") if k not in extras]
        if missing:
            raise ValueError(f"ltx2: text conditioning lacks extras {missing} (has {sorted(extras)})")
        mask = extras.pop("encoder_attention_mask", None)
        if mask is None:
            mask = torch.ones(text.encoder_hidden_states.shape[:2], device=latents.device)
        extras.setdefault("audio_encoder_attention_mask", mask)
        extras.setdefault("audio_num_frames", extras["audio_hidden_states"].shape[1])
        if timestep.ndim == 2:  # per-token (I2V: clean first-frame tokens at 0): audio and prompt take the sample's t
            extras.setdefault("audio_timestep", timestep.amax(dim=1))
        extras.setdefault("sigma", extras.get("audio_timestep", timestep))
        video, audio = transformer(
            hidden_states=self.pack(transformer, self.concat_condition(latents, condition)),
            encoder_hidden_states=text.encoder_hidden_states,
            timestep=timestep,
            encoder_attention_mask=mask,
            num_frames=f,
            height=h,
            width=w,
            return_dict=False,
            **extras,
        )
        return self.unpack(transformer, video, latents.shape), {"audio_hidden_states": audio}
