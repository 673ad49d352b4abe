"""How every figure and report file is written: atomically (:func:`interp.store.atomic.write_atomic`), so a kill
mid-write leaves the old file or none, never a truncated one, and a rerun redraws what is missing
(:func:`missing`)."""

from __future__ import annotations

from pathlib import Path

from interp.store.atomic import write_atomic


def save_figure(fig, path: str | Path, **savefig_kw) -> Path:
    """``fig.savefig(path, **savefig_kw)`` written atomically (the format from the suffix)."""
    path = Path(path)
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **savefig_kw))


def save_image(image, path: str | Path, **save_kw) -> Path:
    """A PIL image's ``save(path, **save_kw)`` written atomically (the format from the suffix)."""
    path = Path(path)
    fmt = {"jpg": "JPEG"}.get(path.suffix.lstrip(".").lower(), path.suffix.lstrip(".").upper() or "PNG")
    return write_atomic(path, lambda tmp: image.save(tmp, format=fmt, **save_kw))


def missing(*paths: str | Path) -> bool:
    """Whether any of ``paths`` is absent or empty (a figure to draw again)."""
    return any(not Path(p).is_file() or Path(p).stat().st_size == 0 for p in paths)
