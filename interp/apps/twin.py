"""The random-weights twin of a model: the same configuration, every weight re-initialised from a seed.

A twin is the control that ``interp probe --baseline`` reads: capture the twin on the same inputs as the model (the
twin keeps ``interp.json``, so task inputs are the same instances), and a probe's accuracy on the twin is what the
architecture and the inputs give without training. ``interp twin MODEL --out DIR`` writes a model directory that
loads wherever the model does:

- a DiT directory or pipeline: each transformer (``transformer/``, ``transformer_2/``, or a bare transformer
  directory) is built by its diffusers class from its own ``config.json`` under ``torch.manual_seed(seed + k)`` (the
  class's own initialisation), cast to the dtype of the stored weights and saved as safetensors; every other
  component (scheduler, VAE, text encoder, tokenizer, ``model_index.json``, ``interp.json``) is copied unchanged,
  the trained model's card, evaluation and training state are not;
- a tiny built-in: the adapter's tiny config with weights from ``seed``;
- the maze language model (``maze-lm`` or a directory of :func:`interp.lm.model.save_lm`): the same architecture
  built with ``seed`` (needs the ``[lm]`` extra).

``twin.json`` records the source and the seed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from interp.adapters import ADAPTERS, get_adapter
from interp.builtins import BUILTINS, safetensors_params
from interp.models import EXPERTS, default_scheduler, resolve_path
from interp.store.atomic import publish_dir, staging_dir

TRAINED_ONLY = ("MODEL_CARD.md", "eval.json", "train_state.json", "train_config.yaml", "vae_ceiling.json")
TWIN_FILE = "twin.json"


DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


def _stored_dtypes(folder: Path) -> dict[str, torch.dtype]:
    """Tensor name -> dtype of a transformer's stored weights (the safetensors headers; no tensor is read)."""
    out: dict[str, torch.dtype] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        out.update({k: DTYPES.get(v["dtype"], torch.float32) for k, v in header.items() if k != "__metadata__"})
    return out


def _reinit(folder: Path, out: Path, seed: int) -> None:
    """``folder`` (a diffusers transformer: config.json + weights) rebuilt from its config with seeded weights."""
    config = json.loads((folder / "config.json").read_text())
    cls = get_adapter(config.get("_class_name", "")).model_class  # a supported family only; never remote code
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls.from_config(cls.load_config(folder))
    dtypes = _stored_dtypes(folder)  # each tensor as the source stores it (bf16 weights, fp32 norms, ...)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name in dtypes and t.dtype != dtypes[name]:
                t.data = t.data.to(dtypes[name])
    model.save_pretrained(out, safe_serialization=True)


def make_twin(model: str, out: str | Path, seed: int = 0) -> Path:
    """Write the random-weights twin of ``model`` (built-in name, model directory or hub id) to ``out``."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another --out or delete it")
    builtin = BUILTINS.get(str(model))
    if builtin is not None and builtin.is_lm or _is_lm_dir(model):
        return _lm_twin(builtin.path if builtin is not None else Path(model), out, seed, str(model))
    tmp = staging_dir(out)
    try:
        if builtin is not None and builtin.path is None:  # tiny: the adapter's tiny config, seeded
            ADAPTERS[builtin.family].tiny(seed=seed).save_pretrained(tmp / "transformer", safe_serialization=True)
            default_scheduler(builtin.family).save_pretrained(tmp / "scheduler")
        else:
            src = builtin.path if builtin is not None else resolve_path(model)
            experts = [e for e in EXPERTS if (src / e / "config.json").is_file()]
            if not experts and not (src / "config.json").is_file():
                raise FileNotFoundError(f"{src}: no transformer/ folder and no config.json: not a diffusers model")
            for item in src.iterdir():
                if item.name in TRAINED_ONLY or item.name in experts:
                    continue
                if not experts and (item.name == "config.json" or item.suffix == ".safetensors"):
                    continue
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
            if experts:
                for k, e in enumerate(experts):
                    _reinit(src / e, tmp / e, seed + k)
            else:
                _reinit(src, tmp, seed)
        params = sum(safetensors_params(f) for f in tmp.rglob("*.safetensors") if f.parent.name in (*EXPERTS, tmp.name))
        (tmp / TWIN_FILE).write_text(json.dumps({"twin_of": str(model), "seed": seed, "parameters": params}, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish_dir(tmp, out)


def _is_lm_dir(model: str) -> bool:
    from interp.lm.tokens import LM_MARKER

    return (Path(model) / LM_MARKER).is_file()


def _lm_twin(src: Path, out: Path, seed: int, name: str) -> Path:
    from interp.lm.model import LMSpec, build_lm, save_lm  # optional dependency: transformer-lens, the [lm] extra
    from interp.lm.tokens import LM_MARKER

    arch = json.loads((src / LM_MARKER).read_text())["architecture"]
    spec = LMSpec(**{**arch, "seed": seed})
    path = save_lm(build_lm(spec), spec, out)
    (path / TWIN_FILE).write_text(json.dumps({"twin_of": name, "seed": seed}, indent=1))
    return path
