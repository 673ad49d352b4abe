"""Per-step x0 filmstrips: rows are denoising steps, columns are video frames (PNG), and a GIF over steps.

:func:`capture_filmstrip` draws them from a capture file: the VAE-decoded ``x0_video`` (the step lens) when the
capture has it, with the final decoded ``video`` as the last row; else x0 itself for pixel-space models; else x0's
first three latent channels (each scaled to its 1st-99th percentile). A stored scorer's ``success`` score (or, without
one, nothing) labels each row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from jaxtyping import UInt8
from PIL import Image, ImageDraw, ImageFont

Legend = Sequence[tuple[str, tuple[int, int, int]]]  # (what, RGB) of each colour a frame uses
VERDICT_RGB = {True: (0, 120, 0), False: (180, 0, 0), None: (0, 0, 0)}  # row labels and frames: solved / wrong / -

from interp.report.save import save_figure, save_image


def pick_steps(n_steps: int, rows: int) -> list[int]:
    """``rows`` step indices spread over ``range(n_steps)``, always including the first and the last."""
    if n_steps <= rows:
        return list(range(n_steps))
    return sorted({int(round(i)) for i in np.linspace(0, n_steps - 1, rows)})


def _verdict_text(v: bool | None) -> str:
    return "" if v is None else ("solved" if v else "wrong")


def _mathtext(label: str) -> str:
    """A row label for matplotlib: the Greek letters of the sampler's labels (sigma) drawn by mathtext."""
    return label.replace("σ", r"$\sigma$")


def gif_font(size: int = 11) -> ImageFont.FreeTypeFont:
    """The GIF's label font: matplotlib's DejaVu Sans (shipped with matplotlib; has sigma, unlike PIL's bitmap font)."""
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def filmstrip_png(
    videos: UInt8[np.ndarray, "steps frames h w 3"],
    path: str | Path,
    row_labels: Sequence[str],
    verdicts: Sequence[bool | None] | None = None,
    title: str = "",
    scale: int = 3,
    legend: Legend | None = None,
) -> Path:
    """A grid image (matplotlib): one row per step, one column per frame, the scorer's verdict beside each row.

    Below the grid, a legend: ``legend`` (what each colour of a frame means) and, with verdicts, the frame colours
    of a solved and a wrong row."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here, after choosing Agg: at the top it would fix every importer's backend

    videos = np.asarray(videos)
    s, f, h, w, _ = videos.shape
    verdicts = list(verdicts) if verdicts is not None else [None] * s
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.array(rgb) / 255, edgecolor="0.5", label=name) for name, rgb in legend or ()]
    if any(v is not None for v in verdicts):
        handles += [Patch(facecolor="none", edgecolor=np.array(VERDICT_RGB[v]) / 255, linewidth=1.5,
                          label=f"frame: scorer says {_verdict_text(v)}") for v in (True, False)]  # fmt: skip
    band = 0.45 if handles else 0.0  # inches under the grid for the legend
    fig, axes = plt.subplots(
        s, f, figsize=(1.1 * f * max(w, 24) / 24 + 1.2, 1.1 * s * max(h, 24) / 24 + 0.4 + band), squeeze=False
    )
    for r in range(s):
        for c in range(f):
            ax = axes[r, c]
            ax.imshow(videos[r, c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(_mathtext(row_labels[r]), fontsize=7, rotation=0, ha="right", va="center")
            if c == f - 1 and verdicts[r] is not None:
                colour = np.array(VERDICT_RGB[bool(verdicts[r])]) / 255
                ax.text(
                    1.05, 0.5, _verdict_text(verdicts[r]), transform=ax.transAxes, color=colour, fontsize=8, va="center"
                )
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(1.5)
    if title:
        fig.suptitle(title, fontsize=9)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=7, frameon=False)
    # leave the title and the legend their own bands (tight_layout alone lets them overlap the axes)
    top = 1 - 0.3 / fig.get_figheight() if title else 1
    fig.tight_layout(rect=(0, band / fig.get_figheight(), 1, top))
    try:
        return save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)


def filmstrip_gif(
    videos: UInt8[np.ndarray, "steps frames h w 3"],
    path: str | Path,
    row_labels: Sequence[str],
    verdicts: Sequence[bool | None] | None = None,
    scale: int = 3,
    ms_per_step: int = 250,
    legend: Legend | None = None,
) -> Path:
    """A GIF over steps: each GIF frame shows all video frames of one step's x0 side by side, labelled, with a
    colour legend (``legend``) along the bottom."""
    videos = np.asarray(videos)
    s, f, h, w, _ = videos.shape
    verdicts = list(verdicts) if verdicts is not None else [None] * s
    pad, band = 2, 16
    font = gif_font()
    width = f * (w * scale + pad) + pad
    key = []  # legend entries placed left to right, wrapping
    x, y = pad, 0
    for name, rgb in legend or ():
        step = 14 + int(font.getlength(name)) + 10
        if x + step > width and x > pad:
            x, y = pad, y + band
        key.append((x, y, name, rgb))
        x += step
    legend_h = (y + band) if key else 0
    images = []
    for r in range(s):
        canvas = Image.new("RGB", (width, h * scale + 2 * pad + band + legend_h), (255, 255, 255))
        for c in range(f):
            tile = Image.fromarray(videos[r, c]).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (pad + c * (w * scale + pad), pad + band))
        draw = ImageDraw.Draw(canvas)
        text = f"{row_labels[r]}  {_verdict_text(verdicts[r])}".strip()
        draw.text((pad, 1), text, fill=VERDICT_RGB[None if verdicts[r] is None else bool(verdicts[r])], font=font)
        y0 = h * scale + 2 * pad + band
        for kx, ky, name, rgb in key:
            draw.rectangle((kx, y0 + ky + 2, kx + 10, y0 + ky + 12), fill=tuple(rgb), outline=(128, 128, 128))
            draw.text((kx + 14, y0 + ky), name, fill=(0, 0, 0), font=font)
        images.append(canvas)
    durations = [ms_per_step] * (s - 1) + [ms_per_step * 6]
    return save_image(images[0], path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def capture_videos(cache, *, rows: int = 8, sample: int = 0) -> tuple[np.ndarray, list[str], list, str]:
    """(steps, frames, H, W, 3) uint8 of one sample of a capture (an :class:`~interp.store.ActivationCache`), the
    row labels, each row's verdict (the stored ``success`` score, else None) and a note saying what is drawn."""
    from interp.report.viewer import _pixel_video, latent_rgb

    scores = cache.scores or {}
    ok = (scores.get("x0") or {}).get("success")
    b = int(cache.file["x0"].shape[1]) if "x0" in cache.file else None
    if cache.x0_video is not None:
        lens = cache.x0_video_steps
        pos = pick_steps(len(lens), rows)
        videos = cache.file["x0_video"][pos, sample]
        labels = [f"step {lens[p]}" for p in pos]
        verdicts = [None if ok is None else bool(ok[p, sample]) for p in pos]
        if cache.video is not None:
            final = cache.file["video"][sample]
            if final.shape == videos.shape[1:]:  # not when the lens was downscaled
                videos = np.concatenate([videos, final[None]])
                labels.append("final")
                vf = (scores.get("video") or {}).get("success")
                verdicts.append(None if vf is None else bool(vf[sample]))
        return videos, labels, verdicts, "x0 decoded by the pipeline's VAE (x0_video)"
    if b is None:
        raise ValueError(f"{cache.path}: no x0 and no x0_video to draw")
    n = int(cache.file["x0"].shape[0])
    pos = pick_steps(n, rows)
    x0 = cache.file["x0"][pos, sample]  # (S, C, F, H, W)
    meta = cache.task_meta or {}
    pixel = bool(meta.get("pixel_space"))
    videos = _pixel_video(x0) if pixel else latent_rgb(x0)
    steps_ok = ok is not None and (scores.get("steps") or []) == list(range(n))
    verdicts = [bool(ok[p, sample]) if steps_ok else None for p in pos]
    note = "x0 (pixel space: the predicted video)" if pixel else "x0 latent: channels 0-2 as RGB (no x0_video stored)"
    return videos, [f"step {p}" for p in pos], verdicts, note


def capture_filmstrip(capture: str | Path, out: str | Path, *, rows: int = 8, sample: int = 0) -> list[Path]:
    """PNG and GIF filmstrips (``out.png``, ``out.gif``) of one sample of a capture file (see the module doc)."""
    from interp.store import load_cache

    with load_cache(capture) as cache:
        videos, labels, verdicts, note = capture_videos(cache, rows=rows, sample=sample)
    out = Path(out)
    return [filmstrip_png(videos, out.with_suffix(".png"), labels, verdicts, title=f"{note}, sample {sample}"),
            filmstrip_gif(videos, out.with_suffix(".gif"), labels, verdicts)]  # fmt: skip
