"""Tiny random diffusers pipelines from the real component classes, saved with ``save_pretrained`` (nothing
downloaded): Wan2.1 T2V, Wan2.1 I2V (CLIP image encoder), Wan2.2 A14B I2V (two experts, ``boundary_ratio``) and
Wan2.2 TI2V-5B (``expand_timesteps``), sized as diffusers' own Wan pipeline tests build them; CogVideoX, LTX-Video,
HunyuanVideo, SkyReels-V2, Wan VACE, Mochi, HunyuanVideo 1.5 and LTX-2 below.

Each builder returns the directory; a 5-frame 32x32 video in 3 steps runs in seconds on a CPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from PIL import Image
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerFast,
    UMT5Config,
    UMT5EncoderModel,
)

WORDS = "a an the red blue green ball moves left right up down square circle draw path maze solve slowly".split()
TEXT_DIM = 32


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def text_encoder(vocab_size: int) -> UMT5EncoderModel:
    cfg = UMT5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
                     feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                     decoder_start_token_id=0)  # fmt: skip
    return UMT5EncoderModel(cfg).eval()


def vae(ti2v: bool = False) -> AutoencoderKLWan:
    if ti2v:  # Wan2.2 VAE: 48 latent channels, patchified 2x2 input, 16x spatial
        return AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                                latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1],
                                num_res_blocks=1, scale_factor_spatial=16, scale_factor_temporal=4,
                                temperal_downsample=[False, True, True])  # fmt: skip
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])  # fmt: skip


def transformer(in_channels: int, out_channels: int, image_dim: int | None = None) -> WanTransformer3DModel:
    extra = {"image_dim": image_dim, "added_kv_proj_dim": 24} if image_dim else {}
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                 in_channels=in_channels, out_channels=out_channels, text_dim=TEXT_DIM, freq_dim=256,
                                 ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 rope_max_seq_len=32, **extra)  # fmt: skip


def unipc() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def build(kind: str, root: Path, seed: int = 0) -> Path:
    """kind: ``t2v`` (WanPipeline), ``i2v`` (Wan2.1 + CLIP), ``a14b`` (two experts), ``ti2v`` (expand_timesteps)."""
    torch.manual_seed(seed)
    tok = tokenizer()
    common = dict(tokenizer=tok, text_encoder=text_encoder(len(tok)))
    if kind == "t2v":
        pipe = WanPipeline(**common, vae=vae(), scheduler=unipc(), transformer=transformer(16, 16))
    elif kind == "i2v":
        pipe = WanImageToVideoPipeline(**common, vae=vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                       transformer=transformer(36, 16, image_dim=4), image_encoder=clip_image_encoder(),
                                       image_processor=CLIPImageProcessor(crop_size=32, size=32))  # fmt: skip
    elif kind == "a14b":
        pipe = WanImageToVideoPipeline(**common, vae=vae(), scheduler=unipc(), transformer=transformer(36, 16),
                                       transformer_2=transformer(36, 16), boundary_ratio=0.875)  # fmt: skip
    elif kind == "ti2v":
        pipe = WanImageToVideoPipeline(**common, vae=vae(ti2v=True), scheduler=unipc(),
                                       transformer=transformer(48, 48), expand_timesteps=True)  # fmt: skip
    elif kind in FAMILY_BUILDERS:
        pipe = FAMILY_BUILDERS[kind](kind)
    else:
        raise ValueError(kind)
    out = Path(root) / kind
    pipe.save_pretrained(out)
    return out


def build_all(kinds, root: Path) -> dict[str, Path]:
    """Every pipeline of ``kinds`` saved under ``root`` (their build warnings silenced), plus ``img``: a 32x32
    first frame for the image-to-video kinds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dirs = {k: build(k, root) for k in kinds}
    image(root / "img.png", (32, 32), seed=1)
    dirs["img"] = root / "img.png"
    return dirs


def image(path: Path | None = None, size: tuple[int, int] = (32, 32), seed: int = 0) -> Image.Image:
    """A random RGB image (written to ``path`` as PNG when given)."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if path is not None:
        img.save(path)
    return img


# --- CogVideoX (T2V, I2V): T5 text encoder, CogVideoX VAE, v-prediction DDIM / DPM schedulers -------------------

COG_SCHEDULER = dict(
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    clip_sample=False,
    set_alpha_to_one=True,
    snr_shift_scale=3.0,
)  # as CogVideoX-5b's scheduler_config.json
COG_SIZE = dict(num_frames=9, height=32, width=32)  # latent 3 x 4 x 4, 2 x 2 tokens per frame (patch 2)


def t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
                   feed_forward_proj="relu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    return T5EncoderModel(cfg).eval()


def cog_pipeline(kind: str):
    """kind: ``cog-t2v`` / ``cog-i2v``, ``-dpm`` for CogVideoXDPMScheduler (else CogVideoXDDIMScheduler)."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    i2v = kind.startswith("cog-i2v")
    tok = tokenizer()
    vae_ = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
                                  up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                  latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                  temporal_compression_ratio=4)  # fmt: skip
    t = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, in_channels=8 if i2v else 4,
                                    out_channels=4, time_embed_dim=8, text_embed_dim=TEXT_DIM, num_layers=2,
                                    sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
                                    temporal_compression_ratio=4, max_text_seq_length=16,
                                    use_rotary_positional_embeddings=True)  # fmt: skip
    sched = (CogVideoXDPMScheduler if kind.endswith("-dpm") else CogVideoXDDIMScheduler)(**COG_SCHEDULER)
    cls = CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline
    return cls(tokenizer=tok, text_encoder=t5_encoder(len(tok)), vae=vae_, transformer=t, scheduler=sched)


FAMILY_BUILDERS = {k: cog_pipeline for k in ("cog-t2v", "cog-i2v", "cog-t2v-dpm", "cog-i2v-dpm")}


# --- LTX-Video (T2V, I2V): T5 text encoder, LTX VAE (timestep-conditioned decoder), dynamic-shift flow matching ------

LTX_SCHEDULER = dict(
    use_dynamic_shifting=True,
    base_image_seq_len=1024,
    max_image_seq_len=4096,
    base_shift=0.95,
    max_shift=2.05,
    shift=1.0,
    shift_terminal=0.1,
    time_shift_type="exponential",
)  # LTX-Video 0.9.x
LTX_SIZE = dict(num_frames=9, height=32, width=32)  # latent 3 x 8 x 8 (spatial and temporal ratio 4)


def ltx_pipeline(kind: str):
    from diffusers import (
        AutoencoderKLLTXVideo,
        LTXImageToVideoPipeline,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    tok = tokenizer()
    vae_ = AutoencoderKLLTXVideo(in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
                                 decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                                 decoder_layers_per_block=(1, 1, 1, 1, 1),
                                 spatio_temporal_scaling=(True, True, False, False),
                                 decoder_spatio_temporal_scaling=(True, True, False, False),
                                 decoder_inject_noise=(False, False, False, False, False),
                                 upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
                                 timestep_conditioning=True, patch_size=1, patch_size_t=1, encoder_causal=True,
                                 decoder_causal=False)  # fmt: skip
    vae_.use_framewise_encoding = False
    g = torch.Generator().manual_seed(5)  # non-trivial statistics, so that a wrong de-normalization shows
    vae_.latents_mean.copy_(torch.randn(8, generator=g) * 0.3)
    vae_.latents_std.copy_(torch.rand(8, generator=g) + 0.5)
    vae_.use_framewise_decoding = False
    t = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
                                   attention_head_dim=8, cross_attention_dim=16, num_layers=2,
                                   caption_channels=TEXT_DIM)  # fmt: skip
    from diffusers import FlowMatchEulerDiscreteScheduler

    cls = LTXImageToVideoPipeline if kind == "ltx-i2v" else LTXPipeline
    return cls(tokenizer=tok, text_encoder=t5_encoder(len(tok)), vae=vae_, transformer=t,
               scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER))  # fmt: skip


FAMILY_BUILDERS.update({k: ltx_pipeline for k in ("ltx-t2v", "ltx-i2v")})


# --- HunyuanVideo (T2V): a Llama text encoder (hidden states, default prompt template) and CLIP (pooled), guidance
# embedding, flow matching with shift 7 ------------------------------------------------------------------------------

HUNYUAN_SIZE = dict(num_frames=9, height=16, width=16)  # latent 3 x 2 x 2


def hunyuan_pipeline(kind: str):
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tok, tok2 = tokenizer(), tokenizer()
    llama = LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                   num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                                   max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
                                   eos_token_id=1)).eval()  # fmt: skip
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok2), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77, projection_dim=8,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=1)).eval()  # fmt: skip
    vae_ = AutoencoderKLHunyuanVideo(in_channels=3, out_channels=3, latent_channels=4,
                                     down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                     up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                     layers_per_block=1, act_fn="silu", norm_num_groups=4, scaling_factor=0.476986,
                                     spatial_compression_ratio=8, temporal_compression_ratio=4,
                                     mid_block_add_attention=True)  # fmt: skip
    t = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
                                       num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=1,
                                       patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
                                       pooled_projection_dim=8, rope_axes_dim=(2, 4, 4))  # fmt: skip
    return HunyuanVideoPipeline(
        tokenizer=tok,
        text_encoder=llama,
        tokenizer_2=tok2,
        text_encoder_2=clip,
        transformer=t,
        vae=vae_,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )


FAMILY_BUILDERS["hunyuan"] = hunyuan_pipeline


# --- SkyReels-V2 (T2V), Wan VACE (T2V through the control branch), Mochi (T2V) -------------------------------------

NEW_SIZE = dict(num_frames=5, height=32, width=32)  # Wan VAE: latent 2 x 4 x 4
MOCHI_SIZE = dict(num_frames=7, height=32, width=32)  # Mochi VAE (6x temporal, 8x spatial): latent 2 x 4 x 4


def clip_image_encoder():
    return CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                                          num_attention_heads=2, image_size=32, intermediate_size=16,
                                                          patch_size=1)).eval()  # fmt: skip


def skyreels_pipeline(kind: str):
    """kind: ``skyreels`` (SkyReelsV2Pipeline) or ``skyreels-i2v`` (SkyReelsV2ImageToVideoPipeline: CLIP image
    embeddings and the image latent condition, as Wan2.1 I2V)."""
    from diffusers import SkyReelsV2ImageToVideoPipeline, SkyReelsV2Pipeline, SkyReelsV2Transformer3DModel

    tok = tokenizer()
    i2v = kind == "skyreels-i2v"
    extra = {"image_dim": 4, "added_kv_proj_dim": 24} if i2v else {}
    t = SkyReelsV2Transformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                     in_channels=36 if i2v else 16, out_channels=16, text_dim=TEXT_DIM, freq_dim=256,
                                     ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                     rope_max_seq_len=32, **extra)  # fmt: skip
    common = dict(tokenizer=tok, text_encoder=text_encoder(len(tok)), vae=vae(), scheduler=unipc(), transformer=t)
    if i2v:
        return SkyReelsV2ImageToVideoPipeline(**common, image_encoder=clip_image_encoder(),
                                              image_processor=CLIPImageProcessor(crop_size=32, size=32))  # fmt: skip
    return SkyReelsV2Pipeline(**common)


def wan_vace_pipeline(kind: str):
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    tok = tokenizer()
    # control latents: 2 x 16 (inactive, reactive video latents) + 8 x 8 (the mask, folded from pixels) = 96
    t = WanVACETransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
                                  out_channels=16, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=3,
                                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
                                  vace_layers=[0, 2], vace_in_channels=96)  # fmt: skip
    return WanVACEPipeline(tokenizer=tok, text_encoder=text_encoder(len(tok)), vae=vae(), scheduler=unipc(),
                           transformer=t)  # fmt: skip


def mochi_pipeline(kind: str):
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel

    tok = tokenizer()
    vae_ = AutoencoderKLMochi(latent_channels=12, out_channels=3, encoder_block_out_channels=(32,) * 4,
                              decoder_block_out_channels=(32,) * 4, layers_per_block=(1, 1, 1, 1, 1))  # fmt: skip
    t = MochiTransformer3DModel(patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2,
                                pooled_projection_dim=16, in_channels=12, text_embed_dim=TEXT_DIM, time_embed_dim=4,
                                max_sequence_length=16)  # fmt: skip
    return MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae_, text_encoder=t5_encoder(len(tok)),
                         tokenizer=tok, transformer=t)  # fmt: skip


FAMILY_BUILDERS.update({"skyreels": skyreels_pipeline, "skyreels-i2v": skyreels_pipeline, "wanvace": wan_vace_pipeline,
                        "wanvace-r2v": wan_vace_pipeline, "mochi": mochi_pipeline})  # fmt: skip


# --- HunyuanVideo 1.5 (T2V): Qwen2.5-VL text model through a chat template, ByT5 glyph encoder, a CFG guider --------

HUNYUAN15_SIZE = dict(num_frames=5, height=32, width=32)  # latent 2 x 4 x 4 (8x spatial VAE here)


def hunyuan15_pipeline(kind: str):
    """kind: ``hunyuan15`` (HunyuanVideo15Pipeline) or ``hunyuan15-i2v`` (HunyuanVideo15ImageToVideoPipeline: SigLIP
    image embeddings, the image latent as condition)."""
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15ImageToVideoPipeline,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    tok = tokenizer()
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant {% endif %}")  # fmt: skip
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
    qwen = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
                                                    max_position_embeddings=2048, pad_token_id=0, bos_token_id=1,
                                                    eos_token_id=1, rope_parameters=rope)).eval()  # fmt: skip
    vae_ = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(16, 16, 16, 16), layers_per_block=1,
                                       spatial_compression_ratio=8, temporal_compression_ratio=4)  # fmt: skip
    t = HunyuanVideo15Transformer3DModel(in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8,
                                         num_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=1,
                                         patch_size_t=1, text_embed_dim=16, text_embed_2_dim=TEXT_DIM,
                                         image_embed_dim=8, rope_axes_dim=(2, 2, 4), target_size=32)  # fmt: skip
    byt5 = ByT5Tokenizer()
    common = dict(text_encoder=qwen, tokenizer=tok, transformer=t, vae=vae_,
                  scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=t5_encoder(len(byt5)),
                  tokenizer_2=byt5, guider=ClassifierFreeGuidance(guidance_scale=6.0))  # fmt: skip
    if kind == "hunyuan15-i2v":
        from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

        cfg = SiglipVisionConfig(
            hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
        )  # 16 image tokens of width 8 (image_embed_dim)
        proc = SiglipImageProcessor(size={"height": 32, "width": 32})
        return HunyuanVideo15ImageToVideoPipeline(**common, image_encoder=SiglipVisionModel(cfg).eval(),
                                                  feature_extractor=proc)  # fmt: skip
    return HunyuanVideo15Pipeline(**common)


FAMILY_BUILDERS.update({"hunyuan15": hunyuan15_pipeline, "hunyuan15-i2v": hunyuan15_pipeline})


# --- LTX-2 (T2AV): a Gemma 3 text encoder (hidden states of every layer), text connectors, video + audio latents
# denoised by one transformer, LTX-2's video VAE, audio VAE and vocoder; sized as diffusers' own LTX-2 tests ---------

LTX2_SIZE = dict(num_frames=5, height=32, width=32)  # video latent 3 x 16 x 16; 5 audio latent frames at 25 fps


def ltx2_pipeline(kind: str):
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2ImageToVideoPipeline,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    tok = tokenizer()
    h = 16  # Gemma's width; the connectors' heads x head_dim and the transformer's caption_channels match it
    text = Gemma3TextConfig(vocab_size=len(tok), hidden_size=h, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=128,
                            pad_token_id=0, eos_token_id=1, bos_token_id=1, sliding_window=16)  # fmt: skip
    vision = SiglipVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                                image_size=16, patch_size=8)  # fmt: skip
    gemma = Gemma3ForConditionalGeneration(Gemma3Config(text_config=text, vision_config=vision,
                                                        mm_tokens_per_image=4)).eval()  # fmt: skip
    # perturbed_attn: LTX-2.3's, whose self-attention STG perturbs
    t = LTX2VideoTransformer3DModel(in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2,
                                    attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4,
                                    audio_out_channels=4, audio_num_attention_heads=2, audio_attention_head_dim=4,
                                    audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
                                    caption_channels=h, rope_double_precision=False, rope_type="split",
                                    perturbed_attn=True)  # fmt: skip
    connector = dict(num_attention_heads=2, attention_head_dim=8, num_layers=1, num_learnable_registers=None)
    per_modality = {f"{m}_connector_{k}": v for m in ("video", "audio") for k, v in connector.items()}
    connectors = LTX2TextConnectors(caption_channels=h, text_proj_in_factor=text.num_hidden_layers + 1, **per_modality,
                                    connector_rope_base_seq_len=32, rope_double_precision=False,
                                    causal_temporal_positioning=False, rope_type="split")  # fmt: skip
    vae_ = AutoencoderKLLTX2Video(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                                  decoder_block_out_channels=(8,), layers_per_block=(1,),
                                  decoder_layers_per_block=(1, 1),
                                  spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,),
                                  decoder_inject_noise=(False, False), downsample_type=("spatial",),
                                  upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False,
                                  patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)  # fmt: skip
    vae_.use_framewise_encoding = vae_.use_framewise_decoding = False
    audio_vae = AutoencoderKLLTX2Audio(base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1,
                                       attn_resolutions=None, in_channels=2, resolution=32, latent_channels=2,
                                       norm_type="pixel", causality_axis="height", dropout=0.0,
                                       mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160,
                                       is_causal=True, mel_bins=8)  # fmt: skip
    g = torch.Generator().manual_seed(5)  # non-trivial statistics, so that a wrong de-normalization shows
    for v in (vae_, audio_vae):
        v.latents_mean.copy_(torch.randn(v.latents_mean.shape, generator=g) * 0.3)
        v.latents_std.copy_(torch.rand(v.latents_std.shape, generator=g) + 0.5)
    vocoder = LTX2Vocoder(in_channels=2 * 8, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4],
                          upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                          leaky_relu_negative_slope=0.1, output_sampling_rate=16000)  # fmt: skip
    cls = LTX2ImageToVideoPipeline if kind == "ltx2-i2v" else LTX2Pipeline
    return cls(transformer=t, vae=vae_, audio_vae=audio_vae, text_encoder=gemma, tokenizer=tok, connectors=connectors,
               vocoder=vocoder, scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER))  # fmt: skip


FAMILY_BUILDERS.update({"ltx2": ltx2_pipeline, "ltx2-i2v": ltx2_pipeline})
