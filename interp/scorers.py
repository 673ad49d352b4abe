"""Pluggable scorers: a decoded video plus its sample's metadata -> named float scores.

A scorer is any Python callable ``fn(video, meta) -> dict[str, float]``, named on the command line and in
experiment files as ``module:function`` (e.g. ``interp.scorers:final_frame`` or ``mypkg.score:reach_goal``);
:func:`resolve` imports it. The built-ins also have short names (:data:`BUILTINS`): ``final_frame``, ``maze``,
``suite`` and one per suite task (``goalmaze``, ``loopmaze``, ``mirror``, ``permanence``).

- ``video``: uint8 (frames, H, W, 3), one sample's decoded video (a step's decoded x0 or the final video);
- ``meta``: what is known about the sample, every key optional: ``index`` (position in the batch), ``prompt``,
  ``negative_prompt``, ``image`` (the given image file), ``first_frame`` (uint8 (H, W, 3): the given image at the
  video's size, or a task's conditioning frame), ``sample_dir`` (a VBVR-Bench sample folder), ``final_frame`` (a
  path or a uint8 (H, W, 3) array: the expected last frame), ``instance`` (a task instance dict), ``task_meta``.

A pipeline capture given image files fills ``sample_dir`` / ``final_frame`` / ``instance`` from the image's folder
when it is a VBVR-Bench sample (``first_frame.png`` beside ``final_frame.png`` and ``instance.json``).

Final-frame accuracy (``final_frame``): the video's last frame against the expected one, as VBVR-Bench scores it:
SSIM and PSNR over RGB with a data range of 255. scikit-image is not a dependency, so :func:`ssim` implements
scikit-image's default ``structural_similarity(a, b, channel_axis=-1, data_range=255)``: a 7x7 uniform window,
K1 = 0.01, K2 = 0.03, sample (N-1) covariances, the mean over the pixels whose window lies inside the image
(scikit-image's crop of 3 pixels per side), averaged over channels. PSNR is ``10 log10(255^2 / MSE)``, ``inf``
for identical frames. A reference of another size is resized to the video's (bilinear, PIL) before scoring.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

Scorer = Callable[[np.ndarray, dict], dict]

BUILTINS = {
    "final_frame": "interp.scorers:final_frame",
    "maze": "interp.scorers:maze",
    "suite": "interp.scorers:suite",
    "goalmaze": "interp.scorers:goalmaze",
    "loopmaze": "interp.scorers:loopmaze",
    "mirror": "interp.scorers:mirror",
    "permanence": "interp.scorers:permanence",
}
SPEC_HELP = f"a scorer is 'module:function' (e.g. interp.scorers:final_frame) or a built-in name {sorted(BUILTINS)}"


class ScorerError(ValueError):
    """A scorer that cannot be resolved or that returned something other than named float scores."""


def resolve(spec: str | Callable) -> Scorer:
    """The callable ``spec`` names: ``module:function`` (the function may be dotted: ``module:Class.method``), a
    built-in short name, or a callable (returned as it is). Anything else: one :class:`ScorerError` saying what."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ScorerError(f"scorer {spec!r}: {SPEC_HELP}")
    spec = BUILTINS.get(spec.strip(), spec.strip())
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ScorerError(f"scorer {spec!r}: no ':' between module and function (or an empty side); {SPEC_HELP}")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ScorerError(f"scorer {spec!r}: cannot import module {module_name!r} ({e}); {SPEC_HELP}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ScorerError(f"scorer {spec!r}: module {module_name!r} has no attribute {attr!r}; {SPEC_HELP}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ScorerError(
            f"scorer {spec!r}: {attr!r} in {module_name!r} is a {type(obj).__name__}, not a callable; {SPEC_HELP}"
        )
    return obj


def spec_name(spec: str | Callable) -> str:
    """The ``module:function`` a scorer is recorded under."""
    if callable(spec):
        return f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', repr(spec))}"
    return BUILTINS.get(spec.strip(), spec.strip())


def run_scorer(fn: Scorer, video, meta: dict, *, name: str = "scorer") -> dict[str, float]:
    """``fn(video, meta)`` with the video as uint8 (frames, H, W, 3), checked to return named numbers (bools and
    ints become floats)."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ScorerError(f"{name}: videos are uint8 (frames, H, W, 3); got shape {video.shape}")
    out = fn(video.astype(np.uint8, copy=False), dict(meta))
    if not isinstance(out, dict) or not out:
        raise ScorerError(f"{name} returned {type(out).__name__}; a scorer returns a non-empty dict of named floats")
    scores = {}
    for k, v in out.items():
        try:
            scores[str(k)] = float(v)
        except (TypeError, ValueError):
            raise ScorerError(f"{name} returned {k!r}: {v!r}, not a number") from None
    return scores


# ---- image metrics --------------------------------------------------------------------------------------------
def _windows(x: np.ndarray, win: int) -> np.ndarray:
    """Means over every win x win window lying inside the image (valid mode), per channel: (H-w+1, W-w+1, C)."""
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0), (0, 0))), axis=0), axis=1)
    s = c[win:, win:] - c[:-win, win:] - c[win:, :-win] + c[:-win, :-win]
    return s / (win * win)


def ssim(a, b, *, data_range: float = 255.0, win: int = 7) -> float:
    """SSIM of two (H, W, 3) (or (H, W)) images, as scikit-image's default ``structural_similarity`` (see the
    module doc): 7x7 uniform window, sample covariances, mean over the valid region and the channels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim of images of shapes {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if min(a.shape[:2]) < win:
        raise ValueError(f"ssim needs images of at least {win}x{win} pixels, got {a.shape[:2]}")
    n = win * win
    cov = n / (n - 1)
    ma, mb = _windows(a, win), _windows(b, win)
    vaa = cov * (_windows(a * a, win) - ma * ma)
    vbb = cov * (_windows(b * b, win) - mb * mb)
    vab = cov * (_windows(a * b, win) - ma * mb)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma**2 + mb**2 + c1) * (vaa + vbb + c2))
    return float(s.mean())


def psnr(a, b, *, data_range: float = 255.0) -> float:
    """``10 log10(data_range^2 / MSE)``; ``inf`` when the images are identical."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def _load_frame(ref, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if isinstance(ref, (str, Path)):
        path = Path(ref)
        if not path.is_file():
            raise ScorerError(f"final_frame: no file {path}")
        img = Image.open(path).convert("RGB")
    else:
        arr = np.asarray(ref)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ScorerError(f"final_frame: the reference frame is (H, W, 3) uint8; got shape {arr.shape}")
        if arr.shape[:2] == tuple(shape):
            return arr.astype(np.uint8)
        img = Image.fromarray(arr.astype(np.uint8))
    if img.size != (shape[1], shape[0]):
        img = img.resize((shape[1], shape[0]), Image.BILINEAR)
    return np.asarray(img, np.uint8)


# ---- built-in scorers -----------------------------------------------------------------------------------------
def final_frame(video: np.ndarray, meta: dict) -> dict[str, float]:
    """The last frame against ``meta["final_frame"]`` (a path or an array; else ``final_frame.png`` of
    ``meta["sample_dir"]``): ``ssim`` and ``psnr`` (dB)."""
    ref = meta.get("final_frame")
    if ref is None and meta.get("sample_dir") is not None:
        ref = Path(meta["sample_dir"]) / "final_frame.png"
    if ref is None:
        raise ScorerError("final_frame scorer: the sample has no final_frame (give a VBVR-Bench sample folder with "
                          "final_frame.png, or meta['final_frame'])")  # fmt: skip
    last = np.asarray(video)[-1]
    target = _load_frame(ref, last.shape[:2])
    return {"ssim": ssim(last, target), "psnr": psnr(last, target)}


def maze(video: np.ndarray, meta: dict) -> dict[str, float]:
    """The maze task's pixel scorer (:func:`interp.tasks.maze_score.score_video`), the conditioning frame from
    ``meta["first_frame"]`` (default: the video's own first frame)."""
    from interp.tasks.maze_score import score_video

    return {k: float(v) for k, v in score_video(video, meta.get("first_frame")).as_dict().items()}


def _instance(meta: dict, who: str) -> dict:
    inst = meta.get("instance")
    if inst is None and meta.get("sample_dir") is not None and (Path(meta["sample_dir"]) / "instance.json").is_file():
        inst = json.loads((Path(meta["sample_dir"]) / "instance.json").read_text())
    if isinstance(inst, str):
        inst = json.loads(inst)
    if not isinstance(inst, dict):
        raise ScorerError(f"{who} scorer: the sample has no task instance (meta['instance'], or instance.json in its "
                          "VBVR-Bench sample folder as `interp tasks export` writes it)")  # fmt: skip
    return inst


def suite(video: np.ndarray, meta: dict) -> dict[str, float]:
    """The suite task's own scorer, chosen by the instance's ``task`` field (:mod:`interp.tasks.suite`)."""
    from interp.tasks.suite import get_task

    inst = _instance(meta, "suite")
    if "task" not in inst:
        raise ScorerError(f"suite scorer: the instance has no 'task' field (keys: {sorted(inst)})")
    return {k: float(v) for k, v in get_task(inst["task"]).score(np.asarray(video), inst).items()}


def _task_scorer(name: str) -> Scorer:
    def score(video: np.ndarray, meta: dict) -> dict[str, float]:
        from interp.tasks.suite import get_task

        inst = _instance(meta, name)
        if inst.get("task", name) != name:
            raise ScorerError(f"{name} scorer given an instance of task {inst['task']!r}")
        return {k: float(v) for k, v in get_task(name).score(np.asarray(video), inst).items()}

    score.needs = ("instance", "sample_dir")
    score.__name__ = score.__qualname__ = name
    score.__doc__ = f"The suite's {name} scorer (``interp.tasks.{name}``) on ``meta['instance']``."
    return score


final_frame.needs = ("final_frame", "sample_dir")
suite.needs = ("instance", "sample_dir")


goalmaze = _task_scorer("goalmaze")
loopmaze = _task_scorer("loopmaze")
mirror = _task_scorer("mirror")
permanence = _task_scorer("permanence")


def sample_meta(image: str | Path | None) -> dict:
    """What a VBVR-Bench sample folder says about the sample whose first frame is ``image``: ``sample_dir``,
    ``final_frame`` (when ``final_frame.png`` is there) and ``instance`` (``instance.json``)."""
    if image is None:
        return {}
    d = Path(image).parent
    meta: dict = {}
    if (d / "final_frame.png").is_file():
        meta.update(sample_dir=str(d), final_frame=str(d / "final_frame.png"))
    if (d / "instance.json").is_file():
        meta.update(sample_dir=str(d), instance=json.loads((d / "instance.json").read_text()))
    return meta


def check_metas(fn: Scorer, metas: list[dict], *, name: str = "scorer") -> None:
    """Up-front check (before anything runs) that every sample has one of the metadata keys the scorer declares in
    its optional ``needs`` attribute (any one of them suffices)."""
    needs = tuple(getattr(fn, "needs", ()))
    if not needs:
        return
    missing = [m.get("index", i) for i, m in enumerate(metas) if not any(m.get(k) is not None for k in needs)]
    if missing:
        raise ScorerError(f"{name} needs {' or '.join(needs)} in each sample's metadata; samples {missing} have none "
                          "(give images from VBVR-Bench sample folders: first_frame.png beside final_frame.png / "
                          "instance.json)")  # fmt: skip


def score_videos(fn: Scorer, videos, metas: list[dict], *, name: str = "scorer") -> list[dict[str, float]]:
    """One score dict per sample of a (B, frames, H, W, 3) batch."""
    videos = np.asarray(videos)
    if len(metas) != len(videos):
        raise ScorerError(f"{name}: {len(videos)} videos but {len(metas)} metadata dicts")
    out = [run_scorer(fn, v, m, name=name) for v, m in zip(videos, metas)]
    keys = [sorted(s) for s in out]
    if any(k != keys[0] for k in keys):
        raise ScorerError(f"{name} returned different score names for different samples: {keys}")
    return out
