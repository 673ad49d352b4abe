"""``interp view``: one self-contained HTML page for a capture or an experiment's results file.

The page needs no network: JS and CSS are inline and every image is a base64 PNG data URI. It shows sliders for
step and layer, the per-step x0 frames beside the token maps (:mod:`interp.report.tokenmaps`), the scorer's verdict
per step when the run has a task, the per-frame energy, and, for experiment results, the metric heatmaps with the
sweep point under the cursor.

Data flow: a *loader* turns a file into a :class:`ViewData` (plain, JSON-able: labels, numbers, data URIs; never
raw tensors), and :func:`render_html` turns that into the page. :data:`LOADERS` holds ``(name, probe, load)``
entries tried in order; supporting a new file kind is one more ``load(path, budget) -> ViewData`` function.

Budget: every image is downsampled, and steps, layers, samples and map kinds are thinned, until the estimated page
size fits ``budget_mb`` (:func:`plan_budget`); what was reduced is listed on the page.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.builtins import BUILTINS
from interp.report import tokenmaps as tm
from interp.store import CAPTURE, RESULTS, file_schema, open_capture, open_h5, read_site
from interp.store.atomic import write_atomic
from interp.store.schema import is_dataset, is_group

MB = 1 << 20


# ---- the page's data ----------------------------------------------------------------------------------------------
@dataclass
class Heatmap:
    """A metric over a 2-D sweep. ``points[y][x]`` describes the sweep point of each cell (shown on hover).

    ``link`` maps an axis (``"x"``/``"y"``) to ``"step"`` or ``"layer"`` when that axis is the page's step or layer
    slider (clicking a cell then moves the slider to it; values are indices into ``ViewData.steps``/``layers``).
    """

    title: str
    x_name: str
    y_name: str
    x_ticks: list[str]
    y_ticks: list[str]
    values: list[list[float | None]]  # (y, x); None = not run
    points: list[list[dict]] | None = None
    link: dict[str, str] = field(default_factory=dict)
    link_index: dict[str, list[int | None]] = field(default_factory=dict)


@dataclass
class ViewData:
    """Everything the page shows; JSON-able. Per-step lists are indexed [step][layer][sample] as they apply."""

    title: str
    info: list[tuple[str, str]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # step labels (global step numbers)
    layers: list[str] = field(default_factory=list)  # site names
    samples: list[int] = field(default_factory=list)
    frames: int = 0
    kinds: list[dict] = field(default_factory=list)  # [{"id": "norm", "label": ...}]
    layer_notes: list[dict] = field(default_factory=list)  # per layer: {"channels": [...], "explained": [...]}
    x0: list[list[str]] | None = None  # [step][sample] -> data URI of the frames strip
    x0_note: str = ""
    maps: dict[str, list[list[list[str]]]] = field(default_factory=dict)  # kind -> [step][layer][sample] -> URI
    energy: list[list[list[list[float]]]] | None = None  # [step][layer][sample][frame]
    verdicts: list[list[dict]] | None = None  # [step][sample] -> {"success": bool, ...}
    final_verdicts: list[dict] | None = None  # [sample]
    heatmaps: list[Heatmap] = field(default_factory=list)
    budget: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, separators=(",", ":"), allow_nan=False, default=_jsonable)


def _jsonable(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o)}")


def _finite(x: float, digits: int = 4) -> float | None:
    x = float(x)
    return None if not math.isfinite(x) else float(f"{x:.{digits}g}")


# ---- images -------------------------------------------------------------------------------------------------------
def png_data_uri(rgb: np.ndarray) -> str:
    """(H, W, 3) uint8 or float in [0, 1] -> ``data:image/png;base64,...``."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=9)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def frames_strip(frames: np.ndarray, gap: int = 1, bg: int = 255) -> np.ndarray:
    """(F, H, W, 3) -> (H, F*W + (F-1)*gap, 3): frames left to right with ``gap`` pixels between them."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    f, h, w, _ = frames.shape
    out = np.full((h, f * w + (f - 1) * gap, 3), bg, dtype=np.uint8)
    for i in range(f):
        out[:, i * (w + gap) : i * (w + gap) + w] = frames[i]
    return out


def downsample(frames: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean downsampling of (..., H, W, 3) by an integer factor (edges cropped to a multiple)."""
    if factor <= 1:
        return frames
    *lead, h, w, c = frames.shape
    h2, w2 = h // factor, w // factor
    x = np.asarray(frames, dtype=np.float32)[..., : h2 * factor, : w2 * factor, :]
    x = x.reshape(*lead, h2, factor, w2, factor, c).mean(axis=(-4, -2))
    return x.round().astype(np.uint8) if frames.dtype == np.uint8 else x


def _png_bytes_bound(h: int, w: int) -> int:
    """A bound on a data-URI PNG of h x w RGB pixels (incompressible data), with JSON quoting."""
    raw = h * (3 * w + 1)
    return int(4 / 3 * (raw * 1.002 + 200)) + 40


# ---- budget -------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """What goes on the page: positions on the steps axis, layer indices, samples, map kinds, downsampling factors."""

    steps: list[int]
    layers: list[int]
    samples: list[int]
    kinds: list[str]
    map_factor: int = 1
    x0_factor: int = 1
    reductions: list[str] = field(default_factory=list)


def _thin(idx: list[int], n: int) -> list[int]:
    """``n`` of ``idx`` spread evenly, keeping the first and the last."""
    return [idx[i] for i in tm.spread(len(idx), n)]


def plan_budget(
    budget_bytes: int,
    *,
    n_steps: int,
    n_layers: int,
    n_samples: int,
    grid: tuple[int, int, int],
    x0_shape: tuple[int, int, int] | None,
    kinds: Sequence[str],
    fixed_bytes: int = 0,
) -> Plan:
    """Choose what to embed so the page's estimated size stays under ``budget_bytes``.

    The estimate bounds each PNG by its raw size (so the real page is smaller). Reductions, in order, until it
    fits: thin samples to 4, halve x0 resolution down to 128 px, keep one channel map, thin steps to 10, layers to
    8, x0 to 48 px, token maps to 32 px; then steps to 2, layers to 1, only the norm map, token maps to 8 px and one
    sample. ``x0_shape`` is (frames, H, W) of the x0 video (None: no x0). Raises when even that does not fit.
    """
    f, h, w = grid
    plan = Plan(list(range(n_steps)), list(range(n_layers)), list(range(n_samples)), list(kinds))

    def est() -> int:
        s, l, b = len(plan.steps), len(plan.layers), len(plan.samples)
        mh, mw = max(1, h // plan.map_factor), max(1, w // plan.map_factor)
        total = fixed_bytes + s * l * b * len(plan.kinds) * _png_bytes_bound(mh, f * mw + f - 1)
        total += s * l * b * f * 10  # energy numbers
        if x0_shape is not None:
            xf, xh, xw = x0_shape
            xh, xw = max(1, xh // plan.x0_factor), max(1, xw // plan.x0_factor)
            total += s * b * _png_bytes_bound(xh, xf * xw + (xf - 1) * max(1, xw // 16))
        return total

    def x0_side() -> int:
        return 0 if x0_shape is None else max(x0_shape[1], x0_shape[2]) // plan.x0_factor

    def map_side() -> int:
        return max(h, w) // plan.map_factor

    def channel_kinds() -> list[str]:
        return [k for k in plan.kinds if k.startswith("channel")]

    def step(name: str, ok: Callable[[], bool], act: Callable[[], None]) -> bool:
        if est() <= budget_bytes or not ok():
            return False
        act()
        if not plan.reductions or not plan.reductions[-1].startswith(name):
            plan.reductions.append(name)
        return True

    def drop_channels(keep: int) -> None:
        extra = channel_kinds()[keep:]
        plan.kinds = [k for k in plan.kinds if k not in extra]

    rounds = [
        ("samples thinned", lambda: len(plan.samples) > 4, lambda: setattr(plan, "samples", plan.samples[:4])),
        ("x0 downsampled", lambda: x0_side() > 128, lambda: setattr(plan, "x0_factor", plan.x0_factor * 2)),
        ("channel maps reduced to one", lambda: len(channel_kinds()) > 1, lambda: drop_channels(1)),
        (
            "steps thinned",
            lambda: len(plan.steps) > 10,
            lambda: setattr(plan, "steps", _thin(plan.steps, max(10, len(plan.steps) // 2))),
        ),
        (
            "layers thinned",
            lambda: len(plan.layers) > 8,
            lambda: setattr(plan, "layers", _thin(plan.layers, max(8, len(plan.layers) // 2))),
        ),
        ("x0 downsampled", lambda: x0_side() > 48, lambda: setattr(plan, "x0_factor", plan.x0_factor * 2)),
        ("token maps downsampled", lambda: map_side() > 32, lambda: setattr(plan, "map_factor", plan.map_factor * 2)),
        (
            "steps thinned",
            lambda: len(plan.steps) > 2,
            lambda: setattr(plan, "steps", _thin(plan.steps, max(2, len(plan.steps) // 2))),
        ),
        (
            "layers thinned",
            lambda: len(plan.layers) > 1,
            lambda: setattr(plan, "layers", _thin(plan.layers, max(1, len(plan.layers) // 2))),
        ),
        ("channel maps dropped", lambda: bool(channel_kinds()), lambda: drop_channels(0)),
        ("PCA maps dropped", lambda: "pca" in plan.kinds and len(plan.kinds) > 1, lambda: plan.kinds.remove("pca")),
        ("token maps downsampled", lambda: map_side() > 8, lambda: setattr(plan, "map_factor", plan.map_factor * 2)),
        ("x0 downsampled", lambda: x0_side() > 16, lambda: setattr(plan, "x0_factor", plan.x0_factor * 2)),
        ("samples thinned", lambda: len(plan.samples) > 1, lambda: setattr(plan, "samples", plan.samples[:1])),
    ]
    for name, ok, act in rounds:
        while step(name, ok, act):
            pass
    if est() > budget_bytes:
        raise ValueError(
            f"a page of this run needs at least {est() / MB:.2f} MB even reduced to one step, layer and sample; "
            f"raise --budget-mb (now {budget_bytes / MB:.2f})"
        )
    return plan


# ---- tasks: verdicts per step -------------------------------------------------------------------------------------
def task_meta(config: dict, stored: dict | None = None) -> dict | None:
    """The task metadata (``interp.json``) of a run: as its file recorded it (``stored``), else, for files written
    before they recorded it, the model directory's, found without loading weights or the network."""
    if stored is not None:
        return stored
    name = str(config.get("model", ""))
    b = BUILTINS.get(name)
    path = b.path if b is not None else Path(name).expanduser()
    if path is None:
        return None
    p = Path(path) / "interp.json"
    try:
        return json.loads(p.read_text()) if p.exists() else None
    except (OSError, ValueError):
        return None


def maze_verdicts(
    videos: np.ndarray, meta: dict, config: dict, samples: Sequence[int] | None = None, conditions=None
) -> list[list[dict]]:
    """Score (steps, B, F, H, W, 3) uint8 videos of batch indices ``samples`` (default: all) with the maze scorer.

    ``conditions`` (B, H, W, 3) are the given first frames (files record them); without them (older files) they are
    rebuilt from the capture's seed and batch (the maze size read from the pixels); where that fails, each video's
    own first frame is the layout."""
    from interp.tasks.maze import BLOCK_PX  # the task's scorer: imported only for a maze run
    from interp.tasks.maze_score import score_video

    b = videos.shape[1]
    samples = list(range(b)) if samples is None else list(samples)
    conds: list[np.ndarray | None] = [None] * b
    side = videos.shape[3] // BLOCK_PX
    if conditions is not None:
        conds = [np.asarray(c) for c in conditions]
    else:
        from interp.tasks import build_inputs  # older files only: the task generator rebuilds the first frames

        try:
            n = max(int(config.get("batch") or b), max(samples) + 1)
            ti = build_inputs(meta, n, int(config.get("seed", 0)), size=(side - 1) // 2)
            cf = ti.condition_frames.numpy()
            if cf.shape[1:] == videos.shape[3:]:
                conds = [cf[i] for i in samples]
        except (ValueError, KeyError, TypeError):
            pass
    out = []
    for s in range(videos.shape[0]):
        row = []
        for i in range(b):
            sc = score_video(videos[s, i], conds[i]).as_dict()
            row.append({k: (_finite(v) if isinstance(v, float) else v) for k, v in sc.items()})
        out.append(row)
    return out


def _pixel_video(x: np.ndarray) -> np.ndarray:
    """Model-space (..., C, F, H, W) in [-1, 1] -> uint8 (..., F, H, W, 3)."""
    import torch

    from interp.tasks.maze import from_model_space

    return from_model_space(torch.from_numpy(np.ascontiguousarray(x[..., :3, :, :, :]))).numpy()


def latent_rgb(x: np.ndarray) -> np.ndarray:
    """A latent's first 3 channels (..., C, F, H, W) as uint8 RGB (..., F, H, W, 3), each channel scaled by its
    1st..99th percentile over everything given (so frames and steps share one scale)."""
    x = np.asarray(x, dtype=np.float32)
    c = x.shape[-4]
    ch = [x[..., min(i, c - 1), :, :, :] for i in range(3)]
    out = []
    for a in ch:
        lo, hi = np.percentile(a, [1, 99])
        out.append(np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1))
    return (np.stack(out, -1) * 255).round().astype(np.uint8)


# ---- loaders ------------------------------------------------------------------------------------------------------
def _json_attr(raw) -> dict | None:
    return None if raw is None else json.loads(raw if isinstance(raw, str) else bytes(raw).decode())


def is_capture(path: Path) -> bool:
    return file_schema(path) == CAPTURE.name


class CaptureSource:
    """A capture (one branch) as the viewer reads it; :class:`ResultsPointSource` is the same for one sweep point."""

    def __init__(self, cache):
        self.cache = cache
        self.steps = cache.steps
        self.grid = cache.grid
        self.config = cache.config
        f = cache.file
        names = [k for k in cache.keys() if cache.axes(k) == tm.PER_TOKEN]
        self.n_batch = f["x0"].shape[1] if "x0" in f else (f[cache.branch_name][names[0]].shape[1] if names else 0)
        self.x0_shape = tuple(f["x0"].shape[3:]) if "x0" in f else None  # (F, H, W)
        # a pipeline capture's step lens: x0 of some steps decoded by the VAE (shown instead of latent channels)
        self.lens_steps = cache.x0_video_steps if "x0" in f else None
        if self.lens_steps:
            self.x0_shape = tuple(f["x0_video"].shape[2:5])  # (F, H, W) of the decoded video

    def keys(self) -> list[str]:
        return self.cache.keys()

    def axes(self, site: str) -> str:
        return self.cache.axes(site)

    def read_step(self, site: str, pos: int, samples) -> np.ndarray:
        x = read_site(self.cache.file[self.cache.branch_name][site], int(self.cache._pos[pos]))
        return x if samples is None else x[np.asarray(samples)]

    def x0_steps(self, positions: Sequence[int], samples: Sequence[int]) -> np.ndarray:
        """(S, B, C, F, H, W); x0 is stored per global step number."""
        ds = self.cache.file["x0"]
        return np.stack([ds[int(self.steps[p])][list(samples)] for p in positions])

    def decoded_steps(self, positions: Sequence[int], samples: Sequence[int]) -> tuple[np.ndarray, list[int]]:
        """(S, B, F, H, W, 3) uint8 of the step lens at the chosen step positions (black where a step was not
        decoded) and the global steps that were."""
        ds = self.cache.file["x0_video"]
        row = {int(s): i for i, s in enumerate(self.lens_steps)}
        out = np.zeros((len(positions), len(samples), *ds.shape[2:]), np.uint8)
        shown = []
        for j, p in enumerate(positions):
            step = int(self.steps[p])
            if step in row:
                out[j] = ds[row[step]][list(samples)]
                shown.append(step)
        return out, shown

    def final(self, samples: Sequence[int]) -> np.ndarray | None:
        return self.cache.file["latents"][-1][list(samples)] if "latents" in self.cache.file else None

    def conditions(self, samples: Sequence[int]) -> np.ndarray | None:
        frames = self.cache.condition_frames  # recorded by the capture (older captures: rebuilt from the task)
        return None if frames is None else frames[list(samples)]


def _fill_run(
    data: ViewData,
    src,
    budget_bytes: int,
    *,
    fixed_bytes: int,
    meta: dict | None,
    sites: str | Sequence[str] | None,
    samples: Sequence[int] | None,
    k: int,
    max_fit_tokens: int,
) -> None:
    """x0 frames, verdicts, token maps and energies of one run source, planned under the budget."""
    names = tm.per_token_sites(src, sites)
    f, h, w = src.grid
    if not names and src.x0_shape is None:
        raise ValueError("nothing to show: no per-token sites and no x0")
    pixel = bool(meta and meta.get("pixel_space"))
    sample_ids = list(range(src.n_batch)) if samples is None else [int(s) for s in samples]
    if bad := [s for s in sample_ids if not 0 <= s < src.n_batch]:
        raise ValueError(f"--samples {', '.join(map(str, bad))}: the file has samples 0..{src.n_batch - 1}")
    kinds = ["norm", "pca", *[f"channel{i}" for i in range(k)]]
    plan = plan_budget(
        budget_bytes, n_steps=len(src.steps), n_layers=len(names), n_samples=len(sample_ids), grid=(f, h, w),
        x0_shape=src.x0_shape, kinds=kinds, fixed_bytes=fixed_bytes + 400 * len(src.steps) * len(sample_ids),
    )  # fmt: skip
    samples_ = [sample_ids[i] for i in plan.samples]
    data.frames = f
    data.steps = [str(int(src.steps[s])) for s in plan.steps]
    data.layers = [names[i] for i in plan.layers]
    data.samples = samples_

    # x0 frames (and the scorer's verdicts on the full-resolution video of every chosen step)
    if src.x0_shape is not None:
        if getattr(src, "lens_steps", None):  # a latent model's step lens: the VAE-decoded x0
            videos, shown = src.decoded_steps(plan.steps, samples_)
            data.x0_note = (f"x0 decoded by the pipeline's VAE (the step lens) at steps {shown}; other steps were not "
                            "decoded (black; capture with --x0-steps all to see every step)")  # fmt: skip
        elif pixel:
            videos = _pixel_video(src.x0_steps(plan.steps, samples_))
            data.x0_note = "x0 (pixel space: the predicted video)"
        else:
            x0 = src.x0_steps(plan.steps, samples_)  # (S, B, C, F, H, W)
            videos = latent_rgb(x0)
            data.x0_note = "x0 latent: channels 0-2 as RGB, each scaled to its 1-99th percentile over the run"
        if meta and meta.get("task") == "maze" and pixel:
            conds = src.conditions(samples_)
            data.verdicts = maze_verdicts(videos, meta, src.config, samples_, conds)
            final = src.final(samples_)
            if final is not None:
                data.final_verdicts = maze_verdicts(_pixel_video(final[None]), meta, src.config, samples_, conds)[0]
        vs = downsample(videos, plan.x0_factor)
        data.x0 = [[png_data_uri(frames_strip(vs[s, b], gap=max(1, vs.shape[-2] // 16))) for b in range(len(samples_))]
                   for s in range(len(plan.steps))]  # fmt: skip

    # token maps, one layer at a time (each fit once over all of the layer's steps)
    data.maps = {kd: [[[""] * len(samples_) for _ in plan.layers] for _ in plan.steps] for kd in plan.kinds}
    energy = np.zeros((len(plan.steps), len(plan.layers), len(samples_), f))
    for li, layer in enumerate(plan.layers):
        lm = tm.layer_maps(src, names[layer], steps=plan.steps, samples=samples_, k=k, max_fit_tokens=max_fit_tokens)
        energy[:, li] = lm.energy
        data.layer_notes.append({
            "channels": [int(c) for c in lm.fit.channels],
            "explained": [_finite(e, 3) for e in lm.fit.pca.explained],
            "norm_range": [_finite(v) for v in lm.fit.norm_range],
        })  # fmt: skip
        for kd in plan.kinds:
            for si in range(len(plan.steps)):
                for bi in range(len(samples_)):
                    img = downsample(tm.map_rgb(lm, kd, si, bi), plan.map_factor)
                    data.maps[kd][si][li][bi] = png_data_uri(frames_strip(img))
    data.energy = [[[[_finite(e) for e in fr] for fr in b] for b in l] for l in energy] if names else None
    labels = {
        "norm": "token L2 norm (viridis, scale fixed per layer)",
        "pca": "PCA of tokens as RGB (fit once per layer)",
    }
    data.kinds = [{"id": kd, "label": labels.get(kd, f"top-variance channel #{kd[7:]} (blue - / red +)")}
                  for kd in plan.kinds] if names else []  # fmt: skip
    data.budget = {"budget_mb": round(budget_bytes / MB, 3), "reductions": plan.reductions,
                   "map_downsample": plan.map_factor, "x0_downsample": plan.x0_factor}  # fmt: skip


def load_capture(
    path: str | os.PathLike,
    budget_bytes: int = 20 * MB,
    *,
    branch: str | None = None,
    sites: str | Sequence[str] | None = None,
    samples: Sequence[int] | None = None,
    k: int = 3,
    max_fit_tokens: int = 4096,
) -> ViewData:
    """A capture as page data: x0 frames and token maps per (step, layer, sample), energies, task verdicts."""
    path = Path(path)
    with open_capture(path, branch) as cache:
        src = CaptureSource(cache)
        cfg, (f, h, w) = cache.config, cache.grid
        meta = task_meta(cfg, cache.task_meta)
        info = [
            ("file", path.name), ("kind", "capture"), ("model", str(cfg.get("model"))),
            ("family", str(cache.attrs.get("family"))), ("branch", cache.branch_name),
            ("steps", str(len(cache.steps))), ("token grid (f, h, w)", f"{f} x {h} x {w}"),
            ("batch", str(src.n_batch)), ("seed / noise seed", f"{cfg.get('seed')} / {cfg.get('noise_seed')}"),
            ("complete", str(cache.complete)),
        ]  # fmt: skip
        if meta:
            info.append(("task", str(meta.get("task"))))
        data = ViewData(title=f"interp view: {path.name}", info=info)
        try:
            _fill_run(data, src, budget_bytes, fixed_bytes=60_000, meta=meta, sites=sites, samples=samples, k=k,
                      max_fit_tokens=max_fit_tokens)  # fmt: skip
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return data


# ---- experiment results (interp.experiments: DIR/results.h5) ------------------------------------------------------
def is_results(path: Path) -> bool:
    return file_schema(path) == RESULTS.name


def infer_grid(tokens: int, latent: tuple[int, int, int]) -> tuple[int, int, int]:
    """The token grid (f, h, w) of ``tokens`` tokens over a latent of (F, H, W): the smallest patch (temporal first,
    then square spatial) that tiles it; results files store no grid attribute (a ``grid`` attribute wins)."""
    fl, hl, wl = latent
    for pt in (1, 2, 4):
        for p in (1, 2, 4, 8, 16, 32):
            if fl % pt == 0 and hl % p == 0 and wl % p == 0 and (fl // pt) * (hl // p) * (wl // p) == tokens:
                return fl // pt, hl // p, wl // p
    raise ValueError(f"cannot tell the token grid of {tokens} tokens over a latent of {latent}")


class ResultsPointSource:
    """One sweep point of one input group of a results file, read like a capture (steps x samples)."""

    def __init__(self, file, group: str, point: int, branch: str | None, config: dict):
        self.g, self.point, self.config = file[group], point, config
        self.branch = None

        def has_sites(name: str) -> bool:  # a branch group: datasets (points, n, steps, tokens, d_model)
            g = self.g[name]
            return is_group(g) and any(is_dataset(g[s]) and g[s].ndim == 5 for s in g)

        subs = [k for k in self.g if has_sites(k)]
        if subs:
            self.branch = branch if branch in subs else ("cond" if "cond" in subs else subs[0])
        self._sites = [s for s in self.g[self.branch]] if self.branch else []
        x0 = self.g.get("x0")
        self.x0_shape = tuple(x0.shape[4:]) if x0 is not None else None
        self.n_batch = int(self.g["final"].shape[1]) if "final" in self.g else 0
        n_steps = (
            x0.shape[2] if x0 is not None else (self.g[self.branch][self._sites[0]].shape[2] if self._sites else 0)
        )
        self.steps = np.arange(n_steps)
        latent = tuple(self.g["final"].shape[-3:]) if "final" in self.g else self.x0_shape
        grid = self.g.attrs.get("grid", file.attrs.get("grid"))
        if grid is not None:
            self.grid = tuple(int(v) for v in grid)
        elif self._sites and latent is not None:
            self.grid = infer_grid(int(self.g[self.branch][self._sites[0]].shape[3]), latent)
        else:
            self.grid = (latent[0], 1, 1) if latent else (1, 1, 1)

    def keys(self) -> list[str]:
        return list(self._sites)

    def axes(self, site: str) -> str:
        return tm.PER_TOKEN

    def read_step(self, site: str, pos: int, samples) -> np.ndarray:
        x = self.g[self.branch][site][self.point, :, pos]  # (n, tokens, d)
        return x if samples is None else x[np.asarray(samples)]

    def x0_steps(self, positions: Sequence[int], samples: Sequence[int]) -> np.ndarray:
        x = self.g["x0"][self.point][list(samples)]  # (B, steps, C, F, H, W)
        return np.moveaxis(x[:, list(positions)], 1, 0)

    def final(self, samples: Sequence[int]) -> np.ndarray | None:
        return self.g["final"][self.point][list(samples)] if "final" in self.g else None

    def conditions(self, samples: Sequence[int]) -> np.ndarray | None:
        c = self.g.get("condition_frames")
        return None if c is None else c[:][list(samples)]


def _tick(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _axis_link(path: str, values: list, steps: list[str], layers: list[str]) -> tuple[str | None, list[int | None]]:
    """Map a sweep axis over single steps or layers to the page's step or layer slider positions."""
    last = path.rsplit(".", 1)[-1]
    ints = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]
    if not all(isinstance(v, int) for v in ints):
        return None, []
    if last in ("step", "steps") and steps:
        return "step", [steps.index(str(v)) if str(v) in steps else None for v in ints]
    if last in ("layer", "layers") and layers:
        idx = [next((i for i, n in enumerate(layers) if n.startswith(f"blocks.{v}.")), None) for v in ints]
        return "layer", idx
    return None, []


def results_heatmaps(res: dict, steps: list[str], layers: list[str]) -> list[Heatmap]:
    """One heatmap per metric over the sweep grid (mean over samples): rows the first sweep axis, columns the rest
    (flattened, first slowest); a per-step metric (points, samples, steps) gets rows = sweep points, columns = steps."""
    points, axes = res["points"], res["axes"]
    names = list(axes)
    shape = [len(v) for v in axes.values()]
    if len(points) != int(np.prod(shape)):
        raise ValueError(f"{len(points)} sweep points do not fill the grid of axes {names} ({shape})")
    ny = shape[0] if names else 1
    nx = int(np.prod(shape[1:])) if len(names) > 1 else 1
    y_name = names[0] if names else "-"
    x_name = " x ".join(names[1:]) if len(names) > 1 else "-"
    y_ticks = [_tick(v) for v in axes[names[0]]] if names else ["all"]
    x_ticks = [", ".join(_tick(points[j][a]) for a in names[1:]) for j in range(nx)] if len(names) > 1 else ["all"]
    link, link_index = {}, {}
    if names:
        t, idx = _axis_link(names[0], axes[names[0]], steps, layers)
        if t:
            link["y"], link_index["y"] = t, idx
    if len(names) == 2:
        t, idx = _axis_link(names[1], axes[names[1]], steps, layers)
        if t:
            link["x"], link_index["x"] = t, idx
    out = []
    for metric, arr in res["metrics"].items():
        arr = np.asarray(arr, dtype=np.float64)
        clean = res.get("clean", {}).get(metric)
        clean_mean = _finite(np.nanmean(clean)) if clean is not None and np.isfinite(clean).any() else None
        if arr.ndim == 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a point not run (all NaN) stays NaN
                mean = np.where(np.isfinite(arr).any(1), np.nanmean(np.where(np.isfinite(arr), arr, np.nan), 1), np.nan)
            vals = mean.reshape(ny, nx)
            pts = []
            for y in range(ny):
                row = []
                for x in range(nx):
                    p = y * nx + x
                    entry = {"point": p, **{a: points[p][a] for a in names}, "mean": _finite(mean[p]),
                             "per sample": [_finite(v) for v in arr[p]]}  # fmt: skip
                    if clean_mean is not None:
                        entry["clean mean"] = clean_mean
                    row.append(entry)
                pts.append(row)
            out.append(Heatmap(f"{metric} (mean over samples)", x_name, y_name, x_ticks, y_ticks,
                               [[_finite(v) for v in r] for r in vals], pts, dict(link), dict(link_index)))  # fmt: skip
        elif arr.ndim == 3:  # (points, samples, steps)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(arr, 1)  # (points, steps)
            n_steps = mean.shape[1]
            ticks = [", ".join(f"{a}={_tick(points[p][a])}" for a in names) or "all" for p in range(len(points))]
            pts = [[{"point": p, **{a: points[p][a] for a in names}, "step": s, "mean": _finite(mean[p, s])}
                    for s in range(n_steps)] for p in range(len(points))]  # fmt: skip
            lk, li = {}, {}
            if steps:
                lk["x"], li["x"] = "step", [steps.index(str(s)) if str(s) in steps else None for s in range(n_steps)]
            out.append(Heatmap(f"{metric} per step (mean over samples)", "step", "sweep point",
                               [str(s) for s in range(n_steps)], ticks, [[_finite(v) for v in r] for r in mean], pts,
                               lk, li))  # fmt: skip
    return out


def load_results(
    path: str | os.PathLike,
    budget_bytes: int = 20 * MB,
    *,
    point: int = 0,
    group: int = 0,
    branch: str | None = None,
    sites: str | Sequence[str] | None = None,
    samples: Sequence[int] | None = None,
    k: int = 3,
    max_fit_tokens: int = 4096,
) -> ViewData:
    """An experiment's ``results.h5``: metric heatmaps over the sweep, and, when the experiment captured x0 or sites,
    the x0 frames and token maps of sweep point ``point`` of input group ``group`` (maze verdicts from its stored
    conditioning frames)."""
    path = Path(path)
    with open_h5(path, RESULTS) as f:
        res = {
            "points": json.loads(f.attrs["points"]), "axes": json.loads(f.attrs["axes"]),
            "experiment": json.loads(f.attrs["experiment"]),
            "metrics": {k_: f["metrics"][k_][:] for k_ in f.get("metrics", {})},
            "clean": {k_: f["clean/metrics"][k_][:] for k_ in f.get("clean/metrics", {})},
        }  # fmt: skip
        exp = res["experiment"]
        info = [
            ("file", path.name), ("kind", "experiment results"), ("experiment", str(exp.get("name"))),
            ("model", str(exp.get("model"))), ("sweep points", str(len(res["points"]))),
            ("axes", ", ".join(f"{a} ({len(v)})" for a, v in res["axes"].items()) or "none"),
            ("complete", str(bool(f.attrs.get("complete")))),
        ]  # fmt: skip
        for name, v in res["clean"].items():
            if np.isfinite(v).any():
                info.append((f"clean {name}", str(_finite(np.nanmean(v)))))
        data = ViewData(title=f"interp view: {path.name}", info=info)
        gname = f"group_{group}"
        meta = task_meta({"model": exp.get("model")}, _json_attr(f.attrs.get("task_meta")))
        if not 0 <= point < len(res["points"]):
            raise ValueError(f"--point {point}: the sweep has points 0..{len(res['points']) - 1}")
        groups = sorted(int(k_[6:]) for k_ in f if k_.startswith("group_") and k_[6:].isdigit())
        if groups and group not in groups:
            raise ValueError(f"--group {group}: the file has input groups {', '.join(map(str, groups))}")
        if gname in f and ("x0" in f[gname] or any(is_group(f[gname][k_]) for k_ in f[gname])):
            inputs = exp.get("inputs", {})
            config = {"model": exp.get("model"), "seed": inputs.get("seed", 0), "batch": inputs.get("count")}
            src = ResultsPointSource(f, gname, point, branch, config)
            if src.x0_shape is not None or src.keys():
                heat_bytes = len(json.dumps([asdict(h) for h in results_heatmaps(res, [], [])], default=_jsonable))
                _fill_run(data, src, budget_bytes, fixed_bytes=60_000 + heat_bytes, meta=meta, sites=sites,
                          samples=samples, k=k, max_fit_tokens=max_fit_tokens)  # fmt: skip
                coords = ", ".join(f"{a}={_tick(v)}" for a, v in res["points"][point].items()) or "the only point"
                data.info.append(("shown run", f"point {point} ({coords}), input group {group}"))
        data.heatmaps = results_heatmaps(res, data.steps, data.layers)
        if not data.budget:
            data.budget = {"budget_mb": round(budget_bytes / MB, 3), "reductions": []}
    return data


LoadFn = Callable[..., ViewData]
LOADERS: list[tuple[str, Callable[[Path], bool], LoadFn]] = [
    ("capture", is_capture, load_capture),
    ("experiment results", is_results, load_results),
]


def register_loader(name: str, probe: Callable[[Path], bool], load: LoadFn, first: bool = True) -> None:
    """Add a file kind: ``probe(path)`` says whether it applies, ``load(path, budget_bytes, **options)`` reads it."""
    entry = (name, probe, load)
    LOADERS.insert(0, entry) if first else LOADERS.append(entry)


def load_view(path: str | os.PathLike, budget_bytes: int = 20 * MB, **options) -> ViewData:
    path = Path(path)
    import inspect

    for name, probe, load in LOADERS:
        if probe(path):
            accepted = inspect.signature(load).parameters
            if bad := sorted(o for o in options if o not in accepted):
                raise ValueError(f"option(s) {bad} do not apply to a {name} file")
            return load(path, budget_bytes, **options)
    raise ValueError(f"{path}: neither a capture nor a results file this viewer knows ({[n for n, *_ in LOADERS]})")


# ---- page ---------------------------------------------------------------------------------------------------------
def viridis_lut(n: int = 32) -> list[list[int]]:
    import matplotlib

    c = matplotlib.colormaps["viridis"](np.linspace(0, 1, n))[:, :3]
    return (c * 255).round().astype(int).tolist()


def render_html(data: ViewData) -> str:
    """The self-contained page (no external resources)."""
    payload = data.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    lut = json.dumps(viridis_lut())
    return _TEMPLATE.replace("/*__DATA__*/null", payload).replace("/*__LUT__*/null", lut)


def write_view(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    budget_mb: float = 20.0,
    name: str = "index.html",
    **options,
) -> Path:
    """Write ``out_dir/index.html`` for a capture or results file; returns the page's path.

    The budget plan bounds every PNG by its raw size, so a reduced page usually comes out well under budget; then
    the page is planned once more with the budget scaled by the measured ratio, and kept if it still fits.

    >>> write_view("run.h5", "view/", budget_mb=5)
    """
    budget = int(budget_mb * MB)
    data = load_view(path, budget, **options)
    html = render_html(data)
    if data.budget.get("reductions") and len(html.encode()) < 0.6 * budget:
        try:
            again = load_view(path, int(budget * 0.9 * budget / len(html.encode())), **options)
            html2 = render_html(again)
            if len(html2.encode()) + 200 <= budget:
                data, html = again, html2
        except ValueError:
            pass
    data.budget["budget_mb"] = round(budget_mb, 3)
    data.budget["page_mb"] = round(len(html.encode()) / MB, 3)
    html = render_html(data)  # with its own size shown
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / name
    write_atomic(page, html)
    return page


_TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>interp view</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 6px}
h2{font-size:14px;margin:14px 0 4px;color:#444}
#info{font-size:12px;color:#555;margin-bottom:8px}
#info span{margin-right:14px;white-space:nowrap}
.controls{display:flex;flex-wrap:wrap;gap:18px;align-items:center;padding:8px;background:#fff;border:1px solid #ddd;border-radius:6px;position:sticky;top:0;z-index:2}
.controls label{display:flex;gap:6px;align-items:center}
.controls input[type=range]{width:220px}
.strip{height:160px;image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #ccc;background:#fff;max-width:100%;object-fit:contain;object-position:left}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;margin-top:10px}
.note{font-size:12px;color:#666}
#verdict{font-weight:600;margin-left:10px}
.ok{color:#1a7f37}.bad{color:#c62828}
#timeline{display:flex;gap:2px;margin-top:4px;flex-wrap:wrap}
#timeline div{width:12px;height:12px;border-radius:2px;cursor:pointer;border:1px solid transparent}
#timeline div.cur{border-color:#000}
canvas{image-rendering:pixelated;border:1px solid #ccc;cursor:crosshair}
#hover{font:12px monospace;white-space:pre;background:#fff;border:1px solid #ccc;padding:6px;min-height:3em}
.hm{display:inline-block;vertical-align:top;margin:6px 16px 6px 0}
</style></head><body>
<h1 id="title"></h1>
<div id="info"></div>
<div class="controls">
  <label>step <input type="range" id="step" min="0" value="0"> <b id="stepLabel"></b></label>
  <label>layer <input type="range" id="layer" min="0" value="0"> <b id="layerLabel"></b></label>
  <label>sample <select id="sample"></select></label>
  <label>map <select id="kind"></select></label>
  <button id="play" type="button">play steps</button>
</div>
<div id="capturePanels">
<div class="panel" id="x0Panel">
  <h2>x0 at step <span class="stepNum"></span> <span id="verdict"></span></h2>
  <img id="x0img" class="strip" alt="x0 frames">
  <div class="note" id="x0note"></div>
  <div id="timeline" title="scorer verdict per step (click to go there)"></div>
</div>
<div class="panel" id="mapPanel">
  <h2>token map: <span id="kindLabel"></span> at step <span class="stepNum"></span>, <span id="layerName"></span></h2>
  <img id="mapimg" class="strip" alt="token maps">
  <div class="note">frames left to right; <span id="layerNote"></span></div>
</div>
<div class="panel" id="energyPanel">
  <h2>energy (mean squared token norm, mean over frames, log colour scale): rows layers (first at the top), columns steps; click to jump</h2>
  <canvas id="energy"></canvas>
  <div class="note">per frame at this step and layer: <span id="frameEnergy"></span></div>
</div>
</div>
<div class="panel" id="heatPanel">
  <h2>metrics over the sweep (hover a cell for its sweep point)</h2>
  <div id="heatmaps"></div>
  <div id="hover"></div>
</div>
<div class="note" id="budget"></div>
<script>
"use strict";
const D = /*__DATA__*/null;
const LUT = /*__LUT__*/null;
const $ = (id) => document.getElementById(id);
const S = {step: 0, layer: 0, sample: 0, kind: D.kinds.length ? D.kinds[0].id : null};

function viridis(t) {
  if (t === null || !isFinite(t)) return "rgb(200,200,200)";
  t = Math.min(1, Math.max(0, t));
  const x = t * (LUT.length - 1), i = Math.floor(x), f = x - i;
  const a = LUT[i], b = LUT[Math.min(i + 1, LUT.length - 1)];
  return "rgb(" + [0, 1, 2].map(k => Math.round(a[k] + f * (b[k] - a[k]))).join(",") + ")";
}
function fmt(v) { return (v === null || v === undefined) ? "-" : (typeof v === "number" ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : +v.toFixed(4)) : String(v)); }

function init() {
  $("title").textContent = D.title;
  for (const [k, v] of D.info) { const s = document.createElement("span"); s.textContent = k + ": " + v; $("info").appendChild(s); }
  const hasSteps = D.steps.length > 0, hasMaps = D.layers.length > 0;
  $("step").max = Math.max(0, D.steps.length - 1);
  $("layer").max = Math.max(0, D.layers.length - 1);
  D.samples.forEach((s, i) => { const o = document.createElement("option"); o.value = i; o.textContent = s; $("sample").appendChild(o); });
  D.kinds.forEach((k) => { const o = document.createElement("option"); o.value = k.id; o.textContent = k.id; $("kind").appendChild(o); });
  $("step").addEventListener("input", () => { S.step = +$("step").value; update(); });
  $("layer").addEventListener("input", () => { S.layer = +$("layer").value; update(); });
  $("sample").addEventListener("change", () => { S.sample = +$("sample").value; update(); });
  $("kind").addEventListener("change", () => { S.kind = $("kind").value; update(); });
  let timer = null;
  $("play").addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; $("play").textContent = "play steps"; return; }
    $("play").textContent = "stop";
    timer = setInterval(() => { S.step = (S.step + 1) % D.steps.length; update(); }, 400);
  });
  if (!hasSteps) { $("capturePanels").style.display = "none"; for (const id of ["step", "sample", "play"]) $(id).closest("label, button").style.display = "none"; }
  if (!hasMaps) { $("mapPanel").style.display = "none"; for (const id of ["layer", "kind"]) $(id).closest("label").style.display = "none"; }
  if (!D.x0) $("x0Panel").style.display = "none";
  if (!D.energy) $("energyPanel").style.display = "none";
  if (!D.heatmaps.length) $("heatPanel").style.display = "none";
  $("x0note").textContent = D.x0_note || "";
  const b = D.budget || {};
  $("budget").textContent = "page budget " + fmt(b.budget_mb) + " MB, page " + fmt(b.page_mb) + " MB" +
    (b.reductions && b.reductions.length ? "; to fit: " + b.reductions.join(", ") : "; nothing reduced");
  if (D.verdicts) {
    D.verdicts.forEach((row, i) => {
      const c = document.createElement("div"); c.dataset.step = i;
      c.addEventListener("click", () => { S.step = i; update(); });
      $("timeline").appendChild(c);
    });
  }
  if (D.energy) initEnergy();
  D.heatmaps.forEach(initHeatmap);
  update();
}

function verdictText(v) {
  if (!v) return "";
  const parts = Object.entries(v).filter(([k]) => k !== "success").map(([k, x]) => k + " " + fmt(x));
  return (v.success ? "solved" : "not solved") + " (" + parts.join(", ") + ")";
}

function update() {
  if (!D.steps.length) { drawHeatmaps(); return; }
  $("step").value = S.step; $("layer").value = S.layer; $("sample").value = S.sample; if (S.kind) $("kind").value = S.kind;
  $("stepLabel").textContent = D.steps[S.step] + " (" + (S.step + 1) + "/" + D.steps.length + ")";
  for (const e of document.querySelectorAll(".stepNum")) e.textContent = D.steps[S.step];
  if (D.x0) $("x0img").src = D.x0[S.step][S.sample];
  updateVerdicts();
  if (D.layers.length) updateMaps();
  drawHeatmaps();
}

function updateMaps() {
  $("layerLabel").textContent = D.layers[S.layer];
  $("layerName").textContent = D.layers[S.layer];
  const kind = D.kinds.find(k => k.id === S.kind);
  $("kindLabel").textContent = kind ? kind.label : "";
  const note = D.layer_notes[S.layer] || {};
  let ln = "PCA explained " + (note.explained || []).map(x => fmt(x)).join(" / ") + "; norm range " + (note.norm_range || []).map(fmt).join(" .. ");
  if (S.kind && S.kind.startsWith("channel")) ln = "channel " + note.channels[+S.kind.slice(7)] + " of this layer; " + ln;
  $("layerNote").textContent = ln;
  $("mapimg").src = D.maps[S.kind][S.step][S.layer][S.sample];
  if (D.energy) {
    drawEnergy();
    $("frameEnergy").textContent = D.energy[S.step][S.layer][S.sample].map((e, f) => "f" + f + " " + fmt(e)).join(", ");
  }
}

function updateVerdicts() {
  if (D.verdicts) {
    const v = D.verdicts[S.step][S.sample];
    $("verdict").textContent = "scorer: " + verdictText(v);
    $("verdict").className = v.success ? "ok" : "bad";
    if (D.final_verdicts) $("verdict").textContent += " | final video: " + (D.final_verdicts[S.sample].success ? "solved" : "not solved");
    for (const c of $("timeline").children) {
      const i = +c.dataset.step, ok = D.verdicts[i][S.sample].success;
      c.style.background = ok ? "#2e7d32" : "#c62828"; c.className = i === S.step ? "cur" : "";
      c.title = "step " + D.steps[i] + ": " + verdictText(D.verdicts[i][S.sample]);
    }
  }
}

// energy: layer (rows) x step (columns) of log10 mean-over-frames energy
let EW = 14, EH = 14;
function initEnergy() {
  const c = $("energy");
  EW = Math.max(6, Math.min(40, Math.floor(600 / D.steps.length))); EH = Math.max(6, Math.min(24, Math.floor(400 / D.layers.length)));
  c.width = D.steps.length * EW; c.height = D.layers.length * EH;
  c.addEventListener("click", (ev) => {
    const r = c.getBoundingClientRect();
    S.step = Math.min(D.steps.length - 1, Math.floor((ev.clientX - r.left) / r.width * D.steps.length));
    S.layer = Math.min(D.layers.length - 1, Math.floor((ev.clientY - r.top) / r.height * D.layers.length));
    update();
  });
}
function drawEnergy() {
  const c = $("energy"), g = c.getContext("2d");
  const val = (s, l) => { const fr = D.energy[s][l][S.sample]; const m = fr.reduce((a, b) => a + (b || 0), 0) / fr.length; return m > 0 ? Math.log10(m) : null; };
  let lo = Infinity, hi = -Infinity;
  for (let s = 0; s < D.steps.length; s++) for (let l = 0; l < D.layers.length; l++) { const v = val(s, l); if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
  for (let s = 0; s < D.steps.length; s++) for (let l = 0; l < D.layers.length; l++) {
    const v = val(s, l); g.fillStyle = viridis(v === null ? null : (hi > lo ? (v - lo) / (hi - lo) : 0.5)); g.fillRect(s * EW, l * EH, EW, EH);
  }
  g.strokeStyle = "#ff2d55"; g.lineWidth = 2; g.strokeRect(S.step * EW + 1, S.layer * EH + 1, EW - 2, EH - 2);
}

// experiment heatmaps
const HC = 22;
function initHeatmap(h, i) {
  const box = document.createElement("div"); box.className = "hm";
  const t = document.createElement("div"); t.textContent = h.title + "  (x: " + h.x_name + ", y: " + h.y_name + ")"; box.appendChild(t);
  const c = document.createElement("canvas"); c.id = "heat" + i; c.width = h.x_ticks.length * HC; c.height = h.y_ticks.length * HC;
  c.style.width = Math.max(120, Math.min(700, c.width * 1.5)) + "px";
  box.appendChild(c); $("heatmaps").appendChild(box);
  const flat = h.values.flat().filter(v => v !== null && isFinite(v));
  h._lo = Math.min(...flat); h._hi = Math.max(...flat); h._hover = null;
  const cut = (a) => a.length > 12 ? a.slice(0, 12).join(", ") + ", ... (" + a.length + ")" : a.join(", ");
  const n = document.createElement("div"); n.className = "note";
  n.textContent = "colour " + fmt(h._lo) + " (dark) .. " + fmt(h._hi) + " (yellow); rows: " + cut(h.y_ticks) + "; columns: " + cut(h.x_ticks);
  box.appendChild(n);
  const cell = (ev) => { const r = c.getBoundingClientRect();
    return [Math.min(h.x_ticks.length - 1, Math.max(0, Math.floor((ev.clientX - r.left) / r.width * h.x_ticks.length))),
            Math.min(h.y_ticks.length - 1, Math.max(0, Math.floor((ev.clientY - r.top) / r.height * h.y_ticks.length)))]; };
  c.addEventListener("mousemove", (ev) => { h._hover = cell(ev); showPoint(h); drawHeatmaps(); });
  c.addEventListener("mouseleave", () => { h._hover = null; drawHeatmaps(); });
  c.addEventListener("click", (ev) => {
    const [x, y] = cell(ev); let moved = false;
    for (const [axis, idx] of [["x", x], ["y", y]]) {
      const target = h.link[axis], li = h.link_index[axis]; if (!target || !li || li[idx] === null || li[idx] === undefined) continue;
      S[target] = li[idx]; moved = true;
    }
    if (moved) update();
  });
}
function showPoint(h) {
  if (!h._hover) return;
  const [x, y] = h._hover, v = h.values[y][x];
  const p = h.points ? h.points[y][x] : null;
  let s = h.title + " = " + fmt(v) + "\n" + h.x_name + " = " + h.x_ticks[x] + ", " + h.y_name + " = " + h.y_ticks[y];
  if (p) s += "\n" + Object.entries(p).map(([k, val]) => k + ": " + (typeof val === "object" ? JSON.stringify(val) : fmt(val))).join("\n");
  $("hover").textContent = s;
}
function drawHeatmaps() {
  D.heatmaps.forEach((h, i) => {
    const c = $("heat" + i); if (!c) return; const g = c.getContext("2d");
    for (let y = 0; y < h.y_ticks.length; y++) for (let x = 0; x < h.x_ticks.length; x++) {
      const v = h.values[y][x]; g.fillStyle = viridis(v === null ? null : (h._hi > h._lo ? (v - h._lo) / (h._hi - h._lo) : 0.5)); g.fillRect(x * HC, y * HC, HC, HC);
    }
    const cur = {x: null, y: null};
    for (const axis of ["x", "y"]) { const t = h.link[axis]; if (t && h.link_index[axis]) { const k = h.link_index[axis].indexOf(S[t]); if (k >= 0) cur[axis] = k; } }
    g.strokeStyle = "#ff2d55"; g.lineWidth = 2;
    if (cur.x !== null && cur.y !== null) g.strokeRect(cur.x * HC + 1, cur.y * HC + 1, HC - 2, HC - 2);
    else if (cur.x !== null) g.strokeRect(cur.x * HC + 1, 1, HC - 2, c.height - 2);
    else if (cur.y !== null) g.strokeRect(1, cur.y * HC + 1, c.width - 2, HC - 2);
    if (h._hover) { g.strokeStyle = "#fff"; g.strokeRect(h._hover[0] * HC + 1, h._hover[1] * HC + 1, HC - 2, HC - 2); }
  });
}
init();
</script></body></html>
"""
