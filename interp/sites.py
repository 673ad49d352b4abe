"""The site grammar: one home for hook names (as TransformerLens' ``hook_points``), read by the tracer, the
interventions' config validation, the store's readers, the probes and the viewer.

Sites: ``hook_embed``, ``blocks.{i}.hook_resid_pre``, ``blocks.{i}.{hook_attn_out,hook_cross_attn_out,
hook_mlp_out}``, ``blocks.{i}.hook_resid_post`` (alias ``blocks.{i}.attn.hook_out`` of the self-attention output),
``hook_out`` (the prediction, in the latent layout).

Per-head attention sites (TransformerLens' names and shapes, (batch, pos, head, d_head)): ``blocks.{i}.attn.hook_q``,
``hook_k``, ``hook_v``, ``hook_z`` of the block's self-attention (joint text+video attention in CogVideoX,
HunyuanVideo, HunyuanVideo 1.5 and Mochi) and ``blocks.{i}.attn2.hook_q`` ... of its cross-attention to the text (Wan,
WanVACE, SkyReels-V2, LTX, LTX-2's video stream), as TransformerLens
names the attention module ``attn`` and diffusers numbers the second one ``attn2``. LTX-2's audio stream and its
cross-modal attentions, named after diffusers' modules the same way: ``blocks.{i}.audio_attn.hook_q`` ... (audio
self-attention), ``blocks.{i}.audio_attn2.hook_q`` ... (audio cross-attention to its text),
``blocks.{i}.audio_to_video_attn.hook_q`` ... (queries video, keys / values audio) and
``blocks.{i}.video_to_audio_attn.hook_q`` ... (queries audio, keys / values video). ``hook_q`` / ``hook_k`` are
before the rotary embedding; ``hook_z`` is the input of the output projection
(:mod:`interp.adapters.attention`).

Modulation sites (adaLN, as DiT names them): ``blocks.{i}.hook_mod_shift_msa``, ``hook_mod_scale_msa``,
``hook_mod_gate_msa`` (the self-attention sublayer's ``norm(x) * (1 + scale) + shift`` and its output gate) and
``hook_mod_shift_mlp``, ``hook_mod_scale_mlp``, ``hook_mod_gate_mlp`` (the same for the feed-forward): what the
timestep embedding (and, in Wan and LTX, the block's own ``scale_shift_table``) gives each block, shaped
(batch, 1, d_model), or (batch, tokens, d_model) where timesteps are per token (Wan2.2 TI2V, LTX). Setting a gate
to zero removes that sublayer's contribution. A HunyuanVideo single-stream block has one shift / scale / gate for
its parallel attention and MLP (the ``_msa`` sites); CogVideoX's and HunyuanVideo's text-stream modulation is not a
site. Sites are read and edited like any other (``interp.trace``); they are not skippable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SUBLAYER_HOOKS = ("hook_attn_out", "hook_cross_attn_out", "hook_mlp_out")


def is_sublayer(hook: str) -> bool:
    """A sublayer's contribution to a stream (skippable: set to zero): :data:`SUBLAYER_HOOKS` and a family's other
    ``*_attn_out`` / ``*_mlp_out`` sites (LTX-2's ``hook_a2v_attn_out``, its audio stream's ``hook_audio_*_out``)."""
    return hook.endswith(("_attn_out", "_mlp_out"))


ATTN_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_z")
ATTN_MODULES = ("attn", "attn2", "audio_attn", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")
"""Attention modules with per-head sites: self (or joint) attention, cross-attention to the text; LTX-2's audio
stream's self- and text cross-attention and its cross-modal attentions (diffusers' ``audio_attn1``, ``audio_attn2``,
``audio_to_video_attn``, ``video_to_audio_attn``; the first module of a pair is named without its ``1``, as
``attn1`` is ``attn``)."""
_ATTN = "(" + "|".join(ATTN_MODULES) + ")"
MOD_HOOKS = ("hook_mod_shift_msa", "hook_mod_scale_msa", "hook_mod_gate_msa",
             "hook_mod_shift_mlp", "hook_mod_scale_mlp", "hook_mod_gate_mlp")  # fmt: skip
HOOK_ORDER = (
    "hook_resid_pre",
    *MOD_HOOKS,
    *(f"attn.{h}" for h in ATTN_HOOKS),
    "hook_attn_out",
    *(f"attn2.{h}" for h in ATTN_HOOKS),
    "hook_cross_attn_out",
    "hook_mlp_out",
    "hook_resid_post",
)
HEAD_SITE_RE = re.compile(r"^blocks\.(\d+|\*|\{layer\})\." + _ATTN + r"\.hook_[qkvz]$")
"""A per-head site (its value is (batch, pos, head, d_head)): what ``heads`` of an ablate / patch selects in."""
BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
ALIASES_RE = re.compile(r"^blocks\.(\d+)\.attn\.hook_out$")
# a stored site's name (any hook of a block, or a top-level hook)
STORED_SITE_RE = re.compile(r"^(hook_[A-Za-z0-9_]+|([a-z0-9]+_)?blocks\.\d+\.[A-Za-z0-9_.]+)$")
# a block-like site on any block list (``blocks.3.hook_x``, a branch's ``vace_blocks.0.hook_hint``)
ANY_BLOCK_RE = re.compile(r"^((?:[a-z0-9]+_)?blocks)\.(\d+)\.(.+)$")
# a site in an intervention's config: a block index, ``*`` or the placeholder ``{layer}``
SITE_RE = re.compile(
    r"^(hook_embed|hook_out|blocks\.(\d+|\*|\{layer\})(\.(hook_resid_pre|hook_resid_post|hook_attn_out|attn\.hook_out"
    r"|hook_cross_attn_out|hook_mlp_out|" + _ATTN + r"\.hook_[qkvz]|" + "|".join(MOD_HOOKS) + r"))?)$"
)
SITE_HELP = (
    "hook_embed, hook_out, blocks.{i}.hook_resid_pre, blocks.{i}.hook_resid_post, blocks.{i}.hook_attn_out, "
    "blocks.{i}.hook_cross_attn_out, blocks.{i}.hook_mlp_out, blocks.{i}.hook_mod_{shift,scale,gate}_{msa,mlp}, "
    "per head blocks.{i}.attn.hook_q/k/v/z (self-attention) and blocks.{i}.attn2.hook_q/k/v/z (cross-attention), "
    "LTX-2's blocks.{i}.{audio_attn,audio_attn2,audio_to_video_attn,video_to_audio_attn}.hook_q/k/v/z "
    "(i: a number, * or the placeholder {layer})"
)


def block_index(site: str) -> int | None:
    """``blocks.{i}.*`` -> i; None for a top-level hook."""
    m = BLOCK_RE.match(site)
    return int(m.group(1)) if m else None


def site_order(site: str) -> tuple:
    """Sort key putting sites in execution order: ``hook_embed``, then blocks by index and sublayer, ``hook_out``."""
    m = BLOCK_RE.match(site)
    if m:
        hook = m.group(2)
        return (1, int(m.group(1)), HOOK_ORDER.index(hook) if hook in HOOK_ORDER else len(HOOK_ORDER), hook)
    return (0 if site != "hook_out" else 2, 0, 0, site)


def layer_order(site: str) -> tuple:
    """Sort key of the viewer's layer slider: top-level hooks first, then blocks by index (hooks of one block by
    name)."""
    m = re.match(r"blocks\.(\d+)\.(.*)", site)
    return (1, int(m.group(1)), m.group(2)) if m else (0, 0, site)


def compact(names: Iterable[str]) -> str:
    """``blocks.0.hook_x, blocks.1.hook_x`` -> ``blocks.{0-1}.hook_x`` (for error messages)."""
    groups: dict[tuple[str, str], list[int]] = {}
    others: list[str] = []
    for n in names:
        m = ANY_BLOCK_RE.match(n)
        if m:
            groups.setdefault((m.group(1), m.group(3)), []).append(int(m.group(2)))
        else:
            others.append(n)
    parts = list(others)
    for (prefix, suffix), idx in groups.items():
        idx = sorted(idx)
        runs, start = [], idx[0]
        for a, b in zip(idx, idx[1:] + [None]):
            if b != a + 1:
                runs.append(f"{start}" if start == a else f"{start}-{a}")
                start = b
        parts.append(f"{prefix}.{{{','.join(runs)}}}.{suffix}")
    return ", ".join(parts)
