"""Bound interventions -> what one batched trajectory runs: a per-(branch, step) ForwardPlan and a latent edit.

A :class:`Bound` is an intervention plus the batch rows it edits and reads (:class:`~interp.interventions.Rows`);
rows of different sweep points share one batch, each with its own edits. Several interventions at one site apply
in list order. Sources and reference rows must be rows nothing edits (the engine gives them clean rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from jaxtyping import Float
from torch import Tensor

from interp.adapters.attention import check_video_positions, head_count, video_span
from interp.interventions.base import Rows, SiteSpec, Spec, as_positions, positions, resolve_index
from interp.sites import HEAD_SITE_RE
from interp.trace import ForwardPlan, Traced
from interp.trajectory import StepInput

Latent = Float[Tensor, "batch channels frames height width"]


@dataclass
class Bound:
    """An intervention bound to batch rows. ``keys``: per target row, the input index (seeds fresh noise);
    ``direction``: a steer's vector."""

    spec: Spec
    rows: Rows
    keys: list[int] = field(default_factory=list)
    direction: Tensor | None = None


@dataclass
class _Op:
    steps: set[int]
    fn: Callable[[Tensor, int, dict], Tensor]  # (value, step, stash) -> value


@dataclass
class _LatentOp:
    steps: set[int]
    fn: Callable[[StepInput], Latent]  # the latent entering a step -> the edited latent


def _site_op(b: Bound, pos: Tensor | None, shift=None) -> Callable[[Tensor, int, dict], Tensor]:
    """``shift(seq_len)``: where the video tokens start on a joint-attention site's position axis (text tokens
    there too), so ``frames`` / ``tokens`` select video tokens."""
    s = b.spec

    def run(value: Tensor, step: int, stash: dict, site: str) -> Tensor:
        v, back = as_positions(value)
        p = pos if pos is None or shift is None else pos + shift(v.shape[1])
        block_input = stash[site.rsplit(".", 1)[0] + ".hook_resid_pre"] if s.reads_block_input else None
        return back(s.edit(v, b.rows, p, direction=b.direction, block_input=block_input))

    return run


def compile_batch(
    bound: list[Bound],
    traced: Traced,
    latent_shape: tuple[int, ...],
    n_steps: int,
    read: list[str] = (),
) -> tuple[Callable[[str, int], ForwardPlan], Callable[[StepInput], Latent] | None]:
    """(plan(branch, step), edit_latent(StepInput) or None) applying every bound intervention."""
    adapter, transformer = traced.adapter, traced.dit.transformer
    grid = adapter.token_grid(transformer, latent_shape)
    patch_t = adapter.patch_size(transformer)[0]
    lat_grid = tuple(latent_shape[2:])
    # every edit's rows and positions on the model's device once, not copied there at every use
    dev = next(transformer.parameters()).device
    bound = [replace(b, rows=b.rows.to(dev)) for b in bound]
    to_dev = lambda p: None if p is None else p.to(dev)  # noqa: E731
    site_ops: dict[str, list[_Op]] = {}
    stash_steps: dict[str, set[int]] = {}  # resid_pre sites skips read, at these steps
    latent_ops: list[_LatentOp] = []
    for b in bound:
        s = b.spec
        steps = set(resolve_index(s.steps, n_steps, "steps"))
        if s.edits_latent:
            pos = to_dev(positions(getattr(s, "frames", None), None, lat_grid, latent=True))

            def latent_op(state: StepInput, b=b, pos=pos):
                return b.spec.edit_latent(state, b.rows, pos, keys=b.keys)

            latent_ops.append(_LatentOp(steps, latent_op))
            continue
        assert isinstance(s, SiteSpec), f"{type(s).__name__} edits neither a site nor the latent"
        for name in s.sites(traced.n_blocks):
            if s.reads_block_input:  # the block's output, reading its input
                blocks = traced.resolve(name, blocks=True)
                targets = [f"{blk}.hook_resid_post" for blk in blocks]
                for blk in blocks:
                    stash_steps.setdefault(f"{blk}.hook_resid_pre", set()).update(steps)
            else:
                targets = traced.resolve(name)
            for site in targets:
                if getattr(s, "heads", None) is not None and HEAD_SITE_RE.match(site):
                    resolve_index(s.heads, head_count(adapter, transformer, site), "heads")
                latent_site = site == "hook_out"
                pos = to_dev(
                    positions(s.frames, s.tokens, lat_grid if latent_site else grid, patch_t, latent=latent_site)
                )
                shift = None
                if HEAD_SITE_RE.match(site) and pos is not None:
                    check_video_positions(adapter, site)
                    n_video = grid[0] * grid[1] * grid[2]
                    shift = lambda n, site=site, n_video=n_video: video_span(adapter, site, n, n_video).start  # noqa: E731
                run = _site_op(b, pos, shift)
                site_ops.setdefault(site, []).append(
                    _Op(steps, lambda v, st, sh, run=run, site=site: run(v, st, sh, site))
                )

    stash: dict[str, Tensor] = {}

    def site_edit(site: str, step: int, value: Tensor) -> Tensor:
        for op in site_ops.get(site, ()):
            if step in op.steps:
                value = op.fn(value, step, stash)
        if step in stash_steps.get(site, ()):
            stash[site] = value.clone()
        return value

    active = {site for site in site_ops} | set(stash_steps)
    per_step: list[list[str]] = [
        [site for site in active
         if any(step in op.steps for op in site_ops.get(site, ())) or step in stash_steps.get(site, ())]
        for step in range(n_steps)
    ]  # fmt: skip

    def plan(branch: str, step: int) -> ForwardPlan:
        stash.clear()
        return ForwardPlan(read=list(read), edit={site: site_edit for site in per_step[step]})

    edit_latent = None
    if latent_ops:

        def edit_latent(state: StepInput) -> Latent:
            for op in latent_ops:
                if state.step in op.steps:
                    state = replace(state, x=op.fn(state))
            return state.x

    return plan, edit_latent


def rows(target: list[int], source: list[int] | None = None, group: list[list[int]] | None = None) -> Rows:
    """A :class:`Rows` from plain lists."""
    return Rows.of(target, source, group)
