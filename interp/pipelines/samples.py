"""A folder of VBVR-Bench-style samples as inputs: one sub-folder per sample (sorted by name), each with
``first_frame.png`` (the image-to-video input), ``prompt.txt`` (the instruction) and, optionally,
``final_frame.png`` (the expected last frame, for :func:`interp.scorers.final_frame`), ``ground_truth.mp4`` and
``instance.json`` (a suite task's ground truth, as ``interp tasks export`` writes it).

:func:`load_samples` checks the whole folder before anything runs: every problem (no such folder, no sample
folders, a missing or empty ``first_frame.png`` / ``prompt.txt``, an unreadable image, an ``instance.json`` that is
not a JSON object) is listed in one :class:`SampleError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("first_frame.png", "prompt.txt")
OPTIONAL = ("final_frame.png", "ground_truth.mp4", "instance.json")


class SampleError(ValueError):
    """A folder of samples that cannot be used: the message lists every problem."""


@dataclass(frozen=True)
class Sample:
    """One VBVR-Bench sample folder."""

    name: str
    dir: Path
    prompt: str
    first_frame: Path
    final_frame: Path | None = None
    ground_truth: Path | None = None
    instance: dict | None = field(default=None, compare=False)

    def meta(self, index: int = 0) -> dict:
        """The scorer metadata of this sample (:mod:`interp.scorers`)."""
        m = {"index": index, "name": self.name, "prompt": self.prompt, "image": str(self.first_frame),
             "sample_dir": str(self.dir)}  # fmt: skip
        if self.final_frame is not None:
            m["final_frame"] = str(self.final_frame)
        if self.ground_truth is not None:
            m["ground_truth"] = str(self.ground_truth)
        if self.instance is not None:
            m["instance"] = self.instance
        return m


def _readable_image(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as e:  # noqa: BLE001 - reported as a problem of the sample
        return f"{path.name} is not a readable image ({type(e).__name__}: {e})"
    return None


def load_samples(root: str | Path) -> list[Sample]:
    """The samples of a VBVR-Bench-style folder, sorted by sub-folder name; one :class:`SampleError` listing every
    problem otherwise (see the module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise SampleError(f"samples folder {root} does not exist (or is not a folder)")
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise SampleError(f"samples folder {root} has no sample folders; each sample is a folder with "
                          f"{' and '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})")  # fmt: skip
    problems: list[str] = []
    samples: list[Sample] = []
    for d in dirs:
        missing = [f for f in REQUIRED if not (d / f).is_file()]
        if missing:
            problems.append(f"{d.name}: missing {', '.join(missing)}")
            continue
        mine = []
        prompt = (d / "prompt.txt").read_text(encoding="utf-8").strip()
        if not prompt:
            mine.append("prompt.txt is empty")
        for name in ("first_frame.png", "final_frame.png"):
            if (d / name).is_file() and (bad := _readable_image(d / name)):
                mine.append(bad)
        instance = None
        if (d / "instance.json").is_file():
            try:
                instance = json.loads((d / "instance.json").read_text())
            except json.JSONDecodeError as e:
                mine.append(f"instance.json is not JSON ({e})")
            else:
                if not isinstance(instance, dict):
                    mine.append(f"instance.json holds a {type(instance).__name__}, not an object")
        if mine:
            problems += [f"{d.name}: {p}" for p in mine]
            continue
        opt = {n: (d / n if (d / n).is_file() else None) for n in OPTIONAL}
        samples.append(Sample(d.name, d, prompt, d / "first_frame.png", opt["final_frame.png"],
                              opt["ground_truth.mp4"], instance))  # fmt: skip
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise SampleError(f"samples folder {root}: {len(problems)} problem(s) in {len(dirs)} sample folder(s):\n  "
                          + "\n  ".join(shown))  # fmt: skip
    return samples
