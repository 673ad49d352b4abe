"""Per-head attention sites (TransformerLens' ``hook_q``, ``hook_k``, ``hook_v``, ``hook_z``) through diffusers'
attention processors, and attention patterns for chosen query tokens.

Each family's attention processor is swapped, on every block's attention module, for a subclass whose ``__call__``
is a copy of diffusers' with identity :class:`~interp.adapters.base.HookPoint` modules (registered on the attention
module, so nnsight sees ``blocks.{i}.attn1.hook_q`` etc. as modules) around the per-head tensors. The block forwards
are untouched, and the hooked model computes bit-identical outputs (tested per family).

What each hook holds, shape (batch, pos, head, d_head) as in TransformerLens:
- ``hook_q`` / ``hook_k``: queries / keys after the projection and the family's q/k norm, *before* the rotary
  embedding (TransformerLens' ``hook_q`` is before rotary too); :func:`attention_rows` applies the rotary embedding
  as the processor does.
- ``hook_v``: values; ``hook_z``: the attention-weighted values per head, the input of the output projection
  (:func:`attn_out` projects it).
Positions: self- and cross-attention queries are the video tokens (frame, row, col); those of LTX-2's audio-stream
attentions are the audio tokens (in time order). Joint attention runs text and video in one attention: CogVideoX's
positions are the text tokens then the video tokens; HunyuanVideo's, HunyuanVideo 1.5's and Mochi's the video tokens
then the text tokens (:class:`AttnSite` ``text``). Cross-attention keys and values are the text tokens. Wan2.1 /
SkyReels-V2 image-to-video cross-attention (``added_kv_proj_dim``) attends to the image tokens separately: its
``hook_z`` is the sum of the text and image attention (what the output projection gets); ``hook_k`` / ``hook_v`` are
the text ones.

Families: Wan, WanVACE (its denoising blocks; the control branch ``vace_blocks`` has none), SkyReels-V2 (``attn``,
``attn2``), CogVideoX, HunyuanVideo, HunyuanVideo 1.5, Mochi (``attn``, joint), LTX-Video (``attn``, ``attn2``) and
LTX-2 (``attn``, ``audio_attn``, ``attn2``, ``audio_attn2``, ``audio_to_video_attn``, ``video_to_audio_attn``, in the
order its blocks run them). Mochi attends, per row, to its unmasked text tokens, packed after the video tokens: its
``hook_z`` text positions are those packed rows. LTX-2.3's per-head output gates (``to_gate_logits``) are applied
before ``hook_z``.

LTX-2's audio stream and cross-modal attentions: ``audio_attn`` (diffusers' ``audio_attn1``: queries, keys and
values the audio tokens, rotated by the audio positions, ``audio_rope``), ``audio_attn2`` (the audio tokens attend
to the audio text embeddings; not rotated), ``audio_to_video_attn`` (queries the video tokens, keys / values the
audio tokens) and ``video_to_audio_attn`` (queries audio, keys / values video); the cross-modal pair rotates each
side by its own stream's time coordinate (``cross_attn_rope`` / ``cross_attn_audio_rope``), as the model's forward
does (:func:`site_rotary`). All four have the audio stream's heads (``audio_num_attention_heads`` of
``audio_attention_head_dim``), the cross-modal pair included. A cross-modal attention turned off
(``isolate_modalities``) does not run, nor do its sites.

The site names (``attn`` self or joint attention, ``attn2`` cross-attention, LTX-2's as above: diffusers' module
names with ``attn1`` read as ``attn``) are defined in :mod:`interp.sites`; :data:`FAMILY_ATTENTION` maps them to
each family's module names.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0, MochiAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb as diffusers_apply_rotary_emb
from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoAttnProcessor2_0
from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15AttnProcessor2_0
from diffusers.models.transformers.transformer_ltx import LTXVideoAttnProcessor
from diffusers.models.transformers.transformer_ltx import apply_rotary_emb as ltx_apply_rotary_emb
from diffusers.models.transformers.transformer_ltx2 import (
    LTX2AudioVideoAttnProcessor,
    LTX2PerturbedAttnProcessor,
    apply_interleaved_rotary_emb,
    apply_split_rotary_emb,
)
from diffusers.models.transformers.transformer_skyreels_v2 import SkyReelsV2AttnProcessor
from diffusers.models.transformers.transformer_skyreels_v2 import (
    _get_added_kv_projections as skyreels_added_kv_projections,
)
from diffusers.models.transformers.transformer_skyreels_v2 import _get_qkv_projections as skyreels_qkv_projections
from diffusers.models.transformers.transformer_wan import (
    WanAttnProcessor,
    _get_added_kv_projections,
    _get_qkv_projections,
)
from einops import einsum
from jaxtyping import Float
from torch import Tensor, nn

from interp.adapters.base import Adapter, HookPoint, TextConditioning, source_sha
from interp.sites import ATTN_HOOKS, block_index


# ---- the hooked processors (copies of diffusers 0.42.1's __call__ with hook points) ---------------------------------
class HookedWanAttnProcessor(WanAttnProcessor):
    """``WanAttnProcessor.__call__`` with hook points on the attention module; numerically identical."""

    COPIED_FROM_SHA = "13c09feedcfe814a"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        encoder_hidden_states_img = None
        if attn.add_k_proj is not None:
            # 512 is the context length of the text encoder, hardcoded for now
            image_context_length = encoder_hidden_states.shape[1] - 512
            encoder_hidden_states_img = encoder_hidden_states[:, :image_context_length]
            encoder_hidden_states = encoder_hidden_states[:, image_context_length:]

        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)

        query = attn.norm_q(query)
        key = attn.norm_k(key)

        query = attn.hook_q(query.unflatten(2, (attn.heads, -1)))
        key = attn.hook_k(key.unflatten(2, (attn.heads, -1)))
        value = attn.hook_v(value.unflatten(2, (attn.heads, -1)))

        if rotary_emb is not None:
            query = wan_rotary(query, *rotary_emb)
            key = wan_rotary(key, *rotary_emb)

        # I2V task
        hidden_states_img = None
        if encoder_hidden_states_img is not None:
            key_img, value_img = _get_added_kv_projections(attn, encoder_hidden_states_img)
            key_img = attn.norm_added_k(key_img)

            key_img = key_img.unflatten(2, (attn.heads, -1))
            value_img = value_img.unflatten(2, (attn.heads, -1))

            hidden_states_img = dispatch_attention_fn(
                query, key_img, value_img, attn_mask=None, dropout_p=0.0, is_causal=False,
                backend=self._attention_backend, parallel_config=None,
            )  # fmt: skip
            hidden_states_img = hidden_states_img.type_as(query)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend,
            parallel_config=(self._parallel_config if encoder_hidden_states is None else None),
        )  # fmt: skip
        hidden_states = hidden_states.type_as(query)

        if hidden_states_img is not None:
            hidden_states = hidden_states + hidden_states_img
        hidden_states = attn.hook_z(hidden_states).flatten(2, 3)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


def wan_rotary(hidden_states: Tensor, freqs_cos: Tensor, freqs_sin: Tensor) -> Tensor:
    """Wan's rotary embedding on (batch, pos, head, d_head), as ``WanAttnProcessor`` applies it."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


class HookedSkyReelsV2AttnProcessor(SkyReelsV2AttnProcessor):
    """``SkyReelsV2AttnProcessor.__call__`` with hook points; numerically identical. It is Wan's processor with the
    rotary embedding written inline (:func:`wan_rotary`, the same arithmetic) and the image attention flattened before
    the sum; ``hook_z`` is the sum per head (unflattening is a view)."""

    COPIED_FROM_SHA = "be927e58ea7fba80"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        encoder_hidden_states_img = None
        if attn.add_k_proj is not None:
            # 512 is the context length of the text encoder, hardcoded for now
            image_context_length = encoder_hidden_states.shape[1] - 512
            encoder_hidden_states_img = encoder_hidden_states[:, :image_context_length]
            encoder_hidden_states = encoder_hidden_states[:, image_context_length:]

        query, key, value = skyreels_qkv_projections(attn, hidden_states, encoder_hidden_states)

        query = attn.norm_q(query)
        key = attn.norm_k(key)

        query = attn.hook_q(query.unflatten(2, (attn.heads, -1)))
        key = attn.hook_k(key.unflatten(2, (attn.heads, -1)))
        value = attn.hook_v(value.unflatten(2, (attn.heads, -1)))

        if rotary_emb is not None:
            query = wan_rotary(query, *rotary_emb)
            key = wan_rotary(key, *rotary_emb)

        # I2V task
        hidden_states_img = None
        if encoder_hidden_states_img is not None:
            key_img, value_img = skyreels_added_kv_projections(attn, encoder_hidden_states_img)
            key_img = attn.norm_added_k(key_img)

            key_img = key_img.unflatten(2, (attn.heads, -1))
            value_img = value_img.unflatten(2, (attn.heads, -1))

            hidden_states_img = dispatch_attention_fn(
                query, key_img, value_img, attn_mask=None, dropout_p=0.0, is_causal=False,
                backend=self._attention_backend, parallel_config=self._parallel_config,
            )  # fmt: skip
            hidden_states_img = hidden_states_img.flatten(2, 3)
            hidden_states_img = hidden_states_img.type_as(query)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )  # fmt: skip

        hidden_states = hidden_states.flatten(2, 3)
        hidden_states = hidden_states.type_as(query)

        if hidden_states_img is not None:
            hidden_states = hidden_states + hidden_states_img
        hidden_states = attn.hook_z(hidden_states.unflatten(2, (attn.heads, -1))).flatten(2, 3)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


class HookedCogVideoXAttnProcessor(CogVideoXAttnProcessor2_0):
    """``CogVideoXAttnProcessor2_0.__call__`` with hook points; numerically identical (the rotary embedding is
    applied out of place, the same arithmetic, so the values read at ``hook_q`` / ``hook_k`` stay pre-rotary)."""

    COPIED_FROM_SHA = "a1ecc57eaf6a958b"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        text_seq_length = encoder_hidden_states.size(1)

        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)

        batch_size, sequence_length, _ = hidden_states.shape

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads

        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)

        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        query = attn.hook_q(query.transpose(1, 2)).transpose(1, 2)
        key = attn.hook_k(key.transpose(1, 2)).transpose(1, 2)
        value = attn.hook_v(value.transpose(1, 2)).transpose(1, 2)

        # Apply RoPE if needed
        if image_rotary_emb is not None:
            query = cogvideox_rotary(query, image_rotary_emb, text_seq_length, seq_dim=2)
            if not attn.is_cross_attention:
                key = cogvideox_rotary(key, image_rotary_emb, text_seq_length, seq_dim=2)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )

        hidden_states = attn.hook_z(hidden_states.transpose(1, 2)).reshape(batch_size, -1, attn.heads * head_dim)

        # linear proj
        hidden_states = attn.to_out[0](hidden_states)
        # dropout
        hidden_states = attn.to_out[1](hidden_states)

        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1
        )
        return hidden_states, encoder_hidden_states


def cogvideox_rotary(x: Tensor, emb: tuple[Tensor, Tensor], text_len: int, seq_dim: int = 1) -> Tensor:
    """CogVideoX's rotary embedding on the video tokens (after ``text_len`` text tokens) of ``x``."""
    text, video = x.split([text_len, x.shape[seq_dim] - text_len], dim=seq_dim)
    return torch.cat([text, diffusers_apply_rotary_emb(video, emb, sequence_dim=seq_dim)], dim=seq_dim)


class HookedLTXAttnProcessor(LTXVideoAttnProcessor):
    """``LTXVideoAttnProcessor.__call__`` with hook points; numerically identical."""

    COPIED_FROM_SHA = "cac2aabbea3a63db"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states

        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        query = attn.norm_q(query)
        key = attn.norm_k(key)

        query = attn.hook_q(query.unflatten(2, (attn.heads, -1)))
        key = attn.hook_k(key.unflatten(2, (attn.heads, -1)))
        value = attn.hook_v(value.unflatten(2, (attn.heads, -1)))

        if image_rotary_emb is not None:
            query = ltx_rotary(query, image_rotary_emb)
            key = ltx_rotary(key, image_rotary_emb)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )  # fmt: skip
        hidden_states = attn.hook_z(hidden_states.to(query.dtype)).flatten(2, 3)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


def ltx_rotary(x: Tensor, emb: tuple[Tensor, Tensor]) -> Tensor:
    """LTX's rotary embedding (applied across heads, on the flattened features) on (batch, pos, head, d_head)."""
    return ltx_apply_rotary_emb(x.flatten(2), emb).unflatten(2, (x.shape[2], -1))


class HookedLTX2AttnProcessor(LTX2AudioVideoAttnProcessor):
    """``LTX2AudioVideoAttnProcessor.__call__`` with hook points; numerically identical. LTX-2 rotates the flattened
    features (across heads), so queries and keys are hooked per head (a view) before the rotary embedding and
    flattened back; ``hook_z`` is after the per-head gates (LTX-2.3's ``to_gate_logits``), the output projection's
    input."""

    COPIED_FROM_SHA = "0391667b7f0a45ae"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states

        if attn.to_gate_logits is not None:
            # Calculate gate logits on original hidden_states
            gate_logits = attn.to_gate_logits(hidden_states)

        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        query = attn.norm_q(query)
        key = attn.norm_k(key)

        query = attn.hook_q(query.unflatten(2, (attn.heads, -1))).flatten(2)
        key = attn.hook_k(key.unflatten(2, (attn.heads, -1))).flatten(2)

        if query_rotary_emb is not None:
            if attn.rope_type == "interleaved":
                query = apply_interleaved_rotary_emb(query, query_rotary_emb)
                key = apply_interleaved_rotary_emb(
                    key, key_rotary_emb if key_rotary_emb is not None else query_rotary_emb
                )
            elif attn.rope_type == "split":
                query = apply_split_rotary_emb(query, query_rotary_emb)
                key = apply_split_rotary_emb(key, key_rotary_emb if key_rotary_emb is not None else query_rotary_emb)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = attn.hook_v(value.unflatten(2, (attn.heads, -1)))

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )  # fmt: skip
        hidden_states = hidden_states.flatten(2, 3)
        hidden_states = hidden_states.to(query.dtype)

        if attn.to_gate_logits is not None:
            hidden_states = hidden_states.unflatten(2, (attn.heads, -1))  # [B, T, H, D]
            # The factor of 2.0 is so that if the gates logits are zero-initialized the initial gates are all 1
            gates = 2.0 * torch.sigmoid(gate_logits)  # [B, T, H]
            hidden_states = hidden_states * gates.unsqueeze(-1)
            hidden_states = hidden_states.flatten(2, 3)
        hidden_states = attn.hook_z(hidden_states.unflatten(2, (attn.heads, -1))).flatten(2, 3)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


class HookedLTX2PerturbedAttnProcessor(LTX2PerturbedAttnProcessor):
    """``LTX2PerturbedAttnProcessor.__call__`` (LTX-2.3's, with perturbation masks) with hook points; numerically
    identical. Hooked as :class:`HookedLTX2AttnProcessor`; when every row is perturbed (attention skipped, the values
    passed on) ``hook_v`` and ``hook_z`` run but not ``hook_q`` / ``hook_k``."""

    COPIED_FROM_SHA = "ab3b88fd4d262072"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        perturbation_mask: torch.Tensor | None = None,
        all_perturbed: bool | None = None,
    ) -> torch.Tensor:
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states

        if attn.to_gate_logits is not None:
            # Calculate gate logits on original hidden_states
            gate_logits = attn.to_gate_logits(hidden_states)

        value = attn.to_v(encoder_hidden_states)
        if all_perturbed is None:
            all_perturbed = torch.all(perturbation_mask == 0) if perturbation_mask is not None else False

        if all_perturbed:
            # Skip attention, use the value projection value
            hidden_states = attn.hook_v(value.unflatten(2, (attn.heads, -1))).flatten(2)
        else:
            query = attn.to_q(hidden_states)
            key = attn.to_k(encoder_hidden_states)

            query = attn.norm_q(query)
            key = attn.norm_k(key)

            query = attn.hook_q(query.unflatten(2, (attn.heads, -1))).flatten(2)
            key = attn.hook_k(key.unflatten(2, (attn.heads, -1))).flatten(2)

            if query_rotary_emb is not None:
                if attn.rope_type == "interleaved":
                    query = apply_interleaved_rotary_emb(query, query_rotary_emb)
                    key = apply_interleaved_rotary_emb(
                        key, key_rotary_emb if key_rotary_emb is not None else query_rotary_emb
                    )
                elif attn.rope_type == "split":
                    query = apply_split_rotary_emb(query, query_rotary_emb)
                    key = apply_split_rotary_emb(
                        key, key_rotary_emb if key_rotary_emb is not None else query_rotary_emb
                    )

            query = query.unflatten(2, (attn.heads, -1))
            key = key.unflatten(2, (attn.heads, -1))
            value = attn.hook_v(value.unflatten(2, (attn.heads, -1)))

            hidden_states = dispatch_attention_fn(
                query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                backend=self._attention_backend, parallel_config=self._parallel_config,
            )  # fmt: skip
            hidden_states = hidden_states.flatten(2, 3)
            hidden_states = hidden_states.to(query.dtype)

            if perturbation_mask is not None:
                value = value.flatten(2, 3)
                hidden_states = torch.lerp(value, hidden_states, perturbation_mask)

        if attn.to_gate_logits is not None:
            hidden_states = hidden_states.unflatten(2, (attn.heads, -1))  # [B, T, H, D]
            # The factor of 2.0 is so that if the gates logits are zero-initialized the initial gates are all 1
            gates = 2.0 * torch.sigmoid(gate_logits)  # [B, T, H]
            hidden_states = hidden_states * gates.unsqueeze(-1)
            hidden_states = hidden_states.flatten(2, 3)
        hidden_states = attn.hook_z(hidden_states.unflatten(2, (attn.heads, -1))).flatten(2, 3)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


def ltx2_rotary(x: Tensor, emb: tuple[Tensor, Tensor], rope_type: str) -> Tensor:
    """LTX-2's rotary embedding (on the flattened features, ``interleaved`` or ``split``) on (batch, pos, head,
    d_head), as ``LTX2AudioVideoAttnProcessor`` applies it."""
    fn = apply_interleaved_rotary_emb if rope_type == "interleaved" else apply_split_rotary_emb
    return fn(x.flatten(2), emb).unflatten(2, (x.shape[2], -1))


class HookedHunyuanAttnProcessor(HunyuanVideoAttnProcessor2_0):
    """``HunyuanVideoAttnProcessor2_0.__call__`` with hook points; numerically identical. Queries, keys and values
    are hooked over all tokens (video then text) before the rotary embedding, which then rotates the video tokens
    exactly as diffusers does (the same arithmetic on the same elements)."""

    COPIED_FROM_SHA = "9d2e9a44e1dc2bf7"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        video_len = hidden_states.shape[1]
        if attn.add_q_proj is None and encoder_hidden_states is not None:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)

        # 1. QKV projections
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        # 2. QK normalization
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # 4. Encoder condition QKV projection and normalization (moved before the rotary embedding, which only
        # touches the video tokens, so that the hooks see all tokens)
        if attn.add_q_proj is not None and encoder_hidden_states is not None:
            encoder_query = attn.add_q_proj(encoder_hidden_states)
            encoder_key = attn.add_k_proj(encoder_hidden_states)
            encoder_value = attn.add_v_proj(encoder_hidden_states)

            encoder_query = encoder_query.unflatten(2, (attn.heads, -1))
            encoder_key = encoder_key.unflatten(2, (attn.heads, -1))
            encoder_value = encoder_value.unflatten(2, (attn.heads, -1))

            if attn.norm_added_q is not None:
                encoder_query = attn.norm_added_q(encoder_query)
            if attn.norm_added_k is not None:
                encoder_key = attn.norm_added_k(encoder_key)

            query = torch.cat([query, encoder_query], dim=1)
            key = torch.cat([key, encoder_key], dim=1)
            value = torch.cat([value, encoder_value], dim=1)

        query = attn.hook_q(query)
        key = attn.hook_k(key)
        value = attn.hook_v(value)

        # 3. Rotational positional embeddings applied to latent stream
        if image_rotary_emb is not None:
            query = hunyuan_rotary(query, image_rotary_emb, video_len)
            key = hunyuan_rotary(key, image_rotary_emb, video_len)

        # 5. Attention
        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )  # fmt: skip
        hidden_states = attn.hook_z(hidden_states.to(query.dtype)).flatten(2, 3)

        # 6. Output projection
        if encoder_hidden_states is not None:
            hidden_states, encoder_hidden_states = (
                hidden_states[:, : -encoder_hidden_states.shape[1]],
                hidden_states[:, -encoder_hidden_states.shape[1] :],
            )

            if getattr(attn, "to_out", None) is not None:
                hidden_states = attn.to_out[0](hidden_states)
                hidden_states = attn.to_out[1](hidden_states)

            if getattr(attn, "to_add_out", None) is not None:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)

        return hidden_states, encoder_hidden_states


def hunyuan_rotary(x: Tensor, emb: tuple[Tensor, Tensor], video_len: int) -> Tensor:
    """HunyuanVideo's rotary embedding on the first ``video_len`` tokens (the video) of (batch, pos, head, d_head)."""
    if video_len == x.shape[1]:
        return diffusers_apply_rotary_emb(x, emb, sequence_dim=1)
    video, text = x.split([video_len, x.shape[1] - video_len], dim=1)
    return torch.cat([diffusers_apply_rotary_emb(video, emb, sequence_dim=1), text], dim=1)


class HookedHunyuan15AttnProcessor(HunyuanVideo15AttnProcessor2_0):
    """``HunyuanVideo15AttnProcessor2_0.__call__`` with hook points; numerically identical. As HunyuanVideo's: the
    text projections are moved before the rotary embedding, so the hooks see all tokens (video then text, before the
    rotary embedding), which then rotates the video tokens exactly as diffusers does."""

    COPIED_FROM_SHA = "7bb9b09c8f4ac8c8"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        video_len = hidden_states.shape[1]
        # 1. QKV projections
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        # 2. QK normalization
        query = attn.norm_q(query)
        key = attn.norm_k(key)

        # 4. Encoder condition QKV projection and normalization (moved before the rotary embedding)
        if encoder_hidden_states is not None:
            encoder_query = attn.add_q_proj(encoder_hidden_states)
            encoder_key = attn.add_k_proj(encoder_hidden_states)
            encoder_value = attn.add_v_proj(encoder_hidden_states)

            encoder_query = encoder_query.unflatten(2, (attn.heads, -1))
            encoder_key = encoder_key.unflatten(2, (attn.heads, -1))
            encoder_value = encoder_value.unflatten(2, (attn.heads, -1))

            if attn.norm_added_q is not None:
                encoder_query = attn.norm_added_q(encoder_query)
            if attn.norm_added_k is not None:
                encoder_key = attn.norm_added_k(encoder_key)

            query = torch.cat([query, encoder_query], dim=1)
            key = torch.cat([key, encoder_key], dim=1)
            value = torch.cat([value, encoder_value], dim=1)

        query = attn.hook_q(query)
        key = attn.hook_k(key)
        value = attn.hook_v(value)

        # 3. Rotational positional embeddings applied to latent stream
        if image_rotary_emb is not None:
            query = hunyuan_rotary(query, image_rotary_emb, video_len)
            key = hunyuan_rotary(key, image_rotary_emb, video_len)

        batch_size, seq_len, heads, dim = query.shape
        attention_mask = F.pad(attention_mask, (seq_len - attention_mask.shape[1], 0), value=True)
        attention_mask = attention_mask.bool()
        self_attn_mask_1 = attention_mask.view(batch_size, 1, 1, seq_len).repeat(1, 1, seq_len, 1)
        self_attn_mask_2 = self_attn_mask_1.transpose(2, 3)
        attention_mask = (self_attn_mask_1 & self_attn_mask_2).bool()

        # 5. Attention
        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )  # fmt: skip

        hidden_states = attn.hook_z(hidden_states.to(query.dtype)).flatten(2, 3)

        # 6. Output projection
        if encoder_hidden_states is not None:
            hidden_states, encoder_hidden_states = (
                hidden_states[:, : -encoder_hidden_states.shape[1]],
                hidden_states[:, -encoder_hidden_states.shape[1] :],
            )

            if getattr(attn, "to_out", None) is not None:
                hidden_states = attn.to_out[0](hidden_states)
                hidden_states = attn.to_out[1](hidden_states)

            if getattr(attn, "to_add_out", None) is not None:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)

        return hidden_states, encoder_hidden_states


class HookedMochiAttnProcessor(MochiAttnProcessor2_0):
    """``MochiAttnProcessor2_0.__call__`` with hook points; numerically identical. Queries, keys and values are hooked
    over all tokens (video then every text token, masked ones too) before the rotary embedding: one concatenation,
    split back into views, so the rest runs on the same elements. Each row attends to its unmasked text tokens only,
    which diffusers packs after the video tokens and pads with zeros: ``hook_z``'s text positions are those packed
    ones (the same as the text positions for a mask of leading ones, as T5's)."""

    COPIED_FROM_SHA = "56050b08e51df642"

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        encoder_query = attn.add_q_proj(encoder_hidden_states)
        encoder_key = attn.add_k_proj(encoder_hidden_states)
        encoder_value = attn.add_v_proj(encoder_hidden_states)

        encoder_query = encoder_query.unflatten(2, (attn.heads, -1))
        encoder_key = encoder_key.unflatten(2, (attn.heads, -1))
        encoder_value = encoder_value.unflatten(2, (attn.heads, -1))

        if attn.norm_added_q is not None:
            encoder_query = attn.norm_added_q(encoder_query)
        if attn.norm_added_k is not None:
            encoder_key = attn.norm_added_k(encoder_key)

        sizes = (query.shape[1], encoder_query.shape[1])
        query, encoder_query = attn.hook_q(torch.cat([query, encoder_query], dim=1)).split(sizes, dim=1)
        key, encoder_key = attn.hook_k(torch.cat([key, encoder_key], dim=1)).split(sizes, dim=1)
        value, encoder_value = attn.hook_v(torch.cat([value, encoder_value], dim=1)).split(sizes, dim=1)

        if image_rotary_emb is not None:
            query = mochi_rotary(query, *image_rotary_emb)
            key = mochi_rotary(key, *image_rotary_emb)

        query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        encoder_query, encoder_key, encoder_value = (
            encoder_query.transpose(1, 2),
            encoder_key.transpose(1, 2),
            encoder_value.transpose(1, 2),
        )

        sequence_length = query.size(2)
        encoder_sequence_length = encoder_query.size(2)
        total_length = sequence_length + encoder_sequence_length

        batch_size, heads, _, dim = query.shape
        attn_outputs = []
        for idx in range(batch_size):
            mask = attention_mask[idx][None, :]
            valid_prompt_token_indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()

            valid_encoder_query = encoder_query[idx : idx + 1, :, valid_prompt_token_indices, :]
            valid_encoder_key = encoder_key[idx : idx + 1, :, valid_prompt_token_indices, :]
            valid_encoder_value = encoder_value[idx : idx + 1, :, valid_prompt_token_indices, :]

            valid_query = torch.cat([query[idx : idx + 1], valid_encoder_query], dim=2)
            valid_key = torch.cat([key[idx : idx + 1], valid_encoder_key], dim=2)
            valid_value = torch.cat([value[idx : idx + 1], valid_encoder_value], dim=2)

            attn_output = F.scaled_dot_product_attention(
                valid_query, valid_key, valid_value, dropout_p=0.0, is_causal=False
            )
            valid_sequence_length = attn_output.size(2)
            attn_output = F.pad(attn_output, (0, 0, 0, total_length - valid_sequence_length))
            attn_outputs.append(attn_output)

        hidden_states = torch.cat(attn_outputs, dim=0)
        hidden_states = attn.hook_z(hidden_states.transpose(1, 2)).flatten(2, 3)

        hidden_states, encoder_hidden_states = hidden_states.split_with_sizes(
            (sequence_length, encoder_sequence_length), dim=1
        )

        # linear proj
        hidden_states = attn.to_out[0](hidden_states)
        # dropout
        hidden_states = attn.to_out[1](hidden_states)

        if hasattr(attn, "to_add_out"):
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)

        return hidden_states, encoder_hidden_states


def mochi_rotary(x: Tensor, freqs_cos: Tensor, freqs_sin: Tensor) -> Tensor:
    """Mochi's rotary embedding on the video tokens (batch, pos, head, d_head), as ``MochiAttnProcessor2_0``."""
    x_even = x[..., 0::2].float()
    x_odd = x[..., 1::2].float()
    cos = (x_even * freqs_cos - x_odd * freqs_sin).to(x.dtype)
    sin = (x_even * freqs_sin + x_odd * freqs_cos).to(x.dtype)
    return torch.stack([cos, sin], dim=-1).flatten(-2)


# ---- which modules, per family ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttnSite:
    """One attention module of a block: its site name (``attn`` / ``attn2``, LTX-2's ``audio_attn`` ...: one of
    :data:`interp.sites.ATTN_MODULES`), module attribute, hooked processor, the block site it runs before (its
    output's site), whether it is rotary, where its text tokens sit (joint attention: ``first`` / ``last``; None:
    queries are one stream's tokens only), what its keys are (``video``, ``text`` for cross-attention, ``audio``) and
    what its queries are (``video``; ``audio`` for LTX-2's audio stream)."""

    name: str
    module: str
    processor: type
    before: tuple[str, ...]  # insert the sites before the first of these block hooks the block has
    rotary: bool
    text: Literal["first", "last"] | None = None
    keys: Literal["video", "text", "audio"] = "video"
    alt: tuple[type, ...] = ()  # other hooked processors, for a module running their diffusers base instead
    queries: Literal["video", "audio"] = "video"

    @property
    def processors(self) -> tuple[type, ...]:
        return (self.processor, *self.alt)


_SELF_BEFORE = ("hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post")
_CROSS_BEFORE = ("hook_cross_attn_out", "hook_mlp_out", "hook_resid_post")
_LTX23 = (HookedLTX2PerturbedAttnProcessor,)  # LTX-2.3's perturbed-attention blocks
FAMILY_ATTENTION: dict[str, tuple[AttnSite, ...]] = {
    "wan": (
        AttnSite("attn", "attn1", HookedWanAttnProcessor, _SELF_BEFORE, rotary=True),
        AttnSite("attn2", "attn2", HookedWanAttnProcessor, _CROSS_BEFORE, rotary=False, keys="text"),
    ),
    "cogvideox": (AttnSite("attn", "attn1", HookedCogVideoXAttnProcessor, _SELF_BEFORE, rotary=True, text="first"),),
    "ltx": (
        AttnSite("attn", "attn1", HookedLTXAttnProcessor, _SELF_BEFORE, rotary=True),
        AttnSite("attn2", "attn2", HookedLTXAttnProcessor, _CROSS_BEFORE, rotary=False, keys="text"),
    ),
    "hunyuan": (AttnSite("attn", "attn", HookedHunyuanAttnProcessor, _SELF_BEFORE, rotary=True, text="last"),),
    # WanVACE's denoising blocks are Wan's (its control branch, vace_blocks, has no per-head sites)
    "wanvace": (
        AttnSite("attn", "attn1", HookedWanAttnProcessor, _SELF_BEFORE, rotary=True),
        AttnSite("attn2", "attn2", HookedWanAttnProcessor, _CROSS_BEFORE, rotary=False, keys="text"),
    ),
    "skyreels": (
        AttnSite("attn", "attn1", HookedSkyReelsV2AttnProcessor, _SELF_BEFORE, rotary=True),
        AttnSite("attn2", "attn2", HookedSkyReelsV2AttnProcessor, _CROSS_BEFORE, rotary=False, keys="text"),
    ),
    "hunyuan15": (AttnSite("attn", "attn", HookedHunyuan15AttnProcessor, _SELF_BEFORE, rotary=True, text="last"),),
    "mochi": (AttnSite("attn", "attn1", HookedMochiAttnProcessor, _SELF_BEFORE, rotary=True, text="last"),),
    # both streams' self- and text cross-attention, then the cross-modal attentions (queries video / keys audio, and
    # back), as the block runs them
    "ltx2": (
        AttnSite("attn", "attn1", HookedLTX2AttnProcessor, _SELF_BEFORE, rotary=True, alt=_LTX23),
        AttnSite("audio_attn", "audio_attn1", HookedLTX2AttnProcessor, ("hook_audio_attn_out",), rotary=True,
                 keys="audio", alt=_LTX23, queries="audio"),
        AttnSite("attn2", "attn2", HookedLTX2AttnProcessor, _CROSS_BEFORE, rotary=False, keys="text", alt=_LTX23),
        AttnSite("audio_attn2", "audio_attn2", HookedLTX2AttnProcessor, ("hook_audio_cross_attn_out",), rotary=False,
                 keys="text", alt=_LTX23, queries="audio"),
        AttnSite("audio_to_video_attn", "audio_to_video_attn", HookedLTX2AttnProcessor, ("hook_a2v_attn_out",),
                 rotary=True, keys="audio", alt=_LTX23),
        AttnSite("video_to_audio_attn", "video_to_audio_attn", HookedLTX2AttnProcessor, ("hook_audio_v2a_attn_out",),
                 rotary=True, alt=_LTX23, queries="audio"),
    ),
}  # fmt: skip
"""Family -> its blocks' attention modules, in execution order."""

ROTARY_LIKE = {"wanvace": "wan", "skyreels": "wan", "hunyuan15": "hunyuan"}
"""Families whose rotary embedding is computed and applied as another family's (the key's processor rotates as the
value's)."""


def _rotary_family(adapter: Adapter) -> str:
    return ROTARY_LIKE.get(adapter.family, adapter.family)


def attention_of(adapter: Adapter) -> tuple[AttnSite, ...]:
    """The family's attention modules; none for a family without a table here (its model has no per-head sites)."""
    if not getattr(adapter, "exact", True):  # the generic adapter runs diffusers' own processors, unhooked
        return ()
    return FAMILY_ATTENTION.get(adapter.family, ())


def install_attention_hooks(adapter: Adapter, transformer: nn.Module) -> nn.Module:
    """Set the hooked processor (and its hook points) on every block's attention modules, in place and idempotent;
    the processor's attention backend settings are kept. Returns the transformer."""
    for _, block in adapter.blocks(transformer):
        for spec in attention_of(adapter):
            attn = getattr(block, spec.module)
            proc = attn.processor
            if type(proc) in spec.processors:
                continue
            hooked = next((h for h in spec.processors if type(proc) is h.__mro__[1]), None)
            if hooked is None:
                bases = " or ".join(h.__mro__[1].__name__ for h in spec.processors)
                raise TypeError(
                    f"cannot hook {spec.module} of {type(block).__name__}: its processor is {type(proc).__name__}, "
                    f"attention sites need diffusers' {bases} (unfuse projections / reset custom processors)"
                )
            base = hooked.__mro__[1]
            if source_sha(base.__call__) != hooked.COPIED_FROM_SHA:
                warnings.warn(
                    f"diffusers' {base.__name__}.__call__ differs from the copy in {__name__}; attention sites may be "
                    "stale (the exactness tests will tell)",
                    stacklevel=2,
                )
            new = hooked()
            new.__dict__.update(proc.__dict__)  # attention backend / parallel config set on the instance
            for hook in ATTN_HOOKS:
                attn.add_module(hook, HookPoint())
            attn.processor = new
    return transformer


def attention_sites(adapter: Adapter, block_hooks: Sequence[str]) -> list[tuple[str, str]]:
    """A block's site suffixes and module paths (``attn.hook_q`` -> ``attn1.hook_q``), merged into its block hooks in
    execution order: (suffix, path below the block)."""
    out = [(h, h) for h in block_hooks]
    for spec in attention_of(adapter):
        names = [(f"{spec.name}.{h}", f"{spec.module}.{h}") for h in ATTN_HOOKS]
        at = next((i for i, (h, _) in enumerate(out) if h in spec.before), len(out))
        out[at:at] = names
    return out


def site_spec(adapter: Adapter, site: str) -> AttnSite:
    """The :class:`AttnSite` of ``blocks.{i}.attn.hook_z`` (any per-head site or ``blocks.{i}.attn``)."""
    parts = site.split(".")
    name = parts[2] if len(parts) > 2 else ""
    for spec in attention_of(adapter):
        if spec.name == name:
            return spec
    names = ", ".join(s.name for s in attention_of(adapter))
    names = names or f"none; per-head sites exist for {', '.join(FAMILY_ATTENTION)}"
    raise ValueError(f"{site!r} is not an attention site of {adapter.family} (attention modules: {names})")


def position_tokens(adapter: Adapter, site: str) -> Literal["video", "text", "audio"]:
    """What the position axis of a per-head site holds: the queries' tokens at ``hook_q`` / ``hook_z``, the keys' at
    ``hook_k`` / ``hook_v`` (``video`` also for joint attention, whose text tokens sit with them:
    :func:`video_span`)."""
    spec = site_spec(adapter, site)
    return spec.keys if site.endswith(("hook_k", "hook_v")) else spec.queries


def check_video_positions(adapter: Adapter, site: str) -> None:
    """``frames`` / ``tokens`` select video tokens: a ValueError for a per-head site whose positions are text or
    audio tokens (:func:`position_tokens`)."""
    on = position_tokens(adapter, site)
    if on != "video":
        what = "cross-attention keys and values are text tokens" if on == "text" else f"its positions are {on} tokens"
        raise ValueError(f"{site}: {what}; frames / tokens select video tokens (leave them out here)")


def head_count(adapter: Adapter, transformer: nn.Module, site: str) -> int:
    """The heads of per-head site ``blocks.{i}.<attention>.hook_*`` (LTX-2's audio-stream and cross-modal attentions
    have the audio stream's head count, its video attentions the video's)."""
    spec = site_spec(adapter, site)
    blocks = adapter.blocks(transformer)
    i = block_index(site)
    if i is None or not 0 <= i < len(blocks):
        raise ValueError(f"{site!r}: no block of that number ({len(blocks)} blocks)")
    return getattr(blocks[i][1], spec.module).heads


def video_span(adapter: Adapter, site: str, seq_len: int, n_video: int) -> slice:
    """Where the video tokens sit on the position axis of a per-head query site with ``seq_len`` positions (a site
    whose positions are video tokens: :func:`check_video_positions`)."""
    text = site_spec(adapter, site).text
    if text == "first":
        return slice(seq_len - n_video, seq_len)
    return slice(0, n_video)


# ---- rotary embeddings and patterns -------------------------------------------------------------------------------
def rotary_embedding(adapter: Adapter, transformer: nn.Module, latent_shape: Sequence[int],
                     text: TextConditioning | None = None, device=None):  # fmt: skip
    """The rotary embedding the model computes for a latent of ``latent_shape`` (B, C, F, H, W), as its forward does
    (None when the family's attention has none, e.g. CogVideoX without rotary embeddings)."""
    b, _, f, h, w = latent_shape
    c_in = adapter.model_in_channels(transformer)
    family = _rotary_family(adapter)
    with torch.no_grad():
        if family in ("wan", "hunyuan"):
            return transformer.rope(torch.zeros(b, c_in, f, h, w, device=device))
        if family == "mochi":
            gf, gh, gw = adapter.token_grid(transformer, latent_shape)
            return transformer.rope(transformer.pos_frequencies, gf, gh, gw, device=device, dtype=torch.float32)
        if family == "cogvideox":
            if not transformer.config.use_rotary_positional_embeddings:
                return None
            given = (text.extras if text is not None else {}).get("image_rotary_emb")
            return given if given is not None else adapter.rotary_emb(transformer, latent_shape, device)
        if family == "ltx":
            extras = text.extras if text is not None else {}
            gf, gh, gw = adapter.token_grid(transformer, latent_shape)
            tokens = torch.zeros(b, gf * gh * gw, transformer.config.in_channels, device=device)
            scale = extras.get("rope_interpolation_scale", adapter.rope_interpolation_scale)
            return transformer.rope(tokens, gf, gh, gw, scale, extras.get("video_coords"))
        if family == "ltx2":
            return ltx2_rotary_embedding(adapter, transformer, latent_shape, "video", text, device)
    raise ValueError(f"no rotary embedding for family {adapter.family!r}")


def ltx2_rotary_embedding(adapter: Adapter, transformer: nn.Module, latent_shape: Sequence[int],
                          stream: Literal["video", "audio"], text: TextConditioning | None = None, device=None, *,
                          cross: bool = False, n_audio: int | None = None):  # fmt: skip
    """One of LTX-2's rotary embeddings, as its forward computes it: the ``video`` (``rope``) or ``audio``
    (``audio_rope``) stream's self-attention one; ``cross``: the cross-modal attentions' (``cross_attn_rope`` /
    ``cross_attn_audio_rope``, from the time coordinate only). Coordinates: the extras' ``video_coords`` /
    ``audio_coords`` when given, else the video grid of ``latent_shape`` (at the extras' ``fps``) and ``n_audio``
    audio tokens (default: the extras' ``audio_num_frames``, else the length of their ``audio_hidden_states``)."""
    extras = text.extras if text is not None else {}
    b = latent_shape[0]
    with torch.no_grad():
        if stream == "video":
            coords = extras.get("video_coords")
            if coords is None:
                gf, gh, gw = adapter.token_grid(transformer, latent_shape)
                coords = transformer.rope.prepare_video_coords(b, gf, gh, gw, device, fps=extras.get("fps", 24.0))
            rope = transformer.cross_attn_rope if cross else transformer.rope
        else:
            coords = extras.get("audio_coords")
            if coords is None:
                if n_audio is None:
                    n_audio = extras.get("audio_num_frames")
                if n_audio is None and "audio_hidden_states" in extras:
                    n_audio = extras["audio_hidden_states"].shape[1]
                if n_audio is None:
                    raise ValueError("ltx2: the audio rotary embedding needs the audio token count (n_audio, or the "
                                     "text extras' audio_coords / audio_num_frames / audio_hidden_states)")  # fmt: skip
                coords = transformer.audio_rope.prepare_audio_coords(b, n_audio, device)
            rope = transformer.cross_attn_audio_rope if cross else transformer.audio_rope
        return rope(coords[:, 0:1] if cross else coords, device=device)


def site_rotary(adapter: Adapter, transformer: nn.Module, site: str, latent_shape: Sequence[int],
                text: TextConditioning | None = None, device=None, *, n_audio: int | None = None):  # fmt: skip
    """(queries' rotary embedding, keys') of attention site ``site``, as the model's forward hands them to the
    processor; None where that side is not rotated (cross-attention keys are text tokens). LTX-2's audio
    self-attention rotates by the audio positions, its cross-modal attentions each side by its own stream's time
    (:func:`ltx2_rotary_embedding`; ``n_audio``: the audio tokens)."""
    spec = site_spec(adapter, site)
    if not spec.rotary:
        return None, None
    if adapter.family == "ltx2":
        cross = spec.queries != spec.keys
        q_emb = ltx2_rotary_embedding(adapter, transformer, latent_shape, spec.queries, text, device, cross=cross,
                                      n_audio=n_audio)  # fmt: skip
        if not cross:
            return q_emb, q_emb
        k_emb = ltx2_rotary_embedding(adapter, transformer, latent_shape, spec.keys, text, device, cross=True,
                                      n_audio=n_audio)  # fmt: skip
        return q_emb, k_emb
    emb = rotary_embedding(adapter, transformer, latent_shape, text, device)
    return emb, emb if spec.keys == "video" else None


def rotate(adapter: Adapter, site: str, x: Float[Tensor, "batch pos head d_head"], emb,
           n_video: int) -> Float[Tensor, "batch pos head d_head"]:  # fmt: skip
    """``x`` (queries or keys of ``site``) with the rotary embedding ``emb`` applied as the family's processor does."""
    spec = site_spec(adapter, site)
    if emb is None or not spec.rotary:
        return x
    family = _rotary_family(adapter)
    if family == "wan":
        return wan_rotary(x, *emb)
    if family == "ltx":
        return ltx_rotary(x, emb)
    if family == "ltx2":  # split rotary frequencies are per head: (batch, head, pos, d_head / 2)
        return ltx2_rotary(x, emb, "split" if emb[0].ndim == 4 else "interleaved")
    if family == "cogvideox":
        return cogvideox_rotary(x, emb, x.shape[1] - n_video)
    if family == "mochi":  # the video tokens come first
        video, text = x.split([n_video, x.shape[1] - n_video], dim=1)
        return torch.cat([mochi_rotary(video, *emb), text], dim=1)
    return hunyuan_rotary(x, emb, n_video)


def pattern_rows(
    q: Float[Tensor, "batch pos head d_head"],
    k: Float[Tensor, "batch key head d_head"],
    queries: Sequence[int] | Tensor,
    *,
    key_mask: Tensor | None = None,
    scale: float | None = None,
) -> Float[Tensor, "batch head query key"]:
    """softmax(q k^T * scale) for the ``queries`` rows only (q, k already rotated), in float32; ``scale`` defaults to
    1/sqrt(d_head) as scaled dot-product attention; ``key_mask`` (batch, key) bool: False keys get no weight."""
    idx = torch.as_tensor(queries, dtype=torch.long, device=q.device)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = einsum(q[:, idx].float(), k.float(), "b n h d, b s h d -> b h n s") * scale
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
    return scores.softmax(-1)


def attention_rows(
    adapter: Adapter,
    transformer: nn.Module,
    site: str,
    q: Float[Tensor, "batch pos head d_head"],
    k: Float[Tensor, "batch key head d_head"],
    queries: Sequence[int],
    latent_shape: Sequence[int],
    *,
    text: TextConditioning | None = None,
    key_mask: Tensor | None = None,
) -> Float[Tensor, "batch head query key"]:
    """The attention pattern rows of the ``queries`` positions (indices into ``q``'s position axis) at attention
    site ``site`` (``blocks.{i}.attn``, ``blocks.{i}.attn2``, LTX-2's ``blocks.{i}.audio_attn`` ...), from its
    ``hook_q`` / ``hook_k`` values at one step: the rotary embeddings of a latent of ``latent_shape`` applied as the
    processor does (:func:`site_rotary`; LTX-2's audio token count is read off ``q`` / ``k``), then softmax(q k^T /
    sqrt(d_head)). Memory is O(queries x keys): the full pattern is never built."""
    n_video = math.prod(adapter.token_grid(transformer, latent_shape))
    spec = site_spec(adapter, site)
    n_audio = q.shape[1] if spec.queries == "audio" else k.shape[1] if spec.keys == "audio" else None
    q_emb, k_emb = site_rotary(adapter, transformer, site, latent_shape, text, q.device, n_audio=n_audio)
    idx = torch.as_tensor(list(queries), dtype=torch.long)
    if ((idx < 0) | (idx >= q.shape[1])).any():
        raise IndexError(f"query positions {idx.tolist()} outside 0..{q.shape[1] - 1}")
    qr = rotate(adapter, site, q, q_emb, n_video)
    kr = rotate(adapter, site, k, k_emb, n_video)
    return pattern_rows(qr, kr, idx, key_mask=key_mask)


def attn_out(adapter: Adapter, block: nn.Module, site: str, z: Float[Tensor, "batch pos head d_head"],
             n_video: int) -> Float[Tensor, "batch tokens d_model"]:  # fmt: skip
    """``hook_z`` through the attention module's output projection, for the video tokens (an LTX-2 audio-stream
    site: all its positions, the audio tokens): the attention output the block receives (before its gate), as
    TransformerLens' ``hook_result`` summed over heads."""
    spec = site_spec(adapter, site)
    attn = getattr(block, spec.module)
    span = slice(None) if spec.queries == "audio" else video_span(adapter, site, z.shape[1], n_video)
    flat = z[:, span].flatten(2)
    if getattr(attn, "to_out", None) is None:  # HunyuanVideo single blocks: the block's proj_out follows
        return flat
    return attn.to_out[1](attn.to_out[0](flat))
