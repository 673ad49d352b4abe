"""Which diffusers video transformers interp covers, how, and which diffusers pipelines use each one.

The one owner of ``interp models``' coverage table: :func:`coverage_rows`. The pipelines come from the installed
diffusers' sources, read without importing them: a pipeline class uses a transformer class when an argument of its
``__init__`` named ``transformer*`` is annotated with it; a modular pipeline package when one of its blocks declares
``ComponentSpec(<name>, <class>)``.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch

from interp.adapters import EXACT, generic_adapter
from interp.adapters.attention import attention_of
from interp.adapters.generic import GENERIC_HOOKS, VIDEO_SUFFIX, family_of, video_transformer_classes
from interp.sites import ATTN_HOOKS, HOOK_ORDER, SUBLAYER_HOOKS


@dataclass(frozen=True)
class CoverageRow:
    family: str
    class_name: str
    kind: str  # "exact" (every sublayer site, copied block forwards) or "generic" (block-level sites)
    hooks: tuple[str, ...]  # block sites, in execution order
    pipelines: tuple[str, ...]  # diffusers pipeline classes (``pkg (modular)`` for modular pipeline packages)
    heads: tuple[str, ...] = ()  # attention modules with per-head sites (``attn``, ``attn2``), in execution order

    @property
    def head_sites(self) -> tuple[str, ...]:
        """The per-head sites below a block: ``attn.hook_q`` ... ``attn2.hook_z``."""
        return tuple(f"{n}.{h}" for n in self.heads for h in ATTN_HOOKS)

    @property
    def sites(self) -> str:
        """The sites in words: ``hook_embed, blocks.{i}.{...}, hook_out; skip ...``."""
        skip = "blocks.{i}" + (" and sublayers" if any(h in SUBLAYER_HOOKS for h in self.hooks) else "")
        heads = "".join(f"; per head blocks.{{i}}.{n}.hook_{{q,k,v,z}}" for n in self.heads)
        return f"hook_embed, blocks.{{i}}.{{{', '.join(self.hooks)}}}, hook_out{heads}; skip {skip}"


def _names(node: ast.AST) -> set[str]:
    return set(re.findall(r"\w+", ast.unparse(node)))


@functools.cache
def pipelines_by_transformer() -> dict[str, tuple[str, ...]]:
    """diffusers transformer class name -> the pipelines that take it as their ``transformer`` (sorted)."""
    root = Path(diffusers.__file__).parent
    found: dict[str, set[str]] = {}
    for f in sorted((root / "pipelines").rglob("*.py")):
        src = f.read_text(encoding="utf-8")
        if VIDEO_SUFFIX not in src:
            continue
        for cls in ast.parse(src).body:
            if not isinstance(cls, ast.ClassDef):
                continue
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                    for a in fn.args.args + fn.args.kwonlyargs:
                        if a.arg.startswith("transformer") and a.annotation is not None:
                            for n in _names(a.annotation):
                                found.setdefault(n, set()).add(cls.name)
    for f in sorted((root / "modular_pipelines").rglob("*.py")):
        src = f.read_text(encoding="utf-8")
        if VIDEO_SUFFIX not in src:
            continue
        for call in ast.walk(ast.parse(src)):
            if (
                isinstance(call, ast.Call) and getattr(call.func, "id", None) == "ComponentSpec" and len(call.args) >= 2
            ):  # its name may be a variable (MiniMax-H3: self.transformer_name): the class says it
                for n in _names(call.args[1]):
                    found.setdefault(n, set()).add(f"{f.parent.name} (modular)")
    return {k: tuple(sorted(v)) for k, v in found.items()}


def _exact_hooks(adapter) -> tuple[str, ...]:
    """The block sites of an exact adapter: the union over its hooked block classes (built on its tiny model)."""
    with torch.random.fork_rng(devices=[]):
        model = adapter.tiny(0)
    hooks = {h for _, b in adapter.blocks(model) for h in adapter.hooked_class(b).HOOKS}
    return tuple(h for h in HOOK_ORDER if h in hooks)


@functools.cache
def coverage_rows() -> tuple[CoverageRow, ...]:
    """One row per diffusers video transformer class (exact adapters first, in registry order, then the rest)."""
    pipes = pipelines_by_transformer()
    rows = [
        CoverageRow(a.family, a.class_name, _kind(a), _exact_hooks(a), pipes.get(a.class_name, ()), _heads(a))
        for a in EXACT
    ]
    exact = {a.class_name for a in EXACT}
    for cls in video_transformer_classes():
        if cls.__name__ not in exact:
            g = generic_adapter(cls)
            rows.append(CoverageRow(family_of(cls), g.class_name, _kind(g), GENERIC_HOOKS, pipes.get(cls.__name__, ())))
    return tuple(rows)


def _heads(adapter) -> tuple[str, ...]:
    """The attention modules of an exact adapter's blocks with per-head sites (``attn``, ``attn2``)."""
    return tuple(s.name for s in attention_of(adapter))


def _kind(adapter) -> str:
    return "exact" if adapter.exact else "generic"
