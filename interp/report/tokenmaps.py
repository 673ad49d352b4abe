"""Token maps of a capture: what each (step, layer, frame) of the residual stream looks like on the token grid.

For one site (a "layer") of a capture, per step, sample and frame:

- ``norm``: the L2 norm of every token, a (rows, cols) map;
- ``pca``: every token projected on the layer's top 3 principal directions and mapped to RGB. The PCA (mean,
  directions, signs and colour scale) is fit **once per layer** on tokens of all its steps, samples and frames, so one
  token vector gets one colour at every step and frame and colours compare across them (not across layers);
- ``channels``: the maps of the layer's top-variance channels (variance over all its tokens);
- ``energy``: per frame, the mean over the frame's tokens of the squared L2 norm.

:func:`fit_layer` reads a site one step at a time (exact channel statistics and norm range; the PCA on at most
``max_fit_tokens`` tokens drawn with a fixed seed, on all of them when there are fewer); :func:`layer_maps`
computes the maps of chosen steps with that fit. PNG grids (matplotlib): :func:`plot_layer_frame_grid` (layer x
frame at one step) and :func:`plot_step_frame_grid` (step x frame at one layer); :func:`save_token_map_pngs`
writes a set of them for a capture.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from einops import rearrange
from jaxtyping import Float

from interp.report.save import save_figure
from interp.sites import layer_order
from interp.store import open_capture, read_site

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from interp.store import CaptureReader

PER_TOKEN = "step,batch,token,d_model"


# ---- numbers ------------------------------------------------------------------------------------------------------
def token_norm(x: Float[np.ndarray, "*lead d"]) -> Float[np.ndarray, "*lead"]:
    """L2 norm over the last (d_model) axis."""
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt((x * x).sum(-1))


def frame_energy(grid: Float[np.ndarray, "*lead f h w d"]) -> Float[np.ndarray, "*lead f"]:
    """Per frame, the mean over its tokens of the squared L2 norm."""
    g = np.asarray(grid, dtype=np.float64)
    return (g * g).sum(-1).mean(axis=(-2, -1))


def top_variance_channels(var: Float[np.ndarray, "d"], k: int) -> np.ndarray:
    """Indices of the ``k`` channels of largest variance, largest first (ties: lower index first)."""
    var = np.asarray(var)
    order = np.lexsort((np.arange(len(var)), -var))
    return order[: min(k, len(var))]


@dataclass
class PCAColors:
    """A 3-component PCA of token vectors and its map to RGB: ``0.5 + 0.5 * clip(proj / scale, -1, 1)``."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (3, d), unit rows; a component's largest-|loading| entry is positive
    scale: np.ndarray  # (3,): the 99th percentile of |projection| over the fit tokens (1 where that is 0)
    explained: np.ndarray  # (3,): share of the fit tokens' variance per component

    def project(self, x: Float[np.ndarray, "*lead d"]) -> Float[np.ndarray, "*lead 3"]:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T

    def colors(self, x: Float[np.ndarray, "*lead d"]) -> Float[np.ndarray, "*lead 3"]:
        """RGB in [0, 1]; a component missing for lack of rank stays at 0.5 (grey)."""
        return 0.5 + 0.5 * np.clip(self.project(x) / self.scale, -1.0, 1.0)


def fit_pca_colors(x: Float[np.ndarray, "n d"], n_components: int = 3) -> PCAColors:
    """PCA of the rows of ``x`` (exact: eigendecomposition of the smaller Gram/covariance matrix)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    mean = x.mean(0)
    xc = x - mean
    if n <= d:
        vals, vecs = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        keep = vals > vals.max(initial=0.0) * 1e-12
        comps = (xc.T @ vecs[:, keep] / np.sqrt(vals[keep])).T
    else:
        vals, vecs = np.linalg.eigh(xc.T @ xc)
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        keep = vals > vals.max(initial=0.0) * 1e-12
        comps = vecs[:, keep].T
    vals = vals[keep]
    comps = comps[:n_components]
    total = (xc * xc).sum()
    explained = vals[:n_components] / total if total > 0 else np.zeros(len(comps))
    # deterministic signs: the largest-|loading| entry of each component is positive
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)]) if len(comps) else np.ones(0)
    comps = comps * signs[:, None]
    proj = xc @ comps.T
    scale = np.percentile(np.abs(proj), 99, axis=0) if len(comps) else np.ones(0)
    scale = np.where(scale > 0, scale, 1.0)
    pad = n_components - len(comps)  # low rank: zero directions give grey
    if pad > 0:
        comps = np.concatenate([comps, np.zeros((pad, d))])
        scale = np.concatenate([scale, np.ones(pad)])
        explained = np.concatenate([explained, np.zeros(pad)])
    return PCAColors(mean, comps, scale, explained)


# ---- per layer ----------------------------------------------------------------------------------------------------
@dataclass
class LayerFit:
    """What is fit once per layer (site) over all its steps, samples and frames."""

    site: str
    pca: PCAColors
    channels: np.ndarray  # (k,) top-variance channel indices
    channel_var: np.ndarray  # (d,) variance of every channel over all tokens
    channel_absmax: np.ndarray  # (k,) max |value| of each chosen channel (a symmetric colour scale)
    norm_range: tuple[float, float]  # min and max token norm (a shared colour scale across steps and frames)
    energy_max: float


@dataclass
class LayerMaps:
    """Maps of one site at the chosen steps; arrays are (steps, samples, frames, rows, cols, ...)."""

    site: str
    steps: np.ndarray  # (S,) global step numbers
    samples: np.ndarray  # (B,) batch indices
    fit: LayerFit
    norm: np.ndarray  # (S, B, F, H, W)
    pca: np.ndarray  # (S, B, F, H, W, 3) in [0, 1]
    channel_maps: np.ndarray  # (S, B, k, F, H, W)
    energy: np.ndarray  # (S, B, F)


def per_token_sites(cache: CaptureReader, sites: str | Sequence[str] | None = None) -> list[str]:
    """Per-token sites of a capture in layer order (``blocks.{i}.*`` by i, others first). ``sites``: names or globs."""
    stored = [s for s in cache.keys() if cache.axes(s) == PER_TOKEN]
    if sites is not None:
        pats = [sites] if isinstance(sites, str) else list(sites)
        if none := [p for p in pats if not any(fnmatch.fnmatchcase(s, p) for s in stored)]:
            raise ValueError(f"sites {none} match no per-token site of the file; it has: {', '.join(stored) or 'none'}")
        stored = [s for s in stored if any(fnmatch.fnmatchcase(s, p) for p in pats)]

    return sorted(stored, key=layer_order)


def _read_step(cache: CaptureReader, site: str, pos: int, samples: np.ndarray | None) -> np.ndarray:
    """(B, tokens, d) of one position on the cache's steps axis, read straight from the dataset.

    ``cache`` may be any source with ``steps``, ``grid``, ``keys()``, ``axes(site)`` and
    ``read_step(site, pos, samples)`` (e.g. one sweep point of an experiment's results, see the viewer)."""
    if hasattr(cache, "read_step"):
        return np.asarray(cache.read_step(site, pos, samples), dtype=np.float32)
    x = read_site(cache.file[cache.branch_name][site], int(cache._pos[pos]))
    return np.asarray(x if samples is None else x[samples], dtype=np.float32)


def fit_layer(
    cache: CaptureReader,
    site: str,
    *,
    k: int = 3,
    max_fit_tokens: int = 4096,
    seed: int = 0,
    samples: Sequence[int] | None = None,
) -> LayerFit:
    """Fit a layer's PCA colours, top-variance channels and colour ranges over all steps of ``cache`` (a view).

    Reads one step at a time. Channel statistics and norm ranges are exact; the PCA uses every token when the layer
    has at most ``max_fit_tokens`` of them (steps x samples x tokens), else that many drawn with ``seed``.
    """
    if cache.axes(site) != PER_TOKEN:
        raise ValueError(f"{site} is stored as {cache.axes(site)}, not per token")
    samples_ = None if samples is None else np.asarray(samples)
    n_steps = len(cache.steps)
    rng = np.random.default_rng(seed)
    s1 = s2 = None
    count = 0
    lo, hi, emax = np.inf, -np.inf, 0.0
    rows = []
    first = _read_step(cache, site, 0, samples_)
    per_step_total = first.shape[0] * first.shape[1]
    take = per_step_total if per_step_total * n_steps <= max_fit_tokens else max(1, max_fit_tokens // n_steps)
    for pos in range(n_steps):
        x = first if pos == 0 else _read_step(cache, site, pos, samples_)
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        s1 = flat.sum(0) if s1 is None else s1 + flat.sum(0)
        s2 = (flat * flat).sum(0) if s2 is None else s2 + (flat * flat).sum(0)
        count += len(flat)
        sq = (flat * flat).sum(1)
        n = np.sqrt(sq)
        lo, hi = min(lo, float(n.min())), max(hi, float(n.max()))
        grid = tokens_grid(x, cache.grid)
        emax = max(emax, float(frame_energy(grid).max()))
        idx = np.arange(len(flat)) if take >= len(flat) else np.sort(rng.choice(len(flat), take, replace=False))
        rows.append(flat[idx])
    mean = s1 / count
    var = np.maximum(s2 / count - mean * mean, 0.0)
    channels = top_variance_channels(var, k)
    pca = fit_pca_colors(np.concatenate(rows))
    absmax = np.zeros(len(channels))
    for pos in range(n_steps):  # second pass: the chosen channels' ranges (cheap: k columns)
        x = _read_step(cache, site, pos, samples_)
        absmax = np.maximum(absmax, np.abs(x[..., channels]).reshape(-1, len(channels)).max(0))
    absmax = np.where(absmax > 0, absmax, 1.0)
    return LayerFit(site, pca, channels, var, absmax, (lo, hi), emax)


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``, always the first and the last (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def tokens_grid(x: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """(..., tokens, d) -> (..., frames, rows, cols, d)."""
    f, h, w = grid
    return rearrange(x, "... (f h w) d -> ... f h w d", f=f, h=h, w=w)


def layer_maps(
    cache: CaptureReader,
    site: str,
    fit: LayerFit | None = None,
    *,
    steps: Sequence[int] | None = None,
    samples: Sequence[int] | None = None,
    **fit_kwargs,
) -> LayerMaps:
    """Maps of ``site`` at ``steps`` (positions on the cache's steps axis; default all) with the layer's fit."""
    samples_ = None if samples is None else np.asarray(samples)
    fit = fit or fit_layer(cache, site, samples=samples, **fit_kwargs)
    positions = list(range(len(cache.steps))) if steps is None else [int(s) for s in steps]
    norm, pca, chans, energy = [], [], [], []
    for pos in positions:
        g = tokens_grid(_read_step(cache, site, pos, samples_), cache.grid)  # (B, F, H, W, d)
        norm.append(token_norm(g))
        pca.append(fit.pca.colors(g))
        chans.append(rearrange(g[..., fit.channels], "b f h w k -> b k f h w"))
        energy.append(frame_energy(g))
    b_all = norm[0].shape[0]
    return LayerMaps(
        site, np.asarray(cache.steps)[positions], np.arange(b_all) if samples_ is None else samples_, fit,
        np.stack(norm), np.stack(pca), np.stack(chans).astype(np.float64), np.stack(energy),
    )  # fmt: skip


# ---- images -------------------------------------------------------------------------------------------------------
KINDS_HELP = "norm | pca | channel0, channel1, ... (the layer's top-variance channels, largest first)"


def map_rgb(maps: LayerMaps, kind: str, step: int, sample: int = 0) -> np.ndarray:
    """RGB floats in [0, 1], (F, H, W, 3), of one kind at position ``step`` of ``maps.steps``, with the layer's
    fixed colour scale (norm: viridis over the layer's norm range; channels: a diverging map symmetric about 0)."""
    if kind == "pca":
        return maps.pca[step, sample]
    if kind == "norm":
        lo, hi = maps.fit.norm_range
        v = (maps.norm[step, sample] - lo) / (hi - lo if hi > lo else 1.0)
        return matplotlib.colormaps["viridis"](np.clip(v, 0, 1))[..., :3]
    m = re.fullmatch(r"channel(\d+)", kind)
    if m and int(m.group(1)) < len(maps.fit.channels):
        c = int(m.group(1))
        v = 0.5 + 0.5 * maps.channel_maps[step, sample, c] / maps.fit.channel_absmax[c]
        return matplotlib.colormaps["RdBu_r"](np.clip(v, 0, 1))[..., :3]
    raise ValueError(
        f"unknown map kind {kind!r}; kinds: {KINDS_HELP} (this layer has {len(maps.fit.channels)} channels)"
    )


def kind_label(maps: LayerMaps, kind: str) -> str:
    if kind.startswith("channel"):
        return f"channel {int(maps.fit.channels[int(kind[7:])])}"
    return {"norm": "token L2 norm", "pca": "PCA (3 components as RGB)"}[kind]


def _grid_figure(images: list[list[np.ndarray]], row_labels: list[str], title: str) -> Figure:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here, after choosing Agg: at the top it would fix every importer's backend

    rows, cols = len(images), len(images[0])
    h, w = images[0][0].shape[:2]
    cell = 1.1
    fig, axes = plt.subplots(
        rows, cols, figsize=(cell * cols * max(w / h, 0.5) + 1.4, cell * rows + 0.7), squeeze=False
    )
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(images[r][c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_layer_frame_grid(layers: Sequence[LayerMaps], step: int, kind: str = "norm", sample: int = 0,
                          path: str | Path | None = None) -> Figure:  # fmt: skip
    """Rows: layers; columns: frames; at position ``step`` of each ``LayerMaps.steps``. Each row keeps its layer's
    colour scale (norms grow with depth)."""
    images = [list(map_rgb(m, kind, step, sample)) for m in layers]
    labels = [m.site.replace(".hook_", "\n") for m in layers]
    title = f"{kind} at step {int(layers[0].steps[step])}, sample {sample} (rows: layers, each its own scale)"
    fig = _grid_figure(images, labels, title)
    if path is not None:
        save_figure(fig, path, dpi=110)
    return fig


def plot_step_frame_grid(
    maps: LayerMaps, kind: str = "norm", sample: int = 0, path: str | Path | None = None
) -> Figure:
    """Rows: steps; columns: frames; one layer, one colour scale."""
    images = [list(map_rgb(maps, kind, s, sample)) for s in range(len(maps.steps))]
    labels = [f"step {int(s)}" for s in maps.steps]
    extra = f" ({kind_label(maps, kind)})" if kind.startswith("channel") else ""
    fig = _grid_figure(images, labels, f"{kind}{extra} of {maps.site}, sample {sample} (rows: steps)")
    if path is not None:
        save_figure(fig, path, dpi=110)
    return fig


def plot_energy(layers: Sequence[LayerMaps], sample: int = 0, path: str | Path | None = None) -> Figure:
    """Per-frame energy: one panel per frame, a layer x step heatmap of log10 energy."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here, after choosing Agg: at the top it would fix every importer's backend

    e = np.stack([m.energy[:, sample] for m in layers])  # (L, S, F)
    f = e.shape[-1]
    fig, axes = plt.subplots(1, f, figsize=(2.2 * f + 1, 0.25 * len(layers) + 1.5), squeeze=False, sharey=True)
    lg = np.log10(np.maximum(e, 1e-30))
    for i in range(f):
        ax = axes[0, i]
        im = ax.imshow(lg[:, :, i], aspect="auto", vmin=lg.min(), vmax=lg.max(), cmap="magma", interpolation="nearest")
        ax.set_title(f"frame {i}", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.set_xticks(range(e.shape[1]), [str(int(s)) for s in layers[0].steps], fontsize=6)
    axes[0, 0].set_yticks(range(len(layers)), [m.site for m in layers], fontsize=6)
    fig.colorbar(im, ax=axes[0, -1], label="log10 energy")
    fig.suptitle(f"per-frame energy (mean squared token norm), sample {sample}", fontsize=9)
    if path is not None:
        save_figure(fig, path, dpi=110, bbox_inches="tight")
    return fig


def save_token_map_pngs(
    capture_path: str | Path,
    out_dir: str | Path,
    *,
    sites: str | Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    kinds: Sequence[str] = ("norm", "pca", "channel0"),
    sample: int = 0,
    branch: str | None = None,
    k: int = 3,
    max_fit_tokens: int = 4096,
) -> list[Path]:
    """PNG grids of a capture: per kind, layer x frame at each chosen step (default: first, middle, last) and
    step x frame at each layer, plus the per-frame energy. Returns the written paths."""
    import matplotlib.pyplot as plt  # here, not at the top: the figures below choose the Agg backend first

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with open_capture(capture_path, branch) as cache:
        names = per_token_sites(cache, sites)
        if not names:
            raise ValueError(f"{capture_path}: no per-token sites (pooled captures have no token maps)")
        layers = [layer_maps(cache, s, samples=[sample], k=k, max_fit_tokens=max_fit_tokens) for s in names]
    chosen = spread(len(layers[0].steps), 3) if steps is None else list(steps)
    for kind in kinds:
        for s in chosen:
            p = out / f"layers_x_frames_{kind}_step{int(layers[0].steps[s])}.png"
            plt.close(plot_layer_frame_grid(layers, s, kind, 0, p))
            written.append(p)
        for m in layers:
            p = out / f"steps_x_frames_{kind}_{m.site}.png"
            plt.close(plot_step_frame_grid(m, kind, 0, p))
            written.append(p)
    p = out / "energy.png"
    plt.close(plot_energy(layers, 0, p))
    return [*written, p]
