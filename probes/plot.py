"""Step x layer heatmaps of probe scores: one PNG per label (score, selectivity, minus baseline side by side)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from interp.report.save import save_figure


def _short(site: str) -> str:
    return site.replace("blocks.", "").replace(".hook_", " ").replace("hook_", "")


def heatmaps(results, out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/<label>.png`` for every label; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, r in results.labels.items():
        main = r.main
        panels = [(main, f"{main} (test)")]
        if "selectivity" in r.metrics:
            panels.append(("selectivity", "selectivity (- control task)"))
        if "minus_baseline" in r.metrics:
            panels.append(("minus_baseline", "minus random-weights baseline"))
        n_steps, n_sites = r.metrics[main].shape[1:]
        fig, axes = plt.subplots(
            1,
            len(panels),
            figsize=(1.2 + 0.35 * n_steps * len(panels) + 2 * len(panels), 1.5 + 0.28 * n_sites),
            squeeze=False,
        )
        for ax, (key, title) in zip(axes[0], panels):
            grid = r.metrics[key][0].T  # (sites, steps): layers on the vertical axis
            lo, hi = (
                (0.0, 1.0) if key == main else (-max(1e-3, np.nanmax(np.abs(grid))), max(1e-3, np.nanmax(np.abs(grid))))
            )
            im = ax.imshow(
                grid, aspect="auto", origin="lower", cmap="viridis" if key == main else "RdBu_r", vmin=lo, vmax=hi
            )
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("denoising step")
            ax.set_xticks(range(n_steps), [str(s) for s in results.steps], fontsize=7)
            ax.set_yticks(range(n_sites), [_short(s) for s in results.sites], fontsize=7)
            fig.colorbar(im, ax=ax, fraction=0.046)
        axes[0][0].set_ylabel("site")
        fig.suptitle(f"probe: {name} ({r.label.kind}, {r.label.level})", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{name.replace('/', '_')}.png"
        save_figure(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
