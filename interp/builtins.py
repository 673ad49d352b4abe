"""What ships with the package, readable without importing any model code (no torch, diffusers or nnsight).

:data:`BUILTINS` names every built-in model: the seeded tiny DiTs (one per adapter family, built from the adapter's
tiny config), the shipped DiTs and pipelines, and the shipped maze language model (``interp/data/<name>``, package
data). :class:`BuiltinModel` reads a shipped model's task, parameter count and card from its files alone (config
JSON and safetensors headers). :mod:`interp.models` loads them; every shipped file is found through
:func:`data_path` (``importlib.resources``), so an installed wheel works from any directory.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    """A file or directory of the package data (``interp/data/...``): shipped models, eval sets, paper files."""
    root = resources.files("interp") / "data"
    if not isinstance(root, Path):  # a zipped install: the loaders need real directories
        raise RuntimeError(f"interp's package data is not on the file system ({root!r}); install the package unzipped")
    return root.joinpath(*parts)


# the adapter families, in the registry's order (interp.adapters.ADAPTERS has one adapter for each; a test checks)
FAMILIES = ("wan", "cogvideox", "ltx", "hunyuan", "wanvace", "skyreels", "mochi", "hunyuan15", "ltx2")


def safetensors_params(path: Path) -> int:
    """Parameters stored in a safetensors file, from its JSON header alone (no tensor is read)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for name, info in header.items():
        if name != "__metadata__":
            count = 1
            for d in info["shape"]:
                count *= d
            total += count
    return total


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    family: str  # an adapter family, or "lm" (the TransformerLens maze language model, interp.lm)
    description: str
    path: Path | None = None  # None: built from the adapter's tiny config

    @property
    def available(self) -> bool:
        return self.path is None or self.path.is_dir()

    @property
    def is_lm(self) -> bool:
        return self.family == "lm"

    @property
    def card(self) -> Path | None:
        """The model card (``MODEL_CARD.md``), if the model ships one."""
        p = None if self.path is None else self.path / "MODEL_CARD.md"
        return p if p is not None and p.is_file() else None

    @property
    def task(self) -> str:
        """The task it was trained on (``interp.json`` / ``lm.json``: maze, suite), '-' for the random tiny ones."""
        if self.path is None:
            return "-"
        for meta in ("interp.json", "lm.json"):
            if (self.path / meta).is_file():
                return str(json.loads((self.path / meta).read_text()).get("task", "-"))
        return "-"

    @property
    def parameters(self) -> int | None:
        """Parameters of its denoiser (the transformer, or both experts; the LM's whole model), from the weight files'
        headers; None for the tiny ones (built in memory) or missing weights."""
        if self.path is None or not self.path.is_dir():
            return None
        files = sorted(self.path.glob("model.safetensors")) if self.is_lm else []
        for expert in ("transformer", "transformer_2"):
            files += sorted((self.path / expert).glob("*.safetensors"))
        return sum(safetensors_params(f) for f in files) if files else None


BUILTINS: dict[str, BuiltinModel] = {
    **{f"tiny-{fam}": BuiltinModel(f"tiny-{fam}", fam, "random weights (seed 0)")
       for fam in FAMILIES},
    # shipped models, one line each: the directory interp/data/<name>/ is package data (pyproject.toml ships
    # interp/data/** whole)
    "maze-wan": BuiltinModel("maze-wan", "wan", "Wan-architecture DiT trained to solve mazes", data_path("maze-wan")),
    "maze-cogvideox": BuiltinModel(
        "maze-cogvideox", "cogvideox", "CogVideoX-architecture DiT trained on the same mazes",
        data_path("maze-cogvideox"),
    ),
    "organism": BuiltinModel(
        "organism", "wan", "complete WanImageToVideoPipeline (UMT5, Wan VAE, 16-block DiT) trained on the task suite",
        data_path("organism"),
    ),
    "maze-lm": BuiltinModel(
        "maze-lm", "lm", "TransformerLens language model reading mazes as tokens (interp.lm.model.load_lm)",
        data_path("maze-lm"),
    ),
}  # fmt: skip
# the shipped maze language models (interp.lm), name -> directory written by interp.lm.model.save_lm
SHIPPED_LMS: dict[str, Path] = {n: b.path for n, b in BUILTINS.items() if b.is_lm}
EVAL_SETS = data_path("eval-sets")  # held-out sets pinned by digest (eval-sets/maze.json)
PAPER_DIR = data_path("paper")  # the paper's experiment files (interp reproduce)


def list_models() -> list[BuiltinModel]:
    return list(BUILTINS.values())
