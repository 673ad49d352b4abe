"""Every diffusers video transformer class, built tiny: a config and matching forward inputs per class.

The set is every class the installed diffusers exports under a name ending ``Transformer3DModel`` (diffusers' naming
for its video DiTs; :func:`interp.adapters.generic.video_transformer_classes`). Configs and inputs follow diffusers'
own model tests (tests/models/transformers/test_models_transformer_*.py) with dimensions kept small. A class that
cannot be built small (or called without machinery beyond one forward) is in ``NOT_BUILT`` with the reason; the
test asserts the two tables together cover the whole set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Inputs = Callable[[torch.Generator], dict[str, Any]]


@dataclass(frozen=True)
class Tiny:
    config: dict[str, Any]
    inputs: Inputs  # keyword arguments of one forward (hidden_states, timestep, encoder_hidden_states, extras)
    skip_block: int = 0  # a block whose skip changes the output
    from_model: Callable[[Any], dict[str, Any]] | None = None  # inputs the model itself builds (its RoPE)


def _r(g, *shape):
    return torch.randn(*shape, generator=g)


def _t(g, b=1):
    return torch.randint(0, 1000, (b,), generator=g).float()


def _wan_like_inputs(c, f, h, w, text_dim, extra=None):
    def inputs(g):
        return {
            "hidden_states": _r(g, 1, c, f, h, w),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 12, text_dim),
            **(extra(g) if extra else {}),
        }

    return inputs


def _minimax_layout(n_text, n_audio, n_video):
    """The packed sequence MiniMax-H3's pipelines build (text, audio, video rows; as diffusers' test does)."""
    n = n_text + n_audio + n_video
    text, audio, video = torch.arange(n_text), torch.arange(n_text, n_text + n_audio), torch.arange(n_text + n_audio, n)
    tags = torch.empty(n, dtype=torch.long)
    tags[text], tags[audio], tags[video] = 1, 2, 0
    t_idx = torch.zeros(n, dtype=torch.long)
    t_idx[audio] = 1
    pos = torch.zeros(n, 3)
    pos[:, 0] = torch.arange(n, dtype=torch.float32)
    pos[video, 1] = torch.arange(n_video, dtype=torch.float32) % 4
    pos[video, 2] = torch.arange(n_video, dtype=torch.float32) % 2
    return {
        "timestep": torch.tensor([0.7, 0.3]),
        "timestep_indices": t_idx,
        "token_tags": tags,
        "position_ids": pos,
        "video_indices": video,
        "audio_indices": audio,
        "text_indices": text,
    }


def _wan_animate2_cache(n_layers):
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    return WanAnimate2KVCache(n_layers)


_WAN = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=8,
    in_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=16,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)

TINY: dict[str, Tiny] = {
    "WanTransformer3DModel": Tiny(_WAN, _wan_like_inputs(4, 2, 8, 8, 16)),
    "SkyReelsV2Transformer3DModel": Tiny(_WAN, _wan_like_inputs(4, 2, 8, 8, 16)),
    "ChronoEditTransformer3DModel": Tiny(
        {**_WAN, "rope_temporal_skip_len": 8, "rope_max_seq_len": 64},
        _wan_like_inputs(4, 2, 8, 8, 16),
    ),
    "WanVACETransformer3DModel": Tiny(
        {**_WAN, "num_layers": 4, "vace_layers": [0, 2], "vace_in_channels": 12},
        _wan_like_inputs(4, 2, 8, 8, 16, lambda g: {"control_hidden_states": _r(g, 1, 12, 2, 8, 8)}),
    ),
    "HeliosTransformer3DModel": Tiny(
        {
            **{k: v for k, v in _WAN.items() if k != "rope_max_seq_len"},
            "attention_head_dim": 12,
            "rope_dim": (4, 4, 4),
            "has_multi_term_memory_patch": True,
            "guidance_cross_attn": True,
            "zero_history_timestep": True,
            "is_amplify_history": False,
        },
        _wan_like_inputs(
            4,
            2,
            8,
            8,
            16,
            lambda g: {
                "indices_hidden_states": torch.ones(1, 2),
                "indices_latents_history_short": torch.ones(1, 1),
                "indices_latents_history_mid": torch.ones(1, 1),
                "indices_latents_history_long": torch.ones(1, 4),
                "latents_history_short": _r(g, 1, 4, 1, 8, 8),
                "latents_history_mid": _r(g, 1, 4, 1, 8, 8),
                "latents_history_long": _r(g, 1, 4, 4, 8, 8),
            },
        ),
    ),
    "AnyFlowTransformer3DModel": Tiny(
        {**{k: v for k, v in _WAN.items() if k != "qk_norm"}, "gate_value": 0.25, "deltatime_type": "r"},
        lambda g: {
            "hidden_states": _r(g, 1, 2, 4, 8, 8),
            "timestep": torch.tensor([[700.0, 600.0]]),
            "r_timestep": torch.tensor([[300.0, 200.0]]),
            "encoder_hidden_states": _r(g, 1, 12, 16),
        },
    ),
    "WanAnimateTransformer3DModel": Tiny(
        {
            **_WAN,
            "in_channels": 12,
            "latent_channels": 4,
            "image_dim": 16,
            "motion_encoder_channel_sizes": {"4": 16, "8": 16, "16": 16},
            "motion_encoder_size": 16,
            "motion_style_dim": 8,
            "motion_dim": 4,
            "motion_encoder_dim": 16,
            "face_encoder_hidden_dim": 16,
            "face_encoder_num_heads": 2,
            "inject_face_latents_blocks": 2,
        },
        lambda g: {
            "hidden_states": _r(g, 1, 12, 21, 8, 8),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 12, 16),
            "encoder_hidden_states_image": _r(g, 1, 12, 16),
            "pose_hidden_states": _r(g, 1, 4, 20, 8, 8),
            "face_pixel_values": _r(g, 1, 3, 77, 16, 16),
        },
    ),
    "CogVideoXTransformer3DModel": Tiny(
        dict(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=2,
            text_embed_dim=8,
            num_layers=2,
            sample_width=8,
            sample_height=8,
            sample_frames=8,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=8,
        ),
        lambda g: {"hidden_states": _r(g, 1, 1, 4, 8, 8), "timestep": _t(g), "encoder_hidden_states": _r(g, 1, 8, 8)},
    ),
    "ConsisIDTransformer3DModel": Tiny(
        dict(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=2,
            text_embed_dim=8,
            num_layers=2,
            sample_width=8,
            sample_height=8,
            sample_frames=8,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=8,
            cross_attn_interval=1,
            is_kps=False,
            is_train_face=True,
            cross_attn_dim_head=1,
            cross_attn_num_heads=1,
            LFE_id_dim=2,
            LFE_vit_dim=2,
            LFE_depth=5,
            LFE_dim_head=8,
            LFE_num_heads=2,
            LFE_num_id_token=1,
            LFE_num_querie=1,
            LFE_output_dim=10,
            LFE_ff_mult=1,
            LFE_num_scale=1,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 1, 4, 8, 8),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 8, 8),
            "id_vit_hidden": [torch.ones(1, 2, 2)],
            "id_cond": torch.ones(1, 2),
        },
    ),
    "LTXVideoTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            cross_attention_dim=16,
            num_layers=2,
            caption_channels=16,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 2 * 4 * 4, 4),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "encoder_attention_mask": torch.ones(1, 6),
            "num_frames": 2,
            "height": 4,
            "width": 4,
        },
    ),
    "LTX2VideoTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=2,
            attention_head_dim=8,
            cross_attention_dim=16,
            audio_in_channels=4,
            audio_out_channels=4,
            audio_num_attention_heads=2,
            audio_attention_head_dim=4,
            audio_cross_attention_dim=8,
            num_layers=2,
            qk_norm="rms_norm_across_heads",
            caption_channels=16,
            rope_double_precision=False,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 2 * 4 * 4, 4),
            "audio_hidden_states": _r(g, 1, 9, 4),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "audio_encoder_hidden_states": _r(g, 1, 6, 16),
            "timestep": _t(g),
            "num_frames": 2,
            "height": 4,
            "width": 4,
            "audio_num_frames": 9,
            "fps": 25.0,
        },
    ),
    "HunyuanVideoTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=10,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            patch_size=1,
            patch_size_t=1,
            guidance_embeds=True,
            text_embed_dim=16,
            pooled_projection_dim=8,
            rope_axes_dim=(2, 4, 4),
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 4, 1, 4, 4),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "pooled_projections": _r(g, 1, 8),
            "encoder_attention_mask": torch.ones(1, 6),
            "guidance": torch.tensor([6000.0]),
        },
    ),
    "HunyuanVideoFramepackTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=10,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            patch_size=2,
            patch_size_t=1,
            guidance_embeds=True,
            text_embed_dim=16,
            pooled_projection_dim=8,
            rope_axes_dim=(2, 4, 4),
            image_condition_type=None,
            has_image_proj=True,
            image_proj_dim=16,
            has_clean_x_embedder=True,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 4, 3, 4, 4),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "pooled_projections": _r(g, 1, 8),
            "encoder_attention_mask": torch.ones(1, 6),
            "guidance": torch.tensor([6000.0]),
            "image_embeds": _r(g, 1, 6, 16),
            "indices_latents": torch.ones(3),
            "latents_clean": _r(g, 1, 4, 2, 4, 4),
            "indices_latents_clean": torch.ones(2),
            "latents_history_2x": _r(g, 1, 4, 2, 4, 4),
            "indices_latents_history_2x": torch.ones(2),
            "latents_history_4x": _r(g, 1, 4, 8, 4, 4),
            "indices_latents_history_4x": torch.ones(8),
        },
    ),
    "HunyuanVideo15Transformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            num_refiner_layers=1,
            mlp_ratio=2.0,
            patch_size=1,
            patch_size_t=1,
            text_embed_dim=16,
            text_embed_2_dim=8,
            image_embed_dim=12,
            rope_axes_dim=(2, 2, 4),
            target_size=16,
            task_type="t2v",
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 4, 1, 8, 8),
            "timestep": torch.tensor([1.0]),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "encoder_hidden_states_2": _r(g, 1, 4, 8),
            "encoder_attention_mask": torch.ones(1, 6),
            "encoder_attention_mask_2": torch.ones(1, 4),
            "image_embeds": torch.zeros(1, 3, 12),
        },
    ),
    "MochiTransformer3DModel": Tiny(
        dict(
            patch_size=2,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            pooled_projection_dim=16,
            in_channels=4,
            out_channels=None,
            qk_norm="rms_norm",
            text_embed_dim=16,
            time_embed_dim=4,
            activation_fn="swiglu",
            max_sequence_length=16,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 4, 2, 8, 8),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 16, 16),
            "encoder_attention_mask": torch.ones(1, 16, dtype=torch.bool),
        },
    ),
    "AllegroTransformer3DModel": Tiny(
        dict(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            cross_attention_dim=16,
            sample_width=8,
            sample_height=8,
            sample_frames=8,
            caption_channels=8,
        ),
        lambda g: {"hidden_states": _r(g, 1, 4, 2, 8, 8), "timestep": _t(g), "encoder_hidden_states": _r(g, 1, 16, 8)},
    ),
    "CosmosTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=12,
            num_layers=2,
            mlp_ratio=2,
            text_embed_dim=16,
            adaln_lora_dim=4,
            max_size=(4, 32, 32),
            patch_size=(1, 2, 2),
            rope_scale=(2.0, 1.0, 1.0),
            concat_padding_mask=False,
            extra_pos_embed_type="learnable",
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 4, 1, 8, 8),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 12, 16),
            "attention_mask": torch.ones(1, 12),
            "fps": 30,
            "padding_mask": torch.zeros(1, 1, 8, 8),
        },
    ),
    "EasyAnimateTransformer3DModel": Tiny(
        dict(
            attention_head_dim=16,
            num_attention_heads=2,
            in_channels=4,
            mmdit_layers=2,
            num_layers=2,
            out_channels=4,
            patch_size=2,
            sample_height=60,
            sample_width=90,
            text_embed_dim=16,
            time_embed_dim=8,
            time_position_encoding_type="3d_rope",
            timestep_activation_fn="silu",
        ),
        lambda g: {"hidden_states": _r(g, 1, 4, 2, 8, 8), "timestep": _t(g), "encoder_hidden_states": _r(g, 1, 16, 16)},
    ),
    "LatteTransformer3DModel": Tiny(
        dict(
            sample_size=8,
            num_layers=2,
            patch_size=2,
            video_length=2,
            attention_head_dim=4,
            num_attention_heads=2,
            caption_channels=8,
            in_channels=4,
            cross_attention_dim=8,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 4, 2, 8, 8),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 8, 8),
            "enable_temporal_attentions": True,
        },
    ),
    "SanaVideoTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=12,
            num_layers=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=12,
            cross_attention_dim=24,
            caption_channels=16,
            mlp_ratio=2.5,
            dropout=0.0,
            attention_bias=False,
            sample_size=8,
            patch_size=(1, 2, 2),
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        ),
        lambda g: {"hidden_states": _r(g, 1, 4, 2, 8, 8), "timestep": _t(g), "encoder_hidden_states": _r(g, 1, 12, 16)},
    ),
    "MotifVideoTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=12,
            num_layers=1,
            num_single_layers=1,
            num_decoder_layers=0,
            mlp_ratio=4.0,
            patch_size=1,
            patch_size_t=1,
            qk_norm="rms_norm",
            norm_type="layer_norm",
            text_embed_dim=32,
            image_embed_dim=4,
            rope_theta=256.0,
            rope_axes_dim=(4, 4, 4),
            enable_text_cross_attention_dual=False,
            enable_text_cross_attention_single=False,
        ),
        lambda g: {"hidden_states": _r(g, 1, 4, 2, 4, 4), "timestep": _t(g), "encoder_hidden_states": _r(g, 1, 12, 32)},
    ),
    "JoyImageEditTransformer3DModel": Tiny(
        dict(
            patch_size=[1, 2, 2],
            in_channels=16,
            hidden_size=32,
            num_attention_heads=2,
            text_dim=16,
            num_layers=2,
            rope_dim_list=[4, 6, 6],
            theta=256,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 16, 1, 4, 4),
            "timestep": torch.tensor([1.0]),
            "encoder_hidden_states": _r(g, 1, 12, 16),
        },
    ),
    "Kandinsky5Transformer3DModel": Tiny(
        dict(
            in_visual_dim=4,
            in_text_dim=16,
            in_text_dim2=8,
            time_dim=16,
            out_visual_dim=4,
            patch_size=(1, 2, 2),
            model_dim=32,
            ff_dim=64,
            num_text_blocks=1,
            num_visual_blocks=2,
            axes_dims=(4, 6, 6),
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 2, 8, 8, 4),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "pooled_projections": _r(g, 1, 8),
            "text_rope_pos": torch.arange(6),
            "visual_rope_pos": [torch.arange(2), torch.arange(4), torch.arange(4)],
        },
    ),
    "Kandinsky6Transformer3DModel": Tiny(
        dict(
            in_visual_dim=4,
            out_visual_dim=4,
            in_text_dim=16,
            in_text_dim2=8,
            time_dim=16,
            model_dim=32,
            ff_dim=64,
            num_text_blocks=1,
            num_visual_blocks=2,
            axes_dims=(4, 6, 6),
            visual_cond=False,
            in_audio_dim=4,
            out_audio_dim=4,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 2, 8, 8, 4),
            "timestep": _t(g),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "pooled_projections": _r(g, 1, 8),
        },
    ),
    "Kandinsky6SRTransformer3DModel": Tiny(
        dict(
            in_visual_dim=4,
            out_visual_dim=4,
            time_dim=16,
            model_dim=32,
            ff_dim=64,
            num_visual_blocks=2,
            axes_dims=(4, 6, 6),
        ),
        lambda g: {"hidden_states": _r(g, 1, 2, 8, 8, 9), "timestep": _t(g)},  # latents, condition, mask
    ),
    "JoyImageEditPlusTransformer3DModel": Tiny(
        dict(
            patch_size=[1, 2, 2],
            in_channels=16,
            hidden_size=32,
            num_attention_heads=2,
            text_dim=16,
            num_layers=2,
            rope_dim_list=[4, 6, 6],
            theta=256,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 2, 16, 1, 2, 2),
            "timestep": torch.tensor([1.0]),
            "encoder_hidden_states": _r(g, 1, 12, 16),
            "shape_list": [[(1, 1, 1), (1, 1, 1)]],
        },
    ),
    "AnyFlowFARTransformer3DModel": Tiny(
        {
            **{k: v for k, v in _WAN.items() if k != "qk_norm"},
            "compressed_patch_size": (1, 4, 4),
            "full_chunk_limit": 3,
            "gate_value": 0.25,
            "deltatime_type": "r",
        },
        lambda g: {
            "hidden_states": _r(g, 1, 4, 4, 8, 8),
            "timestep": torch.tensor([[700.0] * 4]),
            "r_timestep": torch.tensor([[300.0] * 4]),
            "encoder_hidden_states": _r(g, 1, 12, 16),
            "chunk_partition": [2, 2],
        },
    ),
    "MiniMaxH3Transformer3DModel": Tiny(
        dict(
            num_attention_heads=2,
            attention_head_dim=16,
            hidden_size=24,
            num_layers=2,
            num_refiner_layers=2,
            ffn_dim=32,
            in_channels=4,
            audio_in_channels=6,
            patch_size=(1, 2, 2),
            text_dim=8,
            freq_dim=8,
            time_embed_hidden_dim=24,
            time_embed_dim=16,
            rope_freq_dim=2,
        ),
        lambda g: {
            "hidden_states": _r(g, 1, 8, 16),
            "audio_hidden_states": _r(g, 1, 6, 6),
            "encoder_hidden_states": _r(g, 1, 4, 8),
            **_minimax_layout(4, 6, 8),
        },
    ),
    "SanaWMTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            num_layers=2,
            hidden_size=32,
            num_attention_heads=2,
            linear_head_dim=16,
            caption_channels=16,
            chunk_plucker_post_attn_blocks=2,
            use_chunk_plucker_post_attn=False,
            image_size=64,
            mixed_precision="fp32",
            fp32_attention=False,
        ),
        # one timestep per latent frame, (B, 1, F); no camera conditioning
        lambda g: {
            "hidden_states": _r(g, 1, 4, 2, 8, 8),
            "timestep": torch.tensor([[[500.0, 400.0]]]),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "mask": torch.ones(1, 6),
        },
    ),
    "SanaWMLTX2RefinerTransformer3DModel": Tiny(
        dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            cross_attention_dim=16,
            audio_in_channels=4,
            audio_out_channels=4,
            audio_num_attention_heads=2,
            audio_attention_head_dim=4,
            audio_cross_attention_dim=8,
            num_layers=2,
            caption_channels=16,
            rope_double_precision=False,
        ),
        # packed tokens of a 2 x 4 x 4 latent, one timestep per token, no KV cache (a bidirectional pass)
        lambda g: {
            "hidden_states": _r(g, 1, 32, 4),
            "encoder_hidden_states": _r(g, 1, 6, 16),
            "timestep": torch.full((1, 32), 500.0),
            "encoder_attention_mask": torch.ones(1, 6),
        },
        from_model=lambda m: {
            "video_rotary_emb": m.build_rotary_emb_for_absolute_positions(
                batch_size=1, frame_positions=[0, 1], height=4, width=4, device="cpu", fps=25.0
            )
        },
    ),
    "WanAnimate2Transformer3DModel": Tiny(
        dict(
            patch_size=(1, 2, 2),
            text_len=16,
            in_dim=36,
            dim=32,
            ffn_dim=64,
            freq_dim=16,
            text_dim=32,
            out_dim=16,
            num_heads=2,
            num_layers=2,
            cross_attn_norm=True,
            use_img_emb=True,
        ),
        # the reference pass (kv_cache_mode "extract"): per-sample lists in, a list per sample out; it fills the cache
        # and its output depends on the inputs only, so repeated calls agree
        lambda g: {
            "hidden_states": [_r(g, 16, 2, 4, 4)],
            "timestep": torch.tensor([1.0]),
            "encoder_hidden_states": [_r(g, 8, 32)],
            "condition_latents": [_r(g, 20, 2, 4, 4)],
            "encoder_hidden_states_image": _r(g, 1, 4, 1280),
            "kv_cache": _wan_animate2_cache(2),
            "kv_cache_mode": "extract",
            "seq_len": 8,
            "offset_grid_sizes": torch.tensor([[2, 2, 2]]),
        },
    ),
}

NOT_BUILT: dict[str, str] = {}
"""Class name -> why the test zoo does not build it small."""
