"""Loading: a built-in name, a transformer directory, a pipeline directory or a hub id -> :class:`LoadedModel`.

- transformer directory: ``config.json`` with ``_class_name`` (what ``save_pretrained`` writes);
- pipeline directory: ``model_index.json`` (or a ``transformer/`` subfolder), loading ``transformer/``, ``transformer_2/``
  when present (Wan2.2 two experts, switching at ``boundary_ratio`` from ``model_index.json``), ``scheduler/``, and
  ``interp.json`` (task metadata of models we train);
- hub id (``org/name``): resolved through huggingface_hub's cache (``snapshot_download``), then as above;
- built-in: ``tiny-{family}`` for every adapter family (``tiny-wan``, ``tiny-cogvideox``, ``tiny-ltx``,
  ``tiny-hunyuan``, ``tiny-wanvace``, ``tiny-skyreels``, ``tiny-mochi``, ``tiny-hunyuan15``, ``tiny-ltx2``: seeded
  random tiny configs) and the shipped models ``maze-wan``, ``maze-cogvideox`` (package data: ``interp/data/<name>``).

What ships with the package (:data:`BUILTINS`, the maze LM included, :func:`data_path`) is listed in
:mod:`interp.builtins`, which reads without model code; this module re-exports it and loads the DiTs
(``load_model("maze-lm")`` says to use :func:`interp.lm.model.load_lm`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import snapshot_download
from safetensors import SafetensorError
from torch import nn

from interp.adapters import ADAPTERS, Adapter, get_adapter
from interp.builtins import BUILTINS, EVAL_SETS, PAPER_DIR, SHIPPED_LMS, BuiltinModel, data_path, list_models

__all__ = ["BUILTINS", "EVAL_SETS", "PAPER_DIR", "SHIPPED_LMS", "BuiltinModel", "LoadedModel", "data_path",
           "list_models", "load_model", "resolve_path"]  # fmt: skip


EXPERTS = ("transformer", "transformer_2")
# what a hub snapshot needs: never the VAE or text encoder of a pipeline repo, never a pickled (.bin) checkpoint
HUB_PATTERNS = ["model_index.json", "config.json", "interp.json", "diffusion_pytorch_model*.safetensors",
                "diffusion_pytorch_model.safetensors.index.json", *[f"{e}/*{x}" for e in EXPERTS
                for x in (".json", ".safetensors")], "scheduler/*.json"]  # fmt: skip
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # checkpoints that torch.load would unpickle


class ModelLoadError(ValueError):
    """A model directory that cannot be loaded as it is: a broken JSON file, pickled or missing weights, a weight
    file that is not safetensors, or weights that do not match the config exactly."""


def read_json(path: Path) -> dict:
    """A JSON file of a model directory, with a one-line error naming the file when it is not valid JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_weight_files(path: Path) -> None:
    """Refuse a model folder whose weights are only pickled checkpoints (never unpickled), or that has none."""
    files = [p.name for p in Path(path).iterdir() if p.is_file()]
    if any(f.endswith(".safetensors") for f in files):
        return
    pickled = [f for f in files if f.endswith(PICKLED)]
    if pickled:
        raise ModelLoadError(f"{path}: weights {', '.join(sorted(pickled))} are a pickled checkpoint, which interp "
                             "never loads (unpickling runs code); convert it to safetensors: "
                             "model.save_pretrained(dir, safe_serialization=True)")  # fmt: skip
    raise ModelLoadError(f"{path}: no weights (*.safetensors); it has: {', '.join(sorted(files)) or 'nothing'}")


def from_pretrained(cls, path: Path, *, strict: bool = True, **kwargs) -> nn.Module:
    """``cls.from_pretrained(path)`` (a diffusers model) from safetensors only; with ``strict`` the checkpoint must
    match the config exactly (no missing, unused or mis-shaped weights), else :class:`ModelLoadError`."""
    check_weight_files(path)
    level = diffusers_logging.get_verbosity()
    if strict:  # diffusers' warning about unused / new weights: the error below says it
        diffusers_logging.set_verbosity_error()
    try:
        model, info = cls.from_pretrained(path, use_safetensors=True, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, TypeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path}: cannot load the {cls.__name__} weights (a truncated or corrupt safetensors "
                             f"file?): {first[:300]}") from None  # fmt: skip
    finally:
        diffusers_logging.set_verbosity(level)
    bad = {k: info.get(k) or [] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if strict and any(bad.values()):
        what = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {', '.join(map(str, v[:3]))})"
                         for k, v in bad.items() if v)  # fmt: skip
        raise ModelLoadError(f"{path}: the weights do not match config.json: {what}; fix config.json, or load "
                             "with load_model(..., strict=False) to accept it")  # fmt: skip
    return model


@dataclass
class LoadedModel:
    """Transformer(s), adapter and scheduler of one model.

    ``transformers`` maps expert names to modules in priority order: ``transformer`` runs at timesteps
    >= ``boundary_ratio * num_train_timesteps``, ``transformer_2`` below (diffusers' WanPipeline rule).
    """

    name: str
    adapter: Adapter
    transformers: dict[str, nn.Module]
    scheduler: Any
    boundary_ratio: float | None = None
    task: dict | None = None
    source: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def transformer(self) -> nn.Module:
        return next(iter(self.transformers.values()))

    @property
    def family(self) -> str:
        return self.adapter.family

    def expert_for(self, timestep: float) -> str:
        """Name of the expert that denoises at ``timestep``."""
        if len(self.transformers) == 1 or self.boundary_ratio is None:
            return next(iter(self.transformers))
        boundary = self.boundary_ratio * self.scheduler.config.num_train_timesteps
        return "transformer" if timestep >= boundary else "transformer_2"

    @cached_property
    def weight_hash(self) -> str:
        """sha256 over every expert's state dict (names, dtypes, shapes, bytes)."""
        h = hashlib.sha256()
        for expert, module in self.transformers.items():
            h.update(expert.encode())
            h.update(state_dict_hash(module).encode())
        return h.hexdigest()


def state_dict_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def default_scheduler(family: str):
    """The scheduler a bare transformer directory (no ``scheduler/``) is sampled with: its family's own
    parametrization, so x0 is right. CogVideoX is v-prediction DDIM (``CogVideoXDDIMScheduler`` as CogVideoX-2b
    ships it); Wan, LTX-Video and HunyuanVideo are flow matching (``FlowMatchEulerDiscreteScheduler``; their
    pipelines' shifts differ: pass ``shift``)."""
    if family == "cogvideox":
        from diffusers import CogVideoXDDIMScheduler

        return CogVideoXDDIMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear", beta_start=0.00085,
                                      beta_end=0.012, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                                      timestep_spacing="trailing", rescale_betas_zero_snr=True, snr_shift_scale=3.0)  # fmt: skip
    return FlowMatchEulerDiscreteScheduler()


def _scheduler_from_dir(path: Path):
    cfg = read_json(path / "scheduler_config.json")
    cls = getattr(diffusers, cfg.get("_class_name", ""), None)
    if cls is None:
        raise ValueError(f"{path}: unknown scheduler class {cfg.get('_class_name')!r}")
    return cls.from_pretrained(path)


def _transformer_from_dir(path: Path, device, dtype, device_map=None, strict=True) -> tuple[nn.Module, Adapter]:
    cfg = read_json(path / "config.json")
    try:
        adapter = get_adapter(cfg.get("_class_name", "<no _class_name>"))
    except ValueError as e:
        raise ModelLoadError(f"{path / 'config.json'}: {e}") from None
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    if device_map is not None:  # placed by diffusers / accelerate (hooks move activations between devices)
        return from_pretrained(
            adapter.model_class, path, strict=strict, device_map=device_map, **kwargs
        ).eval(), adapter
    model = from_pretrained(adapter.model_class, path, strict=strict, **kwargs)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval(), adapter


def _is_hub_id(s: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", s) is not None and not s.startswith((".", "/"))


def resolve_path(
    name_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> Path:
    """A local directory for a path or hub id (through the huggingface_hub cache)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    s = str(name_or_path)
    if _is_hub_id(s):
        if local_files_only is None:
            local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        return Path(
            snapshot_download(
                s,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                revision=revision,
                allow_patterns=HUB_PATTERNS,
            )
        )
    near = difflib.get_close_matches(s, list(BUILTINS), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    if s in SHIPPED_LMS:
        hint = f"; {s!r} is a language model: interp.lm.model.load_lm({s!r})"
    raise FileNotFoundError(
        f"no model {s!r}: not a built-in ({', '.join(BUILTINS)}), not an existing directory, not a hub id (org/name)"
        + hint
    )


def load_model(
    name_or_path: str | os.PathLike,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    device_map: str | dict | None = None,
    strict: bool = True,
) -> LoadedModel:
    """Load a video DiT by built-in name, local directory or hub id (same call for all).

    ``device_map`` (directories and hub ids; needs ``accelerate``): diffusers' placement of a model too large for one
    device, e.g. ``"balanced"`` over the visible GPUs or ``{"blocks.0": 0, ..., "proj_out": 1}``; ``device`` is then
    ignored. Tracing works across devices (each site's value lives on its block's device). Weights load from
    safetensors only (a pickled checkpoint is refused); ``strict``: they must match ``config.json`` exactly
    (:class:`ModelLoadError` naming the missing or unused weights; ``strict=False`` accepts them, as diffusers does).

    >>> m = load_model("tiny-wan")
    >>> m.family, list(m.transformers)
    ('wan', ['transformer'])
    """
    device = torch.device(device or "cpu")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    name = str(name_or_path)
    builtin = BUILTINS.get(name)
    if builtin is not None and builtin.is_lm:
        raise ValueError(
            f"{name!r} is a language model, not a video DiT: load it with interp.lm.model.load_lm({name!r}) "
            "(interp run, compare and probe take it by name)"
        )
    if builtin is not None and builtin.path is None:
        if device_map is not None:
            raise ValueError(f"device_map is for models loaded from a directory or hub id, not the built-in {name!r}")
        adapter = ADAPTERS[builtin.family]
        t = adapter.tiny(seed=0)
        t = t.to(device=device, dtype=dtype) if dtype else t.to(device)
        return LoadedModel(name, adapter, {"transformer": t}, FlowMatchEulerDiscreteScheduler(), source=name)
    if builtin is not None:
        if not builtin.available:
            raise FileNotFoundError(f"built-in {name!r} is not trained yet: {builtin.path} does not exist")
        path = builtin.path
    else:
        path = resolve_path(name_or_path, cache_dir, local_files_only, revision)

    if (path / "config.json").exists() and not (path / "transformer").is_dir():
        t, adapter = _transformer_from_dir(path, device, dtype, device_map, strict)
        return LoadedModel(name, adapter, {"transformer": t}, default_scheduler(adapter.family), source=str(path))

    index = read_json(path / "model_index.json") if (path / "model_index.json").exists() else {}
    if not (path / "transformer").is_dir():
        raise FileNotFoundError(
            f"{path}: neither a transformer directory (config.json) nor a pipeline directory (transformer/)"
        )
    transformers: dict[str, nn.Module] = {}
    adapter = None
    for expert in EXPERTS:
        sub = path / expert
        if sub.is_dir() and (index.get(expert, [None])[0] is not None or not index):
            transformers[expert], adapter = _transformer_from_dir(sub, device, dtype, device_map, strict)
    scheduler = (
        _scheduler_from_dir(path / "scheduler") if (path / "scheduler").is_dir() else default_scheduler(adapter.family)
    )
    task = read_json(path / "interp.json") if (path / "interp.json").exists() else None
    boundary = index.get("boundary_ratio")
    if len(transformers) == 2 and boundary is None:
        raise ValueError(f"{path}: two transformers but no boundary_ratio in model_index.json")
    return LoadedModel(name, adapter, transformers, scheduler, boundary, task, str(path))
