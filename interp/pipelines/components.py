"""Whole pipelines: every component a verb needs, loaded from the classes ``model_index.json`` names.

:func:`load_pipeline` takes a pipeline directory or a hub id (``org/name``) and returns a :class:`PipelineModel`:
a :class:`~interp.models.LoadedModel` (transformer(s), adapter, scheduler, ``boundary_ratio``: what
:func:`~interp.trajectory.run_trajectory` steps) that also carries the diffusers pipeline built from the loaded
components (tokenizer, text encoder, image encoder and processor, VAE), so prompts and images are encoded through
the pipeline's own ``encode_prompt`` / ``encode_image`` / ``video_processor`` / ``prepare_latents``
(:mod:`interp.pipelines.inputs`) and latents decoded through its VAE (:mod:`interp.pipelines.decode`).

Rules:
- only classes of the ``diffusers`` and ``transformers`` libraries, found by name in those packages (and in diffusers'
  own pipeline packages, as LTX-2's ``["ltx2", "LTX2TextConnectors"]``: :func:`library`); never
  ``trust_remote_code``, never a custom module; weights only as safetensors (``use_safetensors=True``);
- ``components``: the components to load (default: every one ``model_index.json`` lists); a component that is
  asked for but absent (``[null, null]`` or no subfolder) is one :class:`PipelineError` naming what is there;
- ``dtype`` and ``device``: one value for every model component, or a mapping component -> value (the others take
  ``"default"``'s, else float32 / cpu); tokenizers, processors and the scheduler have neither;
- ``text_encoder_offload``: ``"none"`` keeps the text and image encoders where they were loaded; ``"cpu"`` moves
  them to the CPU once the prompts are encoded; ``"release"`` drops them (a 14B pipeline in bf16 then denoises on
  one 80 GB GPU with the 11 GB UMT5 gone). :meth:`PipelineModel.release_encoders` does it.
- a hub snapshot downloads ``model_index.json`` first, then only the listed components' folders (configs,
  safetensors, tokenizer files): :func:`hub_patterns`.
"""

from __future__ import annotations

import gc
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import diffusers
import torch
import transformers
from huggingface_hub import snapshot_download
from torch import nn

from interp.adapters import get_adapter
from interp.models import EXPERTS, LoadedModel, _is_hub_id, check_weight_files, from_pretrained, read_json

Offload = Literal["none", "cpu", "release"]
LIBRARIES = {"diffusers": diffusers, "transformers": transformers}
# pipeline classes whose prompts / images interp encodes (interp.pipelines.inputs); others load but take no inputs
SUPPORTED_PIPELINES = (
    "WanPipeline",
    "WanImageToVideoPipeline",
    "CogVideoXPipeline",
    "CogVideoXImageToVideoPipeline",
    "LTXPipeline",
    "LTXImageToVideoPipeline",
    "HunyuanVideoPipeline",
    "SkyReelsV2Pipeline",
    "SkyReelsV2ImageToVideoPipeline",
    "WanVACEPipeline",
    "MochiPipeline",
    "HunyuanVideo15Pipeline",
    "HunyuanVideo15ImageToVideoPipeline",
    "LTX2Pipeline",
    "LTX2ImageToVideoPipeline",
)
OPTIONAL = ("transformer_2", "image_encoder", "image_processor")  # loaded when the pipeline has them
ENCODERS = ("text_encoder", "text_encoder_2", "image_encoder")
# components a pipeline class needs beyond tokenizer, text_encoder, vae, scheduler and transformer(s)
REQUIRED_BY_CLASS = {
    "HunyuanVideoPipeline": ("tokenizer_2", "text_encoder_2"),  # Llama + CLIP (pooled)
    "HunyuanVideo15Pipeline": ("tokenizer_2", "text_encoder_2", "guider"),  # Qwen2.5-VL + ByT5, its CFG guider
    "HunyuanVideo15ImageToVideoPipeline": ("tokenizer_2", "text_encoder_2", "guider", "image_encoder",
                                           "feature_extractor"),  # and SigLIP
    "LTX2Pipeline": ("connectors", "audio_vae", "vocoder"),  # text connectors; the audio latents' VAE and vocoder
    "LTX2ImageToVideoPipeline": ("connectors", "audio_vae", "vocoder"),
}  # fmt: skip


class PipelineError(ValueError):
    """A pipeline directory, component or input that interp cannot use; the message says what is valid."""


@dataclass
class PipelineModel(LoadedModel):
    """A :class:`LoadedModel` plus the diffusers pipeline built from the loaded components.

    ``pipeline`` is an instance of ``pipeline_class`` (e.g. ``WanImageToVideoPipeline``) whose components are the
    loaded ones (``None`` where not loaded); ``transformers`` / ``scheduler`` are the pipeline's own objects.
    """

    pipeline: Any = None
    pipeline_class: str = ""
    components: dict[str, Any] = field(default_factory=dict)
    offload: Offload = "none"

    @property
    def vae(self):
        return self.components.get("vae")

    def release_encoders(self) -> None:
        """Apply ``offload`` to the text and image encoders (after the prompts and images are encoded)."""
        if self.offload == "none":
            return
        for name in ENCODERS:
            module = self.components.get(name)
            if module is None:
                continue
            if self.offload == "cpu":
                module.to("cpu")
            else:
                self.components[name] = None
                setattr(self.pipeline, name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def read_index(path: Path) -> dict:
    f = path / "model_index.json"
    if not f.is_file():
        raise PipelineError(
            f"{path}: no model_index.json, so not a diffusers pipeline directory; prompts and images need a whole "
            "pipeline (save one with pipe.save_pretrained(dir)); a transformer directory takes random inputs only"
        )
    return read_json(f)


def listed_components(index: dict) -> dict[str, tuple[str | None, str | None]]:
    """Component name -> (library, class) as ``model_index.json`` lists them (``(None, None)``: absent)."""
    return {k: tuple(v) for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2}


def present_components(index: dict) -> list[str]:
    return [k for k, (lib, cls) in listed_components(index).items() if lib is not None and cls is not None]


def pipeline_class(index: dict, where: str = "") -> type:
    name = index.get("_class_name")
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if cls is None or not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise PipelineError(f"{where}: model_index.json names pipeline class {name!r}, which is not a diffusers "
                            "pipeline class (custom pipelines are not loaded; with prompts, supported: "
                            f"{', '.join(SUPPORTED_PIPELINES)})")  # fmt: skip
    return cls


def library(lib) -> Any:
    """The module a ``model_index.json`` library name stands for: ``diffusers``, ``transformers``, or a diffusers
    pipeline package holding its own components (LTX-2's ``["ltx2", "LTX2TextConnectors"]`` is
    ``diffusers.pipelines.ltx2``, as diffusers resolves it); None for anything else."""
    if lib in LIBRARIES:
        return LIBRARIES[lib]
    if isinstance(lib, str) and lib.isidentifier() and lib in diffusers.pipelines._import_structure:
        return getattr(diffusers.pipelines, lib)
    return None


def component_class(name: str, entry: tuple, where: str = "") -> type:
    lib, cls_name = entry
    module = library(lib)
    if module is None:
        raise PipelineError(f"{where}: component {name!r} is of library {lib!r}; interp loads classes of "
                            f"{' and '.join(LIBRARIES)} (and diffusers' own pipeline packages) only (never remote "
                            "code)")  # fmt: skip
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise PipelineError(f"{where}: component {name!r} names {lib}.{cls_name}, which {lib} "
                            f"{getattr(module, '__version__', '')} does not have")  # fmt: skip
    return cls


def hub_patterns(index: dict, components: list[str]) -> list[str]:
    """allow_patterns of a snapshot holding only ``components``: configs, safetensors and tokenizer files."""
    pats = ["model_index.json", "interp.json"]
    for c in components:
        pats += [f"{c}/*.json", f"{c}/*.safetensors", f"{c}/*.txt", f"{c}/*.model", f"{c}/*.tiktoken"]
    return pats


def needed_components(index: dict, path: Path | None = None) -> list[str]:
    """What capturing from prompts / images needs of this pipeline: every listed component that is present,
    checked against what the pipeline class requires (:class:`PipelineError` when one is missing)."""
    present = present_components(index)
    name = index.get("_class_name")
    required = ["tokenizer", "text_encoder", "vae", "scheduler", *REQUIRED_BY_CLASS.get(name, ())]
    if "transformer" in present or "transformer_2" not in present:
        required.append("transformer")
    missing = [c for c in required if c not in present]
    if path is not None:
        missing += [c for c in required if c in present and not (path / c).is_dir() and c not in missing]
    if missing:
        raise PipelineError(f"{path or name}: pipeline {name} lacks {', '.join(map(repr, missing))}, needed to "
                            f"encode prompts and decode video; it has: {', '.join(present) or 'nothing'}")  # fmt: skip
    return [c for c in present if c in required or c in OPTIONAL]


def _dtype(value, name: str) -> torch.dtype:
    v = value.get(name, value.get("default")) if isinstance(value, dict) else value
    if v is None:
        return torch.float32
    return getattr(torch, v) if isinstance(v, str) else v


def _device(value, name: str) -> torch.device:
    v = value.get(name, value.get("default")) if isinstance(value, dict) else value
    return torch.device(v or "cpu")


def load_component(path: Path, name: str, entry: tuple, dtype, device):
    cls = component_class(name, entry, str(path))
    sub = path / name
    if not sub.is_dir():
        raise PipelineError(f"{path}: model_index.json lists {name!r} ({entry[1]}) but there is no {name}/ folder")
    ours = entry[0] != "transformers"  # a diffusers class (of diffusers or one of its pipeline packages)
    if isinstance(cls, type) and issubclass(cls, nn.Module):
        kw = {"torch_dtype": dtype} if ours else {"dtype": dtype}
        if ours:  # safetensors only, weights matching the config exactly
            return from_pretrained(cls, sub, **kw).to(device).eval()
        check_weight_files(sub)
        return cls.from_pretrained(sub, use_safetensors=True, **kw).to(device).eval()
    if entry[0] == "transformers":
        return cls.from_pretrained(sub, trust_remote_code=False)
    return cls.from_pretrained(sub)


def resolve_pipeline(name_or_path: str | os.PathLike, components: list[str] | None, *, cache_dir=None,
                     local_files_only: bool | None = None, revision: str | None = None,
                     pipeline_classes: tuple[str, ...] | None = None) -> tuple[Path, dict, list[str]]:  # fmt: skip
    """(local directory, model_index, components to load); a hub id downloads only those components."""

    def check(index: dict, where) -> None:
        name = pipeline_class(index, str(where)).__name__
        if pipeline_classes is not None and name not in pipeline_classes:
            raise PipelineError(f"{where}: pipeline class {name} is not supported here; supported: "
                                f"{', '.join(pipeline_classes)}")  # fmt: skip

    from interp.models import BUILTINS

    b = BUILTINS.get(str(name_or_path))
    p = b.path if b is not None and b.path is not None else Path(name_or_path).expanduser()
    if b is not None and b.path is None:
        raise PipelineError(f"built-in {b.name!r} is a bare random transformer, not a pipeline; pipelines with "
                            f"prompts: a directory saved by pipe.save_pretrained, a hub id, or 'organism'")  # fmt: skip
    if p.exists():
        index = read_index(p)
        check(index, p)
        return p, index, components if components is not None else needed_components(index, p)
    s = str(name_or_path)
    if not _is_hub_id(s):
        raise FileNotFoundError(f"no pipeline {s!r}: not an existing directory, not a hub id (org/name)")
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    kw = dict(cache_dir=cache_dir, local_files_only=local_files_only, revision=revision)
    first = Path(snapshot_download(s, allow_patterns=["model_index.json", "interp.json"], **kw))
    index = read_index(first)
    check(index, s)
    comps = components if components is not None else needed_components(index)
    p = Path(snapshot_download(s, allow_patterns=hub_patterns(index, comps), **kw))
    return p, index, comps


def load_pipeline(
    name_or_path: str | os.PathLike,
    components: list[str] | None = None,
    *,
    dtype: torch.dtype | str | dict | None = None,
    device: torch.device | str | dict | None = None,
    text_encoder_offload: Offload = "none",
    pipeline_classes: tuple[str, ...] | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> PipelineModel:
    """Load a diffusers pipeline's components (see the module doc) and build the pipeline from them.

    ``pipeline_classes``: the pipeline classes the caller can use (e.g. :data:`SUPPORTED_PIPELINES` for prompt
    inputs); another class is refused before any weight is loaded or downloaded.

    >>> pm = load_pipeline("path/to/wan-pipeline", dtype={"transformer": "bfloat16", "vae": "float32"},
    ...                    device="cuda", text_encoder_offload="cpu")
    >>> pm.pipeline_class, list(pm.transformers)
    ('WanImageToVideoPipeline', ['transformer'])
    """
    if text_encoder_offload not in ("none", "cpu", "release"):
        raise PipelineError(f"text_encoder_offload={text_encoder_offload!r}; valid: none, cpu, release")
    path, index, comps = resolve_pipeline(name_or_path, components, cache_dir=cache_dir,
                                          local_files_only=local_files_only, revision=revision,
                                          pipeline_classes=pipeline_classes)  # fmt: skip
    cls = pipeline_class(index, str(path))
    listed = listed_components(index)
    present = present_components(index)
    absent = [c for c in comps if c not in present]
    if absent:
        raise PipelineError(f"{path}: pipeline {cls.__name__} has no {', '.join(map(repr, absent))}; "
                            f"it has: {', '.join(present)}")  # fmt: skip
    loaded = {c: load_component(path, c, listed[c], _dtype(dtype, c), _device(device, c)) for c in comps}
    init = {k: loaded.get(k) for k in listed}  # components not loaded stay None
    for k, v in index.items():  # pipeline config values (boundary_ratio, expand_timesteps, ...)
        if not k.startswith("_") and k not in listed:
            init[k] = v
    accepted = inspect.signature(cls.__init__).parameters
    pipe = cls(**{k: v for k, v in init.items() if k in accepted})
    task = read_json(path / "interp.json") if (path / "interp.json").exists() else None
    return pipeline_model(pipe, name=str(name_or_path), source=str(path), components=loaded,
                          boundary_ratio=index.get("boundary_ratio"), task=task,
                          text_encoder_offload=text_encoder_offload)  # fmt: skip


def pipeline_model(
    pipe,
    *,
    name: str,
    source: str | None = None,
    components: dict[str, Any] | None = None,
    boundary_ratio: float | None = None,
    task: dict | None = None,
    text_encoder_offload: Offload = "none",
) -> PipelineModel:
    """A :class:`PipelineModel` around a diffusers pipeline object: its transformer(s), the adapter of their family,
    its scheduler. ``components``: the loaded components (default: the pipeline's own ``components``, those not
    None); ``boundary_ratio``: default the pipeline config's (two experts need one)."""
    loaded = components if components is not None else {k: v for k, v in pipe.components.items() if v is not None}
    where = source or name
    experts = {e: loaded[e] for e in EXPERTS if loaded.get(e) is not None}
    if not experts:
        raise PipelineError(f"{where}: no transformer loaded (components: {', '.join(loaded)})")
    adapter = get_adapter(next(iter(experts.values())))
    boundary = boundary_ratio if boundary_ratio is not None else pipe.config.get("boundary_ratio")
    if len(experts) == 2 and boundary is None:
        raise PipelineError(f"{where}: two transformers but no boundary_ratio in model_index.json")
    scheduler = loaded.get("scheduler")
    if scheduler is None:
        raise PipelineError(f"{where}: no scheduler loaded (components: {', '.join(loaded)})")
    return PipelineModel(
        name=name, adapter=adapter, transformers=experts, scheduler=scheduler,
        boundary_ratio=boundary if len(experts) == 2 else None, task=task, source=source, pipeline=pipe,
        pipeline_class=type(pipe).__name__, components=loaded, offload=text_encoder_offload,
    )  # fmt: skip
