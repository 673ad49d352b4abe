"""Loading: a built-in name, a transformer directory, a pipeline directory or a hub id -> :class:`LoadedModel`.

- transformer directory: ``config.json`` with ``_class_name`` (what ``save_pretrained`` writes);
- pipeline directory: ``model_index.json`` (or a ``transformer/`` subfolder), loading ``transformer/``, ``transformer_2/``
  when present (Wan2.2 two experts, switching at ``boundary_ratio`` from ``model_index.json``), ``scheduler/``, and
  ``interp.json`` (task metadata of models we train);
- hub id (``org/name``): resolved through huggingface_hub's cache (``snapshot_download``), then as above;
- built-in: ``tiny-wan``, ``tiny-cogvideox``, ``tiny-ltx``, ``tiny-hunyuan`` (seeded random tiny configs) and
  the shipped models ``maze-wan``, ``maze-cogvideox`` (package data: ``interp/data/<name>``).

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
from huggingface_hub import snapshot_download
from torch import nn

from interp.adapters import ADAPTERS, Adapter, get_adapter
from interp.builtins import BUILTINS, EVAL_SETS, PAPER_DIR, SHIPPED_LMS, BuiltinModel, data_path, list_models

__all__ = ["BUILTINS", "EVAL_SETS", "PAPER_DIR", "SHIPPED_LMS", "BuiltinModel", "LoadedModel", "data_path",
           "list_models", "load_model", "resolve_path"]  # fmt: skip


EXPERTS = ("transformer", "transformer_2")
# what a hub snapshot needs: never the VAE or text encoder of a pipeline repo
HUB_PATTERNS = ["model_index.json", "config.json", "interp.json", "diffusion_pytorch_model*", "transformer/*",
                "transformer_2/*", "scheduler/*"]  # fmt: skip


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
    cfg = json.loads((path / "scheduler_config.json").read_text())
    cls = getattr(diffusers, cfg.get("_class_name", ""), None)
    if cls is None:
        raise ValueError(f"{path}: unknown scheduler class {cfg.get('_class_name')!r}")
    return cls.from_pretrained(path)


def _transformer_from_dir(path: Path, device, dtype, device_map=None) -> tuple[nn.Module, Adapter]:
    cfg = json.loads((path / "config.json").read_text())
    adapter = get_adapter(cfg.get("_class_name", "<no _class_name>"))
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    if device_map is not None:  # placed by diffusers / accelerate (hooks move activations between devices)
        return adapter.model_class.from_pretrained(path, device_map=device_map, **kwargs).eval(), adapter
    model = adapter.model_class.from_pretrained(path, **kwargs)
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
) -> LoadedModel:
    """Load a video DiT by built-in name, local directory or hub id (same call for all).

    ``device_map`` (directories and hub ids; needs ``accelerate``): diffusers' placement of a model too large for one
    device, e.g. ``"balanced"`` over the visible GPUs or ``{"blocks.0": 0, ..., "proj_out": 1}``; ``device`` is then
    ignored. Tracing works across devices (each site's value lives on its block's device).

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
        t, adapter = _transformer_from_dir(path, device, dtype, device_map)
        return LoadedModel(name, adapter, {"transformer": t}, default_scheduler(adapter.family), source=str(path))

    index = json.loads((path / "model_index.json").read_text()) if (path / "model_index.json").exists() else {}
    if not (path / "transformer").is_dir():
        raise FileNotFoundError(
            f"{path}: neither a transformer directory (config.json) nor a pipeline directory (transformer/)"
        )
    transformers: dict[str, nn.Module] = {}
    adapter = None
    for expert in EXPERTS:
        sub = path / expert
        if sub.is_dir() and (index.get(expert, [None])[0] is not None or not index):
            transformers[expert], adapter = _transformer_from_dir(sub, device, dtype, device_map)
    scheduler = (
        _scheduler_from_dir(path / "scheduler") if (path / "scheduler").is_dir() else default_scheduler(adapter.family)
    )
    task = json.loads((path / "interp.json").read_text()) if (path / "interp.json").exists() else None
    boundary = index.get("boundary_ratio")
    if len(transformers) == 2 and boundary is None:
        raise ValueError(f"{path}: two transformers but no boundary_ratio in model_index.json")
    return LoadedModel(name, adapter, transformers, scheduler, boundary, task, str(path))
