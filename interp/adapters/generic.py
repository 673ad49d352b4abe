"""Block-level sites for any diffusers video transformer, without a copied forward.

:class:`GenericAdapter` finds a model's block lists (:func:`find_block_lists`: ``nn.ModuleList`` children of one
block class, in the order the model's ``forward`` uses them) and hooks each block's class with a subclass whose
``forward`` is
diffusers' own, called between two :class:`~interp.adapters.base.HookPoint` modules: ``hook_resid_pre`` on the
hidden-states argument and ``hook_resid_post`` on the hidden states the block returns (for a block returning a
tuple, the element that holds them). So every model gets ``hook_embed``, ``blocks.{i}.hook_resid_pre`` /
``hook_resid_post``, ``hook_out`` and block skip through the same nnsight trace as the exact adapters; sublayer
sites (``hook_attn_out``, ...) need an exact adapter.

Which argument and which returned element hold the hidden states comes from diffusers' own
``TransformerBlockRegistry`` where the block class is registered there, otherwise from the block's ``forward``:
the argument named ``hidden_states`` (else the first one) and the names in its ``return`` statements.

The generic call passes the latents as the model takes them (its own layout, e.g. (B, F, C, H, W) for CogVideoX-like
models) as ``hidden_states``, with ``timestep``, ``encoder_hidden_states`` and ``TextConditioning.extras`` as
keyword arguments, and returns the first output (the video prediction).
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from diffusers.hooks._helpers import TransformerBlockRegistry
from torch import Tensor, nn

from interp.adapters.base import Adapter, TextConditioning

GENERIC_HOOKS = ("hook_resid_pre", "hook_resid_post")
"""The block sites every generic block offers."""

VIDEO_SUFFIX = "Transformer3DModel"
"""diffusers names its video DiTs ``*Transformer3DModel``: the set the generic adapter covers."""

# Block lists the discovery would get wrong, named by hand (execution order). WanVACE's ``vace_blocks`` run on the
# control stream before the main blocks and feed them hints: they are not the residual stream.
BLOCK_LISTS: dict[str, tuple[str, ...]] = {
    "WanVACETransformer3DModel": ("blocks",),
}
HIDDEN_NAMES = ("hidden_states", "x", "hidden_state", "visual_embed")
BLOCK_WORDS = ("block", "layers")  # a block list's name has one of these (diffusers' names: blocks, transformer_blocks)


def video_transformer_classes() -> list[type[nn.Module]]:
    """Every video transformer class the installed diffusers exports (``*Transformer3DModel``), by name."""
    names = sorted(n for n in dir(diffusers) if n.endswith(VIDEO_SUFFIX))
    return [getattr(diffusers, n) for n in names]


def family_of(cls: type) -> str:
    """``MochiTransformer3DModel`` -> ``mochi``: the family name a generic adapter goes by."""
    return cls.__name__.removesuffix(VIDEO_SUFFIX).lower()


@dataclass(frozen=True)
class BlockSpec:
    """Where a block class keeps the hidden states: the argument and, for tuple returns, the element."""

    block: type[nn.Module]
    params: tuple[str, ...]  # forward's parameters after self
    hidden_arg: str
    returns: tuple[str | None, ...] | None  # names of the returned tuple's elements; None: returns one tensor
    index: int | None  # element holding the hidden states; None: the whole return value
    single: bool = False  # a tuple-returning forward that returns the hidden states alone in another branch

    @property
    def hidden_pos(self) -> int:
        return self.params.index(self.hidden_arg)

    def hidden_in(self, args: tuple, kwargs: dict) -> Any:
        return args[self.hidden_pos] if len(args) > self.hidden_pos else kwargs[self.hidden_arg]

    def map_input(self, args: tuple, kwargs: dict, fn) -> tuple[tuple, dict]:
        i = self.hidden_pos
        if len(args) > i:
            return (*args[:i], fn(args[i]), *args[i + 1 :]), kwargs
        return args, {**kwargs, self.hidden_arg: fn(kwargs[self.hidden_arg])}

    def output_index(self, out: Any) -> int | None:
        if not isinstance(out, (tuple, list)):
            return None
        if self.index is None:
            raise TypeError(f"{self.block.__name__} returned a {type(out).__name__}; expected a tensor")
        return self.index

    def map_output(self, out: Any, fn) -> Any:
        i = self.output_index(out)
        if i is None:
            return fn(out)
        return type(out)([*out[:i], fn(out[i]), *out[i + 1 :]])

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        """What the block returns as the identity: its inputs in the form of its output."""
        if self.returns is None or self.single:  # a forward with both forms is skipped as its single form
            return self.hidden_in(args, kwargs)
        bound = inspect.signature(self.block.forward).bind(None, *args, **kwargs)
        bound.apply_defaults()
        missing = [n for n in self.returns if n not in bound.arguments]
        if missing:
            raise ValueError(
                f"cannot skip a {self.block.__name__}: it returns {missing}, which are not among its inputs, so "
                "no identity of the block exists"
            )
        return tuple(bound.arguments[n] for n in self.returns)


def _return_names(fn) -> list[tuple[str | None, ...] | None]:
    """The ``return`` statements of a function (not of nested functions): a tuple of names (None where an element
    is not a plain name), or None for a single value."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    body = tree.body[0]
    found: list[tuple[str | None, ...] | None] = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return) and child.value is not None:
                v = child.value
                if isinstance(v, (ast.Tuple, ast.List)):
                    found.append(tuple(e.id if isinstance(e, ast.Name) else None for e in v.elts))
                else:
                    found.append(None)
            visit(child)

    visit(body)
    return found


@functools.cache
def block_spec(block: type[nn.Module]) -> BlockSpec:
    """Where ``block`` (a diffusers block class) takes and returns the hidden states."""
    params = tuple(inspect.signature(block.forward).parameters)[1:]
    meta = _registered(block)
    if meta is not None and meta.hidden_states_argument_name in params:
        hidden = meta.hidden_states_argument_name
    else:
        hidden = next((n for n in HIDDEN_NAMES if n in params), params[0] if params else None)
    if hidden is None:
        raise TypeError(f"{block.__name__}.forward takes no arguments: not a transformer block")
    returns = _return_names(block.forward)
    tuples = {r for r in returns if r is not None}
    if not tuples:
        return BlockSpec(block, params, hidden, None, None)
    if len(tuples) > 1:
        raise TypeError(f"{block.__name__}.forward returns tuples of different forms {sorted(map(str, tuples))}")
    (names,) = tuples
    if meta is not None and meta.return_hidden_states_index is not None:
        index = meta.return_hidden_states_index
    elif hidden in names:
        index = names.index(hidden)
    else:
        raise TypeError(f"{block.__name__}.forward returns {names}: none of them is its argument {hidden!r}")
    return BlockSpec(block, params, hidden, names, index, single=None in returns)


def _registered(block: type) -> Any:
    """diffusers' ``TransformerBlockMetadata`` for a block class, or None."""
    try:
        return TransformerBlockRegistry.get(block)
    except ValueError:
        return None


@functools.cache
def hooked_generic_class(base: type[nn.Module]) -> type[nn.Module]:
    """The hooked subclass of a diffusers block class: diffusers' forward between ``hook_resid_pre`` and
    ``hook_resid_post``. One class per base; its signature is the base forward's (diffusers' hooks read it)."""
    spec = block_spec(base)
    base_forward = base.forward

    def forward(self, *args, **kwargs):
        args, kwargs = spec.map_input(args, kwargs, self.hook_resid_pre)
        return spec.map_output(base_forward(self, *args, **kwargs), self.hook_resid_post)

    forward.__signature__ = inspect.signature(base_forward)  # type: ignore[attr-defined]
    forward.__doc__ = base_forward.__doc__
    return type(
        base.__name__,
        (base,),
        {
            "forward": forward,
            "HOOKS": GENERIC_HOOKS,
            "COPIED_FROM_SHA": None,  # nothing copied: diffusers' own forward runs
            "SPEC": spec,
            "__module__": __name__,
            "__qualname__": base.__qualname__,
            "__doc__": f"``{base.__name__}`` with ``hook_resid_pre`` / ``hook_resid_post`` around diffusers' forward.",
        },
    )


def _takes_hidden_states(block: nn.Module) -> bool:
    try:
        params = tuple(inspect.signature(type(block).forward).parameters)[1:]
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] not in ("args", "kwargs")


@functools.cache
def _forward_source(cls: type) -> str:
    try:
        return inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return ""


def find_block_lists(transformer: nn.Module) -> tuple[str, ...]:
    """Names of the block lists of a diffusers transformer, in the order its ``forward`` runs them.

    A block list is a non-empty ``nn.ModuleList`` child whose blocks are of one class with a ``forward`` taking an
    argument. Of those, lists named like blocks (``*block*``, ``*layers*``) win over side modules kept in lists (Wan
    Animate's face adapter, ConsisID's perceiver), and lists not named ``*text*`` over text-refiner stacks
    (Kandinsky); lists are ordered by where ``forward`` first names them (``self.<name>``), and a list the forward
    never names is left out. ``BLOCK_LISTS`` names them by hand where this would be wrong. Lists run in step
    (``zip(self.a, self.b)``, Latte) are interleaved by :meth:`GenericAdapter.blocks`.
    """
    cls_name = type(transformer).__name__
    if cls_name in BLOCK_LISTS:
        return BLOCK_LISTS[cls_name]
    lists = [
        name
        for name, m in transformer.named_children()
        if isinstance(m, nn.ModuleList) and len(m) and len({type(b) for b in m}) == 1 and _takes_hidden_states(m[0])
    ]
    named = [n for n in lists if any(w in n for w in BLOCK_WORDS)]
    lists = named or lists  # side modules in a list (a face adapter, a perceiver) are not blocks of the stream
    video = [n for n in lists if "text" not in n]
    lists = video or lists  # text blocks refine the prompt embeddings (Kandinsky): not the video stream
    src = _forward_source(type(transformer))
    pos = {n: m.start() for n in lists if (m := re.search(rf"self\.{re.escape(n)}\b", src))}
    if pos:
        lists = sorted(pos, key=pos.__getitem__)
    return tuple(lists)


def _interleaved(transformer: nn.Module, lists: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Groups of lists the forward runs in step (``zip(self.a, self.b)``: a[0], b[0], a[1], ...)."""
    src = _forward_source(type(transformer))
    groups: list[tuple[str, ...]] = []
    for m in re.finditer(r"zip\(\s*self\.(\w+)\s*,\s*self\.(\w+)\s*\)", src):
        if m.group(1) in lists and m.group(2) in lists:
            groups.append((m.group(1), m.group(2)))
    return groups


class GenericCallError(ValueError):
    """The generic call lacks an input the model's forward requires (user error: say which)."""


@functools.cache
def _required_params(cls: type) -> frozenset[str]:
    """Arguments of a model's forward that have no default."""
    params = list(inspect.signature(cls.forward).parameters.values())[1:]
    return frozenset(
        p.name
        for p in params
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


class GenericAdapter(Adapter):
    """Block-level sites for one diffusers video transformer class, with diffusers' own block forwards."""

    exact = False

    def __init__(self, model_class: type[nn.Module]):
        self._model_class = model_class
        self.class_name = model_class.__name__  # type: ignore[misc]
        self.family = family_of(model_class)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"GenericAdapter({self.class_name})"

    @property
    def model_class(self) -> type[nn.Module]:
        return self._model_class

    def tiny_config(self) -> dict[str, Any]:
        raise ValueError(f"{self.class_name} has no exact adapter, hence no tiny config; build it from its own config")

    def block_lists_of(self, transformer: nn.Module) -> tuple[str, ...]:
        return find_block_lists(transformer)

    def blocks(self, transformer: nn.Module) -> list[tuple[str, nn.Module]]:
        lists = self.block_lists_of(transformer)
        if not lists:
            raise ValueError(f"{type(transformer).__name__}: found no block list (an nn.ModuleList of blocks)")
        zipped = {g[0]: g for g in _interleaved(transformer, lists)}
        out: list[tuple[str, nn.Module]] = []
        for attr in lists:
            if attr in zipped:  # run in step: one of each, in turn
                group = [getattr(transformer, a) for a in zipped[attr]]
                for j in range(max(map(len, group))):
                    out += [(f"{a}.{j}", ml[j]) for a, ml in zip(zipped[attr], group) if j < len(ml)]
            elif not any(attr in g[1:] for g in zipped.values()):
                out += [(f"{attr}.{j}", b) for j, b in enumerate(getattr(transformer, attr))]
        return out

    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        cls = type(block)
        if getattr(cls, "HOOKS", None) == GENERIC_HOOKS and cls.__module__ == __name__:
            return cls
        return hooked_generic_class(cls)

    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        raise TypeError("the generic adapter's identity depends on the block: use block_passthrough(block, ...)")

    def block_passthrough(self, block: nn.Module, args: tuple, kwargs: dict) -> Any:
        spec = getattr(type(block), "SPEC", None) or block_spec(type(block))
        return spec.passthrough(args, kwargs)

    # ---- geometry (from the config's usual names; best effort for a class we know nothing else about) ----------
    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        c = transformer.config
        p = c.get("patch_size", 1)
        if isinstance(p, (tuple, list)):
            return (1, *p) if len(p) == 2 else tuple(p)  # type: ignore[return-value]
        return (c.get("patch_size_t") or 1, p, p)

    def d_model(self, transformer: nn.Module) -> int:
        c = transformer.config
        if c.get("num_attention_heads") and c.get("attention_head_dim"):
            return c.num_attention_heads * c.attention_head_dim
        for k in ("hidden_size", "model_dim", "inner_dim"):
            if c.get(k):
                return c[k]
        raise ValueError(f"{self.class_name}: cannot tell d_model from its config")

    def latent_channels(self, transformer: nn.Module) -> int:
        c = transformer.config
        return c.get("out_channels") or c.get("in_channels") or c.get("out_visual_dim")

    def model_in_channels(self, transformer: nn.Module) -> int:
        c = transformer.config
        return c.get("in_channels") or c.get("in_visual_dim")

    def text_dim(self, transformer: nn.Module) -> int:
        c = transformer.config
        for k in ("text_dim", "text_embed_dim", "caption_channels", "cross_attention_dim", "in_text_dim"):
            if c.get(k):
                return c[k]
        raise ValueError(f"{self.class_name}: cannot tell the text embedding width from its config")

    def default_extras(self, transformer, batch, text_len, generator) -> dict[str, Tensor]:
        """Random inputs for the usual extra arguments the model's forward requires: a text mask of ones
        (``encoder_attention_mask``) and N(0,1) ``pooled_projections``; anything else must come as extras."""
        required = _required_params(type(transformer))
        extras: dict[str, Tensor] = {}
        if "encoder_attention_mask" in required:
            extras["encoder_attention_mask"] = torch.ones(batch, text_len)
        if "pooled_projections" in required and transformer.config.get("pooled_projection_dim"):
            extras["pooled_projections"] = torch.randn(
                batch, transformer.config.pooled_projection_dim, generator=generator
            )
        return extras

    def forward(self, transformer, latents, timestep, text: TextConditioning, condition=None) -> Tensor:
        x = self.concat_condition(latents, condition)
        kwargs = dict(text.extras)
        if text.encoder_hidden_states is not None:  # a model without text (a super-resolution stage) takes none
            kwargs["encoder_hidden_states"] = text.encoder_hidden_states
        missing = sorted(_required_params(type(transformer)) - {"hidden_states", "timestep", *kwargs})
        if missing:
            raise GenericCallError(
                f"{type(transformer).__name__}.forward also needs {', '.join(missing)}, which the generic adapter "
                "does not make up: pass them as extras (TextConditioning.extras), or capture through its diffusers "
                "pipeline (interp capture --prompt ...)"
            )
        out = transformer(hidden_states=x, timestep=timestep, return_dict=False, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out  # a few models return the tensor itself
