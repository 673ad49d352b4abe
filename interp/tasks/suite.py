"""The organism's task suite: the shared frame geometry, seeding, held-out sets and the VBVR-Bench sample layout.

Every task of the suite draws on one canvas: ``FRAMES`` frames of ``SIZE`` x ``SIZE`` RGB pixels, laid out as a
``GRID`` x ``GRID`` grid of ``BLOCK`` x ``BLOCK`` pixel blocks. The organism's VAE compresses 4x in space and 4x in
time and its DiT patches 2x2 latents, so one DiT token is exactly one block of one latent frame (frames 0, 1-4, 5-8).

A task is a small object (one module per task, registered in :data:`TASKS`) with:

- ``name``, ``levels`` (difficulty settings, easiest first) and ``prompts`` (every prompt it can give);
- ``generate(level, rng) -> dict``: a JSON-able instance (must hold ``"task"`` and ``"level"``);
- ``prompt(instance) -> str``: the instruction the model reads;
- ``render(instance) -> uint8 (FRAMES, SIZE, SIZE, 3)``: the solution video; frame 0 is the input image;
- ``score(video, instance) -> dict[str, float]``: from the pixels of a generated video (and the instance's
  ground truth), ``"success"`` in {0, 1} plus partial scores in [0, 1];
- ``key(instance) -> bytes``: what makes two instances the same task (held-out rejection uses it).

Everything is seeded and pure: instance i of (task, level) in the held-out stream is always the same.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol

import imageio.v3 as iio
import numpy as np
from jaxtyping import UInt8

FRAMES = 9
SIZE = 96
BLOCK = 8
GRID = SIZE // BLOCK  # 12 blocks per side

# seed namespaces: training and held-out evaluation streams never share a seed
TRAIN_STREAM = 0x0A61
EVAL_STREAM = 0x0E7A
VALID_STREAM = 0x0A61 ^ 0xFFFF  # validation during training: neither train nor test

# one palette for the suite (RGB); the scorers classify pixels by the nearest palette colour
COLORS = {
    "wall": (20, 20, 20),
    "open": (235, 235, 235),
    "start": (40, 180, 60),
    "red": (220, 50, 50),
    "blue": (50, 90, 220),
    "trail": (250, 200, 30),
    "gray": (128, 128, 128),
    "purple": (150, 60, 190),
    "cyan": (40, 200, 210),
}


class Task(Protocol):
    name: str
    levels: tuple
    prompts: tuple[str, ...]

    def generate(self, level, rng: np.random.Generator) -> dict: ...

    def prompt(self, instance: dict) -> str: ...

    def render(self, instance: dict) -> UInt8[np.ndarray, "frames h w 3"]: ...

    def score(self, video: UInt8[np.ndarray, "frames h w 3"], instance: dict) -> dict[str, float]: ...

    def key(self, instance: dict) -> bytes: ...


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    _load_all()
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]


def _load_all() -> None:
    # the task modules register themselves on import; imported here (not at the top) because they import this module
    from interp.tasks import goalmaze, loopmaze, mirror, permanence  # noqa: F401


def task_id(name: str) -> int:
    """A stable small integer per task name, for seed sequences."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def level_index(task: Task, level) -> int:
    if level not in task.levels:
        raise ValueError(f"task {task.name!r} has no level {level!r}; levels: {list(task.levels)}")
    return list(task.levels).index(level)


def instance_rng(stream: int, task: Task, level, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([stream, task_id(task.name), level_index(task, level), seed, index])
    )


def heldout(task: Task, level, n: int, seed: int = 0) -> list[dict]:
    """The held-out instances 0..n-1 of (task, level): ``generate(level, rng(EVAL_STREAM, task, level, seed, i))``."""
    return [task.generate(level, instance_rng(EVAL_STREAM, task, level, seed, i)) for i in range(n)]


def experiment_instances(task: Task, level, n: int, seed: int = 0, pairs: bool = False) -> list[dict]:
    """The instances an experiment on (task, level) runs: held-out instances 0..n-1; with ``pairs`` (a task whose
    prompt chooses among answers of one image, goalmaze), then the same n images with the other prompt, so input
    ``i + n`` is input ``i`` with the other instruction and ``swap: {other: n}`` is the paper's prompt swap."""
    insts = heldout(task, level, n, seed)
    if pairs:
        flip = getattr(task, "flip", None)
        if flip is None:
            raise ValueError(f"task {task.name!r} has one prompt per image: pairs is for a task whose prompt chooses "
                             f"the answer ({', '.join(pair_tasks())})")  # fmt: skip
        insts = insts + [flip(i) for i in insts]
    return insts


def pair_tasks() -> list[str]:
    """Tasks whose instances have a :meth:`flip` (the same image, the other prompt)."""
    _load_all()
    return sorted(n for n, t in TASKS.items() if hasattr(t, "flip"))


def heldout_keys(task: Task, n: int, seed: int = 0) -> frozenset[bytes]:
    return frozenset(task.key(inst) for level in task.levels for inst in heldout(task, level, n, seed))


def digest(task: Task, instances: list[dict]) -> str:
    h = hashlib.sha256()
    for inst in instances:
        h.update(json.dumps(inst, sort_keys=True).encode())
    return h.hexdigest()


def to_model_space(video: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> float32 in [-1, 1]."""
    return video.astype(np.float32) / 127.5 - 1.0


def nearest_color(pixels: np.ndarray, names: list[str]) -> np.ndarray:
    """Index into ``names`` of the palette colour nearest to each RGB pixel (last axis 3)."""
    pal = np.array([COLORS[n] for n in names], dtype=np.float32)
    d = ((pixels[..., None, :].astype(np.float32) - pal) ** 2).sum(-1)
    return d.argmin(-1)


def block_means(frame: UInt8[np.ndarray, "h w 3"], margin: int = 2) -> np.ndarray:
    """(GRID, GRID, 3) float: the mean colour of each block's centre (``margin`` pixels trimmed on each side)."""
    g = frame.reshape(GRID, BLOCK, GRID, BLOCK, 3)[:, margin : BLOCK - margin, :, margin : BLOCK - margin]
    return g.astype(np.float32).mean(axis=(1, 3))


def classify_blocks(frames: np.ndarray, names) -> np.ndarray:
    """Index into ``names`` of each block's nearest palette colour (its centre's mean): (GRID, GRID) for one frame
    (H, W, 3), (F, GRID, GRID) for a video (F, H, W, 3)."""
    frames, names = np.asarray(frames), list(names)
    if frames.ndim == 3:
        return nearest_color(block_means(frames), names)
    return np.stack([nearest_color(block_means(f), names) for f in frames])


def paint_blocks(blocks: np.ndarray) -> UInt8[np.ndarray, "h w 3"]:
    """(GRID, GRID, 3) uint8 block colours -> (SIZE, SIZE, 3) uint8 frame."""
    return np.repeat(np.repeat(blocks, BLOCK, axis=0), BLOCK, axis=1)


def write_vbvr_sample(out: Path, task: Task, instance: dict, name: str) -> Path:
    """One VBVR-Bench sample folder: ``first_frame.png``, ``prompt.txt``, ``final_frame.png``, ``ground_truth.mp4``
    (plus ``instance.json``, the task's own ground truth)."""
    video = task.render(instance)
    d = Path(out) / name
    d.mkdir(parents=True, exist_ok=True)
    iio.imwrite(d / "first_frame.png", video[0])
    iio.imwrite(d / "final_frame.png", video[-1])
    (d / "prompt.txt").write_text(task.prompt(instance) + "\n")
    (d / "instance.json").write_text(json.dumps(instance, sort_keys=True))
    iio.imwrite(d / "ground_truth.mp4", video, fps=4, codec="libx264", macro_block_size=1)
    return d


def write_vbvr(out: Path, task: Task, level, n: int, seed: int = 0) -> list[Path]:
    """The held-out samples of (task, level) in the VBVR-Bench layout, ``<out>/<task>_<level>_<i>/``."""
    return [
        write_vbvr_sample(out, task, inst, f"{task.name}_{level}_{i:04d}")
        for i, inst in enumerate(heldout(task, level, n, seed))
    ]
