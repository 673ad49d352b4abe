"""The reasoning organism: a complete diffusers ``WanImageToVideoPipeline``, small enough to train here.

A faithful small stand-in for VBVR-Wan2.2 (Wan2.2-I2V-A14B fine-tuned on reasoning videos): image-to-video with a
text instruction, a Wan VAE, a latent-space ``WanTransformer3DModel`` that cross-attends to a UMT5 text encoder's
output, and a flow-matching scheduler. Every component is the real diffusers / transformers class, so
``WanImageToVideoPipeline.from_pretrained(path)`` loads it and its own ``__call__(image=..., prompt=...)`` draws.

Shapes (all multiples of the pipeline's own checks): 9 frames of 96 x 96 pixels; the VAE compresses 4x in space and
4x in time (latent 16 x 3 x 24 x 24); the DiT patches 1 x 2 x 2, so one token is one 8-pixel block of the task
canvas (``interp.tasks.suite``) in one latent frame: 3 x 12 x 12 = 432 video tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from pydantic import BaseModel, ConfigDict
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from interp.tasks import suite

SPECIAL = ("<pad>", "</s>", "<unk>")
# words beyond the tasks' own prompts, so that new instructions over the same world need no new tokenizer
BASE_WORDS = (
    "a an the to from of in on at and or not is are be it its this that these those with without then than "
    "go move draw keep keeps moving walk path route shortest longest way start goal goals end find reach "
    "red blue green yellow gray grey purple cyan orange black white pink "
    "left right up down top bottom above below behind front across through over under around between "
    "line wall walls ball object objects pattern square block blocks cell cells maze grid mirror flip rotate "
    "copy count mark each every all one two three four five six seven eight nine ten first last next "
    "fast slow stop turn again same other side half center centre "
).split()


class OrganismSpec(BaseModel):
    """The architecture of every component (the sizes in the model card)."""

    model_config = ConfigDict(extra="forbid")

    # text encoder (UMT5)
    text_dim: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_ff: int = 128
    # VAE (AutoencoderKLWan): 4x spatial (two downsampling stages), 4x temporal
    vae_base_dim: int = 32
    vae_dim_mult: list[int] = [1, 2, 4]
    vae_res_blocks: int = 1
    z_dim: int = 16
    # DiT (WanTransformer3DModel)
    num_layers: int = 16
    num_attention_heads: int = 4
    attention_head_dim: int = 56
    ffn_dim: int = 672
    freq_dim: int = 256
    # scheduler
    shift: float = 5.0


def vocabulary(prompts: list[str]) -> list[str]:
    words = {w for p in prompts for w in p.lower().replace(",", " ").replace(".", " ").split()}
    return list(SPECIAL) + sorted(words | set(BASE_WORDS))


def build_tokenizer(prompts: list[str]) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(vocabulary(prompts))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_text_encoder(spec: OrganismSpec, vocab_size: int) -> UMT5EncoderModel:
    cfg = UMT5Config(
        vocab_size=vocab_size,
        d_model=spec.text_dim,
        d_kv=spec.text_dim // spec.text_heads,
        d_ff=spec.text_ff,
        num_layers=spec.text_layers,
        num_heads=spec.text_heads,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(cfg)


def build_vae(spec: OrganismSpec, latents_mean: list[float] | None = None, latents_std: list[float] | None = None):
    stages = len(spec.vae_dim_mult) - 1
    return AutoencoderKLWan(
        base_dim=spec.vae_base_dim,
        z_dim=spec.z_dim,
        dim_mult=list(spec.vae_dim_mult),
        num_res_blocks=spec.vae_res_blocks,
        temperal_downsample=[True] * stages,
        latents_mean=latents_mean or [0.0] * spec.z_dim,
        latents_std=latents_std or [1.0] * spec.z_dim,
        scale_factor_spatial=2**stages,
        scale_factor_temporal=2**stages,
    )


def build_transformer(spec: OrganismSpec) -> WanTransformer3DModel:
    stages = len(spec.vae_dim_mult) - 1
    mask_channels = 2**stages  # the pipeline's mask has vae_scale_factor_temporal channels
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=spec.num_attention_heads,
        attention_head_dim=spec.attention_head_dim,
        in_channels=2 * spec.z_dim + mask_channels,
        out_channels=spec.z_dim,
        text_dim=spec.text_dim,
        freq_dim=spec.freq_dim,
        ffn_dim=spec.ffn_dim,
        num_layers=spec.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    )


def build_scheduler(spec: OrganismSpec) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=spec.shift)


def all_prompts() -> list[str]:
    suite._load_all()
    return sorted({p for t in suite.TASKS.values() for p in t.prompts})


def build_pipeline(spec: OrganismSpec | None = None, seed: int = 0) -> WanImageToVideoPipeline:
    """A randomly initialised organism (the start of training)."""
    spec = spec or OrganismSpec()
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(all_prompts())
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=build_text_encoder(spec, len(tokenizer)),
        vae=build_vae(spec),
        scheduler=build_scheduler(spec),
        transformer=build_transformer(spec),
    )


def load_pipeline(path: str | Path, device="cpu", dtype=torch.float32) -> WanImageToVideoPipeline:
    pipe = WanImageToVideoPipeline.from_pretrained(str(path), torch_dtype=dtype, use_safetensors=True)
    return pipe.to(device)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
