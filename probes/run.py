"""``run_probes``: probes for every selected (step, site) of a capture, every label, in batched solves.

For each chunk of (step, site) slices (sized to ``memory_gb``), every slice is read once and every label's
examples gathered from it; each label's probes -- the real label and its control task, times every
regularization strength -- are then fitted in one batched solve over the chunk. The strength is picked per site on
the validation samples (log loss / squared error); metrics are measured on the test samples with cluster-bootstrap
intervals. With a baseline capture (a randomly initialised copy of the model, same inputs) the same probes are
fitted there on the same examples and split.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.progress import Progress

from interp.budget import Estimate, free_memory
from probes import labels as L
from probes import metrics as M
from probes.data import CacheReader, open_cache
from probes.examples import Balance, Examples, select_examples
from probes.linear import (
    NEWTON_STEPS,
    NEWTON_TOL,
    LinearFit,
    Standardizer,
    cuda_free,
    fast_matmul_dtype,
    fit_logistic,
    fit_ridge,
    full_float32,
    newton_dtype,
    site_group,
    to_raw,
)

LOGISTIC_LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
RIDGE_LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
METRIC_BYTES = 256 << 20  # the test metrics' working set: sites are scored this many bytes' worth at a time
DEVICE_SHARE = 0.5  # CUDA: a chunk may take this share of the free device memory (and of the free host memory)


class ProbeConfig(BaseModel):
    """What to probe and how; every field has a default but ``labels``."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str]
    sites: list[str] = ["blocks.*.hook_resid_post"]  # glob patterns over site names; [] = every site
    steps: list[Annotated[int, Field(ge=0)]] | None = None  # positions on the capture's steps axis; None = all
    branch: str | None = None  # 'cond' / 'uncond' when the capture keeps branches
    tokens_per_sample: int = Field(64, ge=0)  # 0 = every token
    balance: Balance = "class"
    frames: list[Annotated[int, Field(ge=0)]] | None = (
        None  # token labels: only tokens of these frames; sample labels: pool over them
    )
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    lambdas: list[Annotated[float, Field(gt=0)]] | None = None  # None: LOGISTIC_LAMBDAS or RIDGE_LAMBDAS
    control: Literal["position", "token", "sample", "none"] = "position"
    bootstrap: int = Field(200, ge=1)
    seed: int = Field(0, ge=0)
    max_iter: int = Field(100, ge=1)
    newton_steps: int = Field(NEWTON_STEPS, ge=0)  # Newton steps that finish each logistic solve (0: CG alone)
    newton_tol: float = Field(NEWTON_TOL, gt=0)  # they stop at this Newton decrement sqrt(g' H^-1 g)
    precision: Literal["auto", "float32", "bfloat16"] = "auto"  # logistic matmuls; auto: bfloat16 where fast
    memory_gb: float = Field(1.0, gt=0)  # host memory for one chunk's features (CUDA: grown to the free memory)
    device: str = "cpu"

    @field_validator("labels")
    @classmethod
    def _some(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"name at least one label; maze labels: {list(L.MAZE_LABELS)}, or a .npy/.npz file")
        return v


@dataclass
class LabelResult:
    """Per-label arrays over (steps, sites); ``metrics[name]`` is (point, lower, upper), each (steps, sites)."""

    label: L.Label
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    balance: dict[str, dict[str, float]] = field(default_factory=dict)
    n_examples: dict[str, int] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def main(self) -> str:
        return "r2" if self.label.kind == "regression" else "accuracy"


@dataclass
class ProbeResults:
    config: ProbeConfig
    cache: str
    sites: list[str]
    steps: list[int]  # denoising step indices of the probed positions
    timesteps: list[float]
    labels: dict[str, LabelResult]
    baseline: str | None = None

    def best(self, label: str) -> tuple[int, str, float]:
        """(step, site, score) of the highest main metric for ``label``."""
        r = self.labels[label]
        grid = r.metrics[r.main][0]
        i, j = np.unravel_index(np.nanargmax(grid), grid.shape)
        return self.steps[i], self.sites[j], float(grid[i, j])


# ---------------------------------------------------------------------------------------------------------------


def load_mazes(reader: CacheReader) -> list | None:
    """The capture's maze instances: ``task/instances`` as the capture recorded them.

    Captures written before they recorded their instances get them rebuilt from the capture config (a task model
    picks its instances by ``seed`` and ``batch``, ``interp.tasks.build_inputs``) and the model's ``interp.json``.
    None when neither is available.
    """
    items = reader.instances_json()
    if items is not None:
        return L.mazes_from_json(items)
    cfg = reader.config
    if not cfg.get("model"):
        return None
    try:  # older captures only: the model directory and the task generator (lazy imports, never for new files)
        from interp.models import BUILTINS, resolve_path
        from interp.tasks import build_inputs

        builtin = BUILTINS.get(cfg["model"])
        path = builtin.path if builtin is not None else resolve_path(cfg["model"], local_files_only=True)
        meta_file = Path(path) / "interp.json" if path is not None else None
        if meta_file is None or not meta_file.exists():
            return None
        meta = json.loads(meta_file.read_text())
        if meta.get("task") != "maze":
            return None
        return list(build_inputs(meta, int(cfg.get("batch", reader.batch)), int(cfg.get("seed", 0))).instances)
    except (ImportError, OSError, ValueError):
        return None


def resolve_labels(
    reader: CacheReader, names: list[str], arrays: dict[str, np.ndarray] | None, mazes: list | None
) -> list[L.Label]:
    """Labels by name: maze labels, keys of ``arrays``, or ``.npy`` / ``.npz[:key]`` files."""
    arrays = dict(arrays or {})
    grid = None
    index = reader.token_index  # a capture that kept some tokens: labels of the full grid, cut to them
    full = reader.tokens if index is None else int(np.prod(reader.grid))
    if mazes is not None:
        if len(mazes) != reader.batch:
            raise ValueError(f"{len(mazes)} mazes for a capture of batch {reader.batch}")
        grid = (L.maze_frames(full, mazes), mazes[0].side, mazes[0].side)
    grid = grid or reader.grid or (1, 1, full)
    if int(np.prod(grid)) != full:
        raise ValueError(f"token grid {grid} does not hold the capture's {full} tokens")
    out = []
    for name in names:
        if name in arrays:
            out.append(L.user_label(name, arrays[name], reader.batch, grid))
        elif name.endswith((".npy", ".npz")) or ".npz:" in name:
            key, arr = L.load_array(name)
            out.append(L.user_label(key, arr, reader.batch, grid))
        elif name in L.MAZE_LABELS:
            if mazes is None:
                raise ValueError(
                    f"label {name!r} needs maze instances; {reader.path.name} stores none (task/instances)"
                )
            out.append(L.maze_label(name, mazes, grid[0]))
        else:
            raise ValueError(
                f"unknown label {name!r}; valid: maze labels {list(L.MAZE_LABELS)}, "
                f"given arrays {sorted(arrays)}, or a .npy/.npz file"
            )
    return out if index is None else [L.keep_tokens(lab, index) for lab in out]


def features(x: np.ndarray, ex: Examples, frames: list[int] | None, grid,
             frame_of: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """(n, d) features of the examples from one (batch, tokens, d) slice (``frame_of``: each stored token's frame,
    for a capture that kept some tokens)."""
    if ex.token[0] >= 0:
        return x[ex.sample, ex.token]
    if frames is not None:
        if frame_of is not None:
            tok = np.flatnonzero(np.isin(frame_of, frames))
        else:
            f = grid[0] if grid else 1
            per = x.shape[1] // f
            tok = np.concatenate([np.arange(fr * per, (fr + 1) * per) for fr in frames])
        x = x[:, tok]
    return x.mean(1)[ex.sample]


def _val_loss(fit: LinearFit, x, y, kind) -> torch.Tensor:
    """(sites, problems) validation loss."""
    z = fit.logits(x)  # (s, p, n, k)
    if kind == "regression":
        return ((z[..., 0] - y) ** 2).mean(-1)
    if z.shape[-1] == 1:
        zz = z[..., 0]
        return (torch.nn.functional.softplus(zz) - y * zz).mean(-1)
    logp = torch.log_softmax(z, -1)
    return -torch.gather(logp, -1, y.long()[None, :, :, None].expand(z.shape[0], -1, -1, 1))[..., 0].mean(-1)


def probe_chunk(x, ex: Examples, label: L.Label, lambdas, cfg: ProbeConfig, w_boot, with_control: bool):
    """Fit every (site, task, lambda), pick lambda on val, score on test (float32 matmuls at full precision).

    Returns metric tensors (sites, boot) per name, the chosen real-label probes on raw activations
    (``{direction, bias, scale, proj_mean, proj_std}``), and the chosen lambdas.
    """
    with full_float32():
        return _probe_chunk(x, ex, label, lambdas, cfg, w_boot, with_control)


def _probe_chunk(x, ex: Examples, label: L.Label, lambdas, cfg: ProbeConfig, w_boot, with_control: bool):
    tr, va, te = (ex.slice(p) for p in ("train", "val", "test"))
    dt = torch.float32
    kind = label.kind
    ys = [torch.as_tensor(ex.y)]
    if with_control:
        ys.append(torch.as_tensor(ex.y_control))
    ys = [y.to(dt) if kind == "regression" else y.long() for y in ys]
    lam = torch.tensor(lambdas, dtype=dt, device=x.device)
    n_l = len(lambdas)
    y_prob = torch.cat([y.repeat(n_l, 1) for y in ys]).to(x.device)  # (tasks*lambdas, n)
    lam_prob = lam.repeat(len(ys))
    std = Standardizer.fit(x[:, tr])
    y_va = y_prob[:, va].to(dt) if kind != "multiclass" else y_prob[:, va]
    if kind == "regression":
        xs = std(x[:, : va.stop])
        fit = fit_ridge(xs[:, tr], y_prob[:, tr], lam_prob)
        loss = _val_loss(fit, xs[:, va], y_va, kind)
        del xs
    else:
        # each site is standardized into the matmul dtype just before its solve (no standardized copy of the
        # chunk); validation logits on the standardized validation examples (float32)
        mdt = fast_matmul_dtype(x.device) if cfg.precision == "auto" else getattr(torch, cfg.precision)
        fit = fit_logistic(
            x[:, tr],
            y_prob[:, tr],
            lam_prob,
            label.n_classes,
            cfg.max_iter,
            matmul_dtype=mdt,
            standardizer=std,
            newton_steps=cfg.newton_steps,
            newton_tol=cfg.newton_tol,
        )
        loss = _val_loss(fit, std(x[:, va]), y_va, kind)
    loss = loss.reshape(x.shape[0], len(ys), n_l)
    best = loss.argmin(-1)  # (s, tasks)
    pick = best + torch.arange(len(ys), device=x.device)[None] * n_l
    s_idx = torch.arange(x.shape[0], device=x.device)[:, None]
    w_raw, b_raw = to_raw(fit.weight[s_idx, pick], fit.bias[s_idx, pick], std)  # (s, tasks, d, k), (s, tasks, k)
    # scored on standardized test examples, as fitted: on raw activations the bias absorbs mean @ w_raw, which
    # cancels to float32 rounding of that product (a residual stream's mean is many stds), flipping near-ties
    scores = LinearFit(fit.weight[s_idx, pick], fit.bias[s_idx, pick]).logits(std(x[:, te]))  # (s, t, n, k)
    w_dev = w_boot.to(x.device)
    out = {}
    for t, tag in enumerate(["", "control_"][: len(ys)]):
        y_te = ys[t][te].to(x.device)
        if kind == "regression":
            out[f"{tag}r2"] = _metric(M.r2, scores[:, t], y_te, w_dev)
        else:
            out[f"{tag}accuracy"] = _metric(M.accuracy, scores[:, t], y_te, w_dev)
            out[f"{tag}auroc"] = _metric(M.auroc, scores[:, t], y_te, w_dev)
    return out, _directions(w_raw[:, 0], b_raw[:, 0], x[:, tr]), lam[best[:, 0]].cpu()


def _metric(fn, scores: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``fn`` (a :mod:`probes.metrics` function) of the test ``scores`` (sites, n, k) where they are (on a GPU a few
    small sorts, against 4.2 ms of the host's for 160 sites on an H200 machine), in blocks of sites whose bootstrap-weighted copies
    (~8 of ``w``'s size per site) fit ``METRIC_BYTES``; returned on the host."""
    block = max(1, METRIC_BYTES // (8 * w.numel() * w.element_size()))
    return torch.cat([fn(scores[i : i + block], y, w) for i in range(0, len(scores), block)]).cpu()


def _directions(w_raw, b_raw, x_train) -> dict[str, torch.Tensor]:
    """Unit directions of raw-space probes (s, d, k) with bias, scale and projection stats on the train set."""
    scale = w_raw.norm(dim=1)  # (s, k)
    direction = (w_raw / scale[:, None].clamp_min(1e-12)).transpose(1, 2)  # (s, k, d)
    proj = torch.bmm(direction, x_train.transpose(1, 2))  # (s, k, n)
    return {
        "direction": direction.cpu(),
        "bias": b_raw.cpu(),
        "scale": scale.cpu(),
        "proj_mean": proj.mean(-1).cpu(),
        "proj_std": proj.std(-1).cpu(),
    }


def stack_to(feats: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """The sites' features stacked into one tensor on ``device``. For CUDA they are stacked straight into pinned
    (page-locked) host memory and copied from there by DMA (~55 GB/s on an H200, against ~13 GB/s from pageable
    memory, which the driver stages through a pinned buffer of its own): the stack is a copy made anyway."""
    if device.type != "cuda":
        return torch.from_numpy(np.stack(feats)).to(device)
    first = feats[0]
    buf = torch.empty((len(feats), *first.shape), dtype=torch.from_numpy(first[:0]).dtype, pin_memory=True)
    np.stack(feats, out=buf.numpy())
    return buf.to(device, non_blocking=True)  # the caching host allocator keeps buf until the copy is done


def chunk_size(per_site: float, memory_gb: float, device: torch.device) -> int:
    """(step, site) slices per chunk: as many as ``memory_gb`` holds; on CUDA at least as many as ``DEVICE_SHARE``
    of the free device memory holds, within that share of the free host memory (where a chunk's features are
    gathered). One chunk is one batched solve: on a GPU a solve costs little more for many sites than for a few
    (its iterations are launch- and sync-bound), and on CUDA a site's last float bits can depend on the batch it was
    solved in (cuBLAS picks kernels by shape), so the fewer chunks, the fewer solves and the fewer such seams."""
    per_site = max(per_site, 1.0)
    chunk = max(1, int(memory_gb * 2**30 // per_site))
    if device.type == "cuda":
        free = cuda_free(device)
        host = free_memory()
        room = min(free, host) if host is not None else free
        chunk = max(chunk, int(DEVICE_SHARE * room // per_site))
    return chunk


def estimate(n_pairs: int, d_model: int, per_site: float, chunk: int, labels: list, out) -> Estimate:
    """What one probe run holds and writes: the features of one chunk of (step, site) slices, plus every label's
    probe weights (one (d_model + 1) x outputs matrix per (step, site), float32, kept until written)."""
    outputs = sum(max(1, int(getattr(lab, "n_classes", 1) or 1)) for lab in labels)
    weights = 4 * n_pairs * (d_model + 1) * outputs
    return Estimate("probe", memory=int(per_site * min(chunk, n_pairs)) + weights, disk=weights,
                    out=Path(out) if out is not None else None,
                    detail=f"{n_pairs} (step, site) slices, d_model {d_model}, {len(labels)} label(s)")  # fmt: skip


def run_probes(
    cache: str | Path,
    config: ProbeConfig | None = None,
    *,
    out: str | Path | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    mazes: list | None = None,
    baseline: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    **overrides,
) -> ProbeResults:
    """Train and score probes for every (label, step, site); write results to ``out`` when given.

    ``config`` fields may also be passed as keywords (``run_probes(path, labels=["wall"], sites=["blocks.*"])``).
    ``arrays`` maps user label names to arrays; ``mazes`` overrides the capture's stored maze instances;
    ``baseline`` is a capture of a randomly initialised copy of the model on the same inputs.
    Writes ``out/probes.h5``, ``out/weights/<label>.safetensors`` and ``out/heatmaps/<label>.png``. Its cost
    (:func:`estimate`: the features held per chunk, the probe weights kept and written) is checked against the free
    memory and disk first (``force``: run anyway).
    """
    cfg = ProbeConfig(**{**(config.model_dump() if config else {}), **overrides})
    dev = torch.device(cfg.device)
    reader = open_cache(cache, cfg.branch)
    base = open_cache(baseline, cfg.branch) if baseline is not None else None
    try:
        sites = reader.select(cfg.sites)
        positions = list(range(reader.n_steps)) if cfg.steps is None else list(cfg.steps)
        bad = [p for p in positions if not 0 <= p < reader.n_steps]
        if bad:
            raise ValueError(f"steps {bad} outside the capture's steps axis 0..{reader.n_steps - 1}")
        if base is not None:
            missing = [s for s in sites if s not in base.sites]
            same_tokens = (base.token_index is None) == (reader.token_index is None) and (
                reader.token_index is None or np.array_equal(base.token_index, reader.token_index))  # fmt: skip
            shape = (base.n_steps, base.batch, base.tokens)
            if missing or shape != (reader.n_steps, reader.batch, reader.tokens) or not same_tokens:
                raise ValueError(
                    f"baseline {base.path.name} does not match the capture: sites missing {missing}, "
                    f"(steps, batch, tokens) {(base.n_steps, base.batch, base.tokens)} vs "
                    f"{(reader.n_steps, reader.batch, reader.tokens)}"
                )
        if mazes is None and any(n in L.MAZE_LABELS and n not in (arrays or {}) for n in cfg.labels):
            mazes = load_mazes(reader)
        labels = resolve_labels(reader, cfg.labels, arrays, mazes)
        with_control = cfg.control != "none"
        prepared = []
        gen = torch.Generator().manual_seed(cfg.seed)
        for i, lab in enumerate(labels):
            ctrl = cfg.control if with_control else None
            ex = select_examples(lab, ctrl, cfg.tokens_per_sample, cfg.balance, cfg.frames, cfg.split, cfg.seed + i)
            w_boot = M.bootstrap_weights(torch.as_tensor(ex.sample[ex.slice("test")]), cfg.bootstrap, gen)
            lambdas = cfg.lambdas or (RIDGE_LAMBDAS if lab.kind == "regression" else LOGISTIC_LAMBDAS)
            res = LabelResult(lab)
            for part in ("train", "val", "test"):
                res.n_examples[part] = int(len(ex.index(part)))
                res.balance[part] = _balance(lab, ex, part)
            res.balance["all"] = lab.balance()
            prepared.append((lab, ex, w_boot, lambdas, res))

        pairs = [(p, s) for p in positions for s in sites]
        d = max(reader.d_model(s) for s in sites)
        n_total = sum(len(ex.y) for _, ex, *_ in prepared)
        # float32 copies of a site's features held at once; a float64 Newton finish (CUDA) holds three float64 more
        # (the examples, with the bias column, and their transpose)
        copies = (4 if base is None else 6) + (6 if cfg.newton_steps and newton_dtype(dev) == torch.float64 else 0)
        per_site = 4.0 * d * n_total * copies
        chunk = chunk_size(per_site, cfg.memory_gb, dev)
        if dev.type == "cpu":  # whole solver groups per chunk: a site's fit is then the same whatever the chunking
            mdt = fast_matmul_dtype(dev) if cfg.precision == "auto" else getattr(torch, cfg.precision)
            groups = [site_group(chunk, len(ex.index("train")), d, mdt, dev) for _, ex, *_ in prepared]
            step = math.lcm(*groups)
            chunk = chunk - chunk % step if chunk >= step else chunk
        estimate(len(pairs), d, per_site, chunk, [lab for lab, *_ in prepared], out).check(force)
        store: dict[str, dict[str, list]] = {lab.name: {} for lab, *_ in prepared}
        frame_of = None  # the frame of each stored token, when the capture kept some
        if reader.token_index is not None:
            frame_of = reader.token_index // int(np.prod(reader.grid[1:]))
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("probing", total=len(pairs))
            for c0 in range(0, len(pairs), chunk):
                part = pairs[c0 : c0 + chunk]
                feats = {lab.name: [] for lab, *_ in prepared}
                bfeats = {lab.name: [] for lab, *_ in prepared}
                for pos, site in part:
                    x = reader.read(site, pos)
                    xb = base.read(site, pos) if base is not None else None
                    for lab, ex, *_ in prepared:
                        feats[lab.name].append(features(x, ex, cfg.frames, lab.grid, frame_of))
                        if xb is not None:
                            bfeats[lab.name].append(features(xb, ex, cfg.frames, lab.grid, frame_of))
                for lab, ex, w_boot, lambdas, res in prepared:
                    x = stack_to(feats[lab.name], dev)
                    mets, probes, lam = probe_chunk(x, ex, lab, lambdas, cfg, w_boot, with_control)
                    acc = store[lab.name]
                    for k, v in mets.items():
                        acc.setdefault(k, []).append(v)
                    acc.setdefault("lambda", []).append(lam)
                    for k, v in probes.items():
                        acc.setdefault(f"w:{k}", []).append(v)
                    if base is not None:
                        xb = stack_to(bfeats[lab.name], dev)
                        bmets, *_ = probe_chunk(xb, ex, lab, lambdas, cfg, w_boot, False)
                        for k, v in bmets.items():
                            acc.setdefault(f"baseline_{k}", []).append(v)
                    del x
                bar.advance(task, len(part))

        shape = (len(positions), len(sites))
        step_ids = [int(reader.steps[p]) for p in positions]
        for lab, ex, w_boot, lambdas, res in prepared:
            acc = store[lab.name]
            raw = {}
            for k, v in acc.items():
                if k.startswith("w:"):
                    t = torch.cat(v)
                    res.weights[k[2:]] = t.reshape(*shape, *t.shape[1:])
                elif k == "lambda":
                    res.metrics["lambda"] = torch.cat(v).numpy().reshape(shape)
                else:
                    raw[k] = torch.cat(v)
            main = res.main
            # paired bootstrap: real, control and baseline share the resampled test samples
            if f"control_{main}" in raw:
                raw["selectivity"] = raw[main] - raw[f"control_{main}"]
            if f"baseline_{main}" in raw:
                raw["minus_baseline"] = raw[main] - raw[f"baseline_{main}"]
            for k, v in raw.items():
                res.metrics[k] = np.stack([t.numpy().reshape(shape) for t in M.summarize(v)])
            if lab.kind != "regression":
                te_y = ex.y[ex.index("test")]
                res.metrics["majority"] = np.full((1,) + shape, np.bincount(te_y).max() / len(te_y))
        results = ProbeResults(
            cfg,
            str(cache),
            sites,
            step_ids,
            [float(reader.timesteps[p]) for p in positions],
            {lab.name: res for lab, _, _, _, res in prepared},
            None if baseline is None else str(baseline),
        )
    finally:
        reader.close()
        if base is not None:
            base.close()
    if out is not None:
        from probes.plot import heatmaps
        from probes.results import save_results

        save_results(results, out)
        heatmaps(results, Path(out) / "heatmaps")
    return results


def _balance(lab: L.Label, ex: Examples, part: str) -> dict[str, float]:
    y = ex.y[ex.index(part)]
    if lab.kind == "regression":
        return {"mean": float(y.mean()), "std": float(y.std())}
    counts = np.bincount(y.astype(int), minlength=lab.n_classes)
    return {c: float(n / max(1, counts.sum())) for c, n in zip(lab.classes, counts)}


__all__ = [
    "ProbeConfig",
    "ProbeResults",
    "LabelResult",
    "run_probes",
    "load_mazes",
    "resolve_labels",
    "probe_chunk",
    "chunk_size",
    "features",
]
