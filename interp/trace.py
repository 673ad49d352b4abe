"""Sites by name, read / write / skip through one nnsight trace per forward.

A :class:`Traced` model wraps ``DiT(transformer)`` (the adapter's call plus a ``hook_out`` hook point) in
``nnsight.NNsight``. Every capture and every edit goes through :meth:`Traced.run`, which takes a
:class:`ForwardPlan`: sites to read, edits (an edit is a function ``(site, step, value) -> value`` applied inside
the trace, where an intervention engine plugs in) and blocks or sublayers to skip.

Site names (TransformerLens style; block numbers run over all block lists in execution order):
``hook_embed`` (tokens entering block 0; the same tensor as ``blocks.0.hook_resid_pre``),
``blocks.{i}.hook_resid_pre``, ``blocks.{i}.hook_attn_out`` (alias ``blocks.{i}.attn.hook_out``),
``blocks.{i}.hook_cross_attn_out``, ``blocks.{i}.hook_mlp_out``, ``blocks.{i}.hook_resid_post``, ``hook_out``
(the model's prediction for this forward in the canonical (B,C,F,H,W) layout, before guidance is combined); per
head ``blocks.{i}.attn.hook_q/k/v/z`` (self-attention) and ``blocks.{i}.attn2.hook_q/k/v/z`` (cross-attention),
and LTX-2's ``blocks.{i}.audio_attn.hook_*`` (audio self-attention), ``blocks.{i}.audio_attn2.hook_*`` (audio to its
text), ``blocks.{i}.audio_to_video_attn.hook_*`` and ``blocks.{i}.video_to_audio_attn.hook_*`` (cross-modal; named
after diffusers' modules, ``attn1`` read as ``attn``), (batch, pos, head, d_head) (:mod:`interp.adapters.attention`;
:meth:`Traced.attention_rows` gives pattern rows);
the adaLN modulation ``blocks.{i}.hook_mod_{shift,scale,gate}_{msa,mlp}`` (readable and editable; :mod:`interp.sites`);
a family's sites off the block axis (WanVACE's control branch: ``vace_blocks.{j}.hook_*``, before block 0).
Skippable: ``blocks.{i}`` (the whole block becomes the identity) and the sublayer sites (their contribution to the
stream is removed, i.e. set to zero).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import nnsight
import torch
from jaxtyping import Float
from nnsight import NNsight
from torch import Tensor, nn

from interp.adapters import Adapter, HookPoint, TextConditioning, get_adapter
from interp.adapters.attention import attention_rows, attention_sites, install_attention_hooks
from interp.sites import ALIASES_RE, SUBLAYER_HOOKS, is_sublayer
from interp.sites import compact as _compact

Edit = Callable[[str, int, Tensor], Tensor]
"""An edit at a site: ``(site, step, value) -> new value`` (same shape)."""


class DiT(nn.Module):
    """A transformer plus its adapter's call convention, with ``hook_out`` on the prediction."""

    def __init__(self, transformer: nn.Module, adapter: Adapter | None = None):
        super().__init__()
        self.adapter = adapter or get_adapter(transformer)
        self.transformer = install_attention_hooks(self.adapter, self.adapter.install_hooks(transformer))
        self.hook_out = HookPoint()

    def forward(
        self,
        latents: Float[Tensor, "batch channels frames height width"],
        timestep: Float[Tensor, " batch"],
        text: TextConditioning,
        condition: Tensor | None = None,
        with_streams: bool = False,
    ) -> Float[Tensor, "batch channels frames height width"] | tuple[Tensor, dict[str, Tensor]]:
        """The prediction; ``with_streams``: (prediction, the model's predictions for its other denoised streams)
        (LTX-2's audio: :meth:`~interp.adapters.base.Adapter.forward_streams`)."""
        if not with_streams:
            return self.hook_out(self.adapter.forward(self.transformer, latents, timestep, text, condition))
        out, streams = self.adapter.forward_streams(self.transformer, latents, timestep, text, condition)
        return self.hook_out(out), streams


@dataclass(frozen=True)
class ForwardPlan:
    """What one forward does besides running: sites to read, edits by site, sites to skip."""

    read: Sequence[str] = ()
    edit: Mapping[str, Edit] = field(default_factory=dict)
    skip: Sequence[str] = ()
    reduce: Callable[[str, Tensor], Tensor] | None = None
    """Applied to each read value ``(site, value)`` inside the forward, so that only its result is kept (a pooled
    capture keeps each block's token mean, never the step's full activations); None keeps the values."""

    @property
    def empty(self) -> bool:
        return not (self.read or self.edit or self.skip)


@dataclass
class TraceResult:
    output: Float[Tensor, "batch channels frames height width"]
    acts: dict[str, Tensor]
    # the model's predictions for its other denoised streams (``run(streams=True)``; LTX-2: audio_hidden_states)
    streams: dict[str, Tensor] = field(default_factory=dict)


class Traced:
    """A transformer wrapped for nnsight with named sites.

    What it changes on the caller's model, in place:

    - hook points: each block's class becomes the adapter's hooked subclass with identity :class:`HookPoint`
      children (idempotent; outputs bit-identical, ``state_dict`` unchanged; diffusers' block registry and
      class-name lookups see the base class, so caching, layer skip, regional compilation and device maps work);
    - eval mode: ``Traced`` switches the model to ``eval()`` (dropout off), as inference needs. The mode it found is
      ``was_training``; :meth:`restore_mode` puts it back, and so does leaving ``with Traced(model) as tr: ...``;
    - nnsight's wrappers: the first trace gives each module an instance ``forward`` and a ``__nnsight__`` state
      (nnsight's own machinery, not undone); outside a trace they run the module's forward, so the caller's model
      computes what it computed before (tested after reads, edits and skips).

    On a regionally compiled model (``compile_repeated_blocks()``) results are exact either way, but an nnsight
    trace makes dynamo recompile the blocks on every call (tiny Wan on CPU: 9-28 s a forward until dynamo's
    recompile limit, then eager); read-only plans with ``reads_via_hooks=True`` compile once (then 0.01 s).
    """

    def __init__(self, transformer: nn.Module, adapter: Adapter | None = None, *, reads_via_hooks: bool = False):
        """``reads_via_hooks=True`` runs read-only plans with plain PyTorch forward hooks on the hook points instead
        of an nnsight trace (the same tensors; measured by ``interp bench``); the default keeps every capture in
        nnsight."""
        self.reads_via_hooks = reads_via_hooks
        self.was_training = transformer.training
        self.dit = DiT(transformer, adapter).eval()
        self.adapter = self.dit.adapter
        self.model = NNsight(self.dit)
        self._paths: dict[str, str] = {}  # site -> module path under the DiT
        self._order: dict[str, int] = {}  # site or block -> execution position
        self._block_of: dict[str, str] = {}  # site -> its block name
        pos = 0
        branch = self.adapter.branch_sites(transformer)  # sites off the block axis that run before block 0
        for k, (name, path) in enumerate(branch):
            self._paths[name] = f"transformer.{path}"
            self._order[name] = k - len(branch)
        self._paths["hook_embed"] = f"transformer.{self.adapter.blocks(transformer)[0][0]}.hook_resid_pre"
        self._order["hook_embed"] = pos
        self._block_of["hook_embed"] = "blocks.0"
        for i, (path, block) in enumerate(self.adapter.blocks(transformer)):
            self._paths[f"blocks.{i}"] = f"transformer.{path}"
            self._order[f"blocks.{i}"] = pos = pos + 1
            for hook, sub in attention_sites(self.adapter, self.adapter.block_hooks(block)):
                name = f"blocks.{i}.{hook}"
                self._paths[name] = f"transformer.{path}.{sub}"
                self._order[name] = pos = pos + 1
                self._block_of[name] = f"blocks.{i}"
        self._paths["hook_out"] = "hook_out"
        self._order["hook_out"] = pos + 1
        self.n_blocks = len(self.adapter.blocks(transformer))
        self._sites: list[str] | None = None
        self._resolved: dict[tuple, list[str]] = {}  # (patterns, blocks) -> names: plans repeat every forward

    def restore_mode(self) -> None:
        """Put the transformer back in the train / eval mode it had before ``Traced`` switched it to eval."""
        self.dit.transformer.train(self.was_training)

    def __enter__(self) -> Traced:
        return self

    def __exit__(self, *exc) -> None:
        self.restore_mode()

    # ---- names -------------------------------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        """All readable site names, in execution order."""
        if self._sites is None:
            self._sites = [s for s in self._order if not re.fullmatch(r"blocks\.\d+", s)]
        return list(self._sites)

    def canonical(self, name: str) -> str:
        m = ALIASES_RE.match(name)
        return f"blocks.{m.group(1)}.hook_attn_out" if m else name

    def resolve(self, patterns: str | Sequence[str], *, blocks: bool = False) -> list[str]:
        """Site names matching exact names, aliases or fnmatch globs (``blocks.*.hook_resid_post``); a string may
        hold several, comma-separated. Execution order, no duplicates. ``blocks=True`` also allows ``blocks.{i}``."""
        key = (patterns if isinstance(patterns, str) else tuple(patterns), blocks)
        hit = self._resolved.get(key)
        if hit is not None:
            return list(hit)
        if isinstance(patterns, str):
            patterns = [p.strip() for p in patterns.split(",") if p.strip()]
        valid = self.sites + ([f"blocks.{i}" for i in range(self.n_blocks)] if blocks else [])
        out: set[str] = set()
        for p in patterns:
            p = self.canonical(p)
            hits = fnmatch.filter(valid, p) if any(c in p for c in "*?[") else [p] if p in valid else []
            if not hits:
                raise KeyError(
                    f"unknown site {p!r} for {self.adapter.family} ({self.n_blocks} blocks); valid: "
                    f"{_compact(valid)} (alias: blocks.{{i}}.attn.hook_out = blocks.{{i}}.hook_attn_out)"
                )
            out.update(hits)
        names = self._resolved[key] = sorted(out, key=self._order.__getitem__)
        return list(names)

    def _envoy(self, path: str):
        env = self.model
        for part in path.split("."):
            env = env[int(part)] if part.isdigit() else getattr(env, part)
        return env

    # ---- running -----------------------------------------------------------------------------------------------
    def run(
        self,
        latents: Float[Tensor, "batch channels frames height width"],
        timestep: Float[Tensor, " batch"],
        text: TextConditioning,
        condition: Tensor | None = None,
        plan: ForwardPlan | None = None,
        step: int = 0,
        grad: bool = False,
        streams: bool = False,
    ) -> TraceResult:
        """One forward applying ``plan``; returns the prediction and the read values (``streams``: and the
        predictions for the model's other denoised streams, LTX-2's audio).

        Every read, edit and skip runs inside one nnsight trace; read values are taken after any edit at the same
        site. An empty plan runs the bare forward; with ``reads_via_hooks`` a plan that only reads runs the plain
        forward with PyTorch forward hooks on the sites (the same tensors). ``grad=True`` runs the trace with
        autograd on (attribution patching): a read-only plan's values are the very tensors the forward used, so
        gradients of anything computed from the output reach them (``torch.autograd.grad``); otherwise no_grad.
        """
        plan = plan or ForwardPlan()
        if plan.empty and not grad:  # nothing to trace: the bare forward (bit-identical; no nnsight)
            with torch.no_grad():
                return self._result(self.dit(latents, timestep, text, condition, streams), {})
        read = self.resolve(plan.read) if plan.read else []
        if self.reads_via_hooks and not (plan.edit or plan.skip or grad):  # opt-in: same tensors without nnsight
            return self._read_with_hooks(latents, timestep, text, condition, read, streams, plan.reduce)
        edits = {s: fn for k, fn in plan.edit.items() for s in self.resolve(k)}
        skips = self.resolve(plan.skip, blocks=True) if plan.skip else []
        skipped_blocks = {s for s in skips if s.startswith("blocks.") and s.count(".") == 1}
        # a skipped block's stream passes through unchanged: its resid_pre / resid_post read the block's input
        passthrough_reads = {
            s
            for s in read
            if self._block_of.get(s) in skipped_blocks
            and s.endswith(("hook_embed", "hook_resid_pre", "hook_resid_post"))
        }
        inside = [
            s
            for s in list(read) + list(edits)
            if self._block_of.get(s) in skipped_blocks and s not in passthrough_reads
        ]
        if inside:
            raise ValueError(f"cannot read or edit {inside}: their block is skipped")
        bad = [s for s in skips if s not in skipped_blocks and not is_sublayer(s.split(".")[-1])]
        if bad:
            raise ValueError(
                f"cannot skip {bad}: skip a block (blocks.{{i}}) or a sublayer ({', '.join(SUBLAYER_HOOKS)}, or a "
                "family's other *_attn_out / *_mlp_out site)"
            )
        copy = bool(edits or skips)  # an in-place edit downstream must not change what we read
        # one operation per module, in execution order (hook_embed shares its module with blocks.0.hook_resid_pre)
        ops: dict[str, list[str]] = {}
        for s in sorted(set(read) | set(edits) | set(skips), key=self._order.__getitem__):
            path = self._paths[self._block_of[s]] if s in passthrough_reads else self._paths[s]
            ops.setdefault(path, []).append(s)
        saved: dict[str, Tensor] = {}
        with torch.set_grad_enabled(grad), self.model.trace(latents, timestep, text, condition, streams):
            for path, names in ops.items():
                env = self._envoy(path)
                if any(n in skipped_blocks for n in names):
                    args, kwargs = env.inputs
                    through = self.adapter.block_passthrough(self.dit.get_submodule(path), args, kwargs)
                    env.skip(through)
                    stream = through[0] if isinstance(through, tuple) else through
                    for n in names:
                        if n in passthrough_reads:
                            saved[n] = nnsight.save(stream.clone() if copy else stream)
                    continue
                for n in names:
                    if n in skips:
                        env.output = torch.zeros_like(env.output)
                    if n in edits:
                        value = env.output
                        new = edits[n](n, step, value)
                        if new.shape != value.shape:
                            raise ValueError(f"edit at {n} changed shape {tuple(value.shape)} -> {tuple(new.shape)}")
                        env.output = new
                value = env.output
                for n in names:
                    if n in read:
                        kept = plan.reduce(n, value) if plan.reduce is not None else value
                        saved[n] = nnsight.save(kept.clone() if copy and kept is value else kept)
            out = nnsight.save(self.model.output)
        return self._result(out, {n: saved[n] for n in read})

    @staticmethod
    def _result(out, acts: dict[str, Tensor]) -> TraceResult:
        if isinstance(out, tuple):  # (prediction, other streams' predictions)
            return TraceResult(out[0], acts, dict(out[1]))
        return TraceResult(out, acts)

    def attention_rows(self, site: str, q: Tensor, k: Tensor, queries: Sequence[int], latent_shape: Sequence[int],
                       text: TextConditioning | None = None, key_mask: Tensor | None = None) -> Tensor:  # fmt: skip
        """Attention pattern rows (batch, head, query, key) of the ``queries`` positions at ``site``
        (``blocks.{i}.attn`` / ``blocks.{i}.attn2``, LTX-2's ``blocks.{i}.audio_attn`` ...) from its ``hook_q`` /
        ``hook_k`` values at one step, for a latent of ``latent_shape``
        (:func:`interp.adapters.attention.attention_rows`; the full pattern is never built)."""
        return attention_rows(self.adapter, self.dit.transformer, site, q, k, queries, latent_shape, text=text,
                              key_mask=key_mask)  # fmt: skip

    def _read_with_hooks(self, latents, timestep, text, condition, read: list[str],
                         streams: bool = False, reduce=None) -> TraceResult:  # fmt: skip
        """A read-only plan through PyTorch forward hooks on the sites' hook points: the values an untouched nnsight
        trace saves (the modules' outputs, uncopied), at the cost of a bare forward."""
        saved: dict[str, Tensor] = {}
        by_path: dict[str, list[str]] = {}
        for n in read:
            by_path.setdefault(self._paths[n], []).append(n)

        def keep(names):
            def hook(module, args, output):
                for n in names:
                    saved[n] = reduce(n, output) if reduce is not None else output

            return hook

        handles = [self.dit.get_submodule(path).register_forward_hook(keep(names)) for path, names in by_path.items()]
        try:
            with torch.no_grad():
                out = self.dit(latents, timestep, text, condition, streams)
        finally:
            for h in handles:
                h.remove()
        return self._result(out, {n: saved[n] for n in read})

    def __call__(self, latents, timestep, text, condition=None) -> Tensor:
        """The bare forward (no nnsight), for comparison and for steps that need nothing traced."""
        with torch.no_grad():
            return self.dit(latents, timestep, text, condition)
