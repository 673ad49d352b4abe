"""What every intervention shares: index specs (steps, layers, frames, tokens), site patterns, row bindings.

An intervention is plain data (a pydantic model with a ``kind``) plus one apply function over tensors. A kind is one
subclass of :class:`Spec` (or :class:`SiteSpec`) declaring ``kind: Literal["name"] = "name"``: defining it registers
it (:data:`KIND_REGISTRY`), and the engine asks it, through the methods below, which clean runs it reads
(:meth:`Spec.reads`), how its rows bind (:meth:`Spec.bind_rows`), what it loads (:meth:`Spec.load_direction`) and
how it edits a site (:meth:`SiteSpec.edit`) or the latent (:meth:`Spec.edit_latent`); nothing else names kinds.

The apply functions see a site's value in a uniform layout, (batch, positions, features): tokens for residual-stream
sites, latent frames for ``hook_out`` and the latent itself (per-head attention sites keep their (batch, positions,
head, d_head); ``heads`` of ablate / patch narrows an edit to some heads, :func:`on_heads`). Which batch rows are
edited and which rows they read from is a :class:`Rows` binding, made by the experiment engine
(:mod:`interp.interventions.bind`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar, Union

from einops import rearrange
from jaxtyping import Float, Int
from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator, model_validator

from interp.sites import ATTN_MODULES, HEAD_SITE_RE, MOD_HOOKS, SITE_HELP, SITE_RE

if TYPE_CHECKING:  # annotations only
    from pathlib import Path

    from torch import Tensor

    from interp.trajectory import StepInput

SLICE_RE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)\s*)?$")
# depth fractions, so one file fits models of any depth: "50%" (one position) or "25%:75%" (a band)
PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s*(?::\s*(\d+(?:\.\d+)?)%\s*)?$")


def _check_index(v):
    if v is None or isinstance(v, bool):
        if isinstance(v, bool):
            raise ValueError("an index is an int, a list of ints or a slice string like '2:5'")
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, (list, tuple)):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            raise ValueError(f"an index list must hold ints, got {list(v)}")
        return list(v)
    if isinstance(v, str) and SLICE_RE.match(v):
        return v
    if isinstance(v, str) and (m := PERCENT_RE.match(v)):
        lo, hi = float(m.group(1)), m.group(2)
        if lo > 100 or (hi is not None and not lo < float(hi) <= 100):
            raise ValueError(f"a fraction index is 'p%' (0 <= p <= 100) or 'a%:b%' (0 <= a < b <= 100), got {v!r}")
        return v
    raise ValueError(
        f"an index is an int, a list of ints, a slice string like '2:5' or '-3:', or a fraction of the "
        f"axis like '50%' or '25%:75%', got {v!r}"
    )


Index = Annotated[Union[int, list[int], str, None], BeforeValidator(_check_index)]
"""int, list of ints, a Python slice string (``"10:20"``, ``"-5:"``, ``"::2"``) or a fraction of the axis (``"50%"``:
the position at half its length; ``"25%:75%"``: positions ``floor(0.25 n)`` to ``floor(0.75 n)``, at least one);
``None`` selects all."""


def resolve_index(spec: Index, n: int, what: str) -> list[int]:
    """Sorted, unique positions in ``range(n)`` selected by an index spec (negative numbers count from the end)."""
    if spec is None:
        return list(range(n))
    if isinstance(spec, str) and (m := PERCENT_RE.match(spec)):
        lo = min(int(float(m.group(1)) / 100 * n), n - 1)
        if m.group(2) is None:
            return [lo]
        return list(range(lo, max(lo + 1, min(int(float(m.group(2)) / 100 * n + 1e-9), n))))
    if isinstance(spec, str):
        a, b, c = SLICE_RE.match(spec).groups()  # type: ignore[union-attr]
        out = list(range(n))[slice(*(None if g is None else int(g) for g in (a, b, c)))]
        if not out:
            raise ValueError(f"{what} {spec!r} selects nothing of 0..{n - 1}")
        return out
    items = [spec] if isinstance(spec, int) else spec
    bad = [i for i in items if not -n <= i < n]
    if bad:
        raise ValueError(f"{what} {bad} outside 0..{n - 1}")
    return sorted({i % n for i in items})


KIND_REGISTRY: dict[str, type[Spec]] = {}
"""Every intervention kind defined so far, by its ``kind`` tag (filled as subclasses of :class:`Spec` are defined)."""


@dataclass(frozen=True)
class Read:
    """A clean run an edited row reads: the input ``offset`` places after the target's (cyclic, so 0 is the target's
    own input), with noise ``seed``; ``same_noise``: with the target's initial noise, else the read input's own."""

    offset: int
    seed: int
    same_noise: bool = True


class Spec(BaseModel):
    """Base of every intervention: a kind and the steps it acts at (``None``: every step).

    The defaults below describe a kind that reads no other run, edits only its own rows and loads nothing.
    """

    model_config = ConfigDict(extra="forbid")
    steps: Index = None

    source_metric: ClassVar[bool] = False  # metric mse_to_source compares with the run reads() names (patch, swap)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        """Registers a subclass that declares its own ``kind`` (subclasses inheriting one are not new kinds)."""
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("kind")
        kind = getattr(field, "default", None)
        if not isinstance(kind, str) or "kind" not in cls.__dict__.get("__annotations__", {}):
            return
        old = KIND_REGISTRY.get(kind)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"intervention kind {kind!r} is already defined by {old.__module__}.{old.__qualname__}")
        KIND_REGISTRY[kind] = cls

    @property
    def edits_latent(self) -> bool:
        """True: the kind edits the latent entering a step (:meth:`edit_latent`), not a site."""
        return False

    def reads(self, local: int, n: int, seed: int) -> list[Read]:
        """The clean runs an edited row of input ``local`` (of the group's ``n``) with noise ``seed`` reads."""
        return []

    def bind_rows(self, target: list[int], reads: list[list[int]]) -> Rows:
        """The :class:`Rows` binding of edited batch rows ``target``; ``reads[i]``: the batch rows of the runs
        :meth:`reads` names for ``target[i]``. Default: each target reads its first such run (if any) as source."""
        if reads and reads[0]:
            return Rows.of(target, source=[r[0] for r in reads])
        return Rows.of(target)

    def member_seeds(self, base: int) -> list[int] | None:
        """The noise seeds of the rows one unit runs together (an ensemble's members); None: one row, seed ``base``."""
        return None

    def load_direction(self, base_dir: str | Path | None = None) -> Tensor | None:
        """What the kind reads from files before any forward, handed to :meth:`SiteSpec.edit` as ``direction``."""
        return None

    def edit_latent(self, state: StepInput, rows: Rows, pos: Tensor | None, *, keys: list[int]) -> Tensor:
        """The edited latent entering step ``state.step`` (kinds whose :attr:`edits_latent` is True); ``pos``: the
        latent frames selected; ``keys``: per target row, its input index (seeds fresh noise)."""
        raise NotImplementedError(f"{type(self).__name__} does not edit the latent")


class SiteSpec(Spec):
    """An intervention at a site: ``site`` may hold ``{layer}``, filled from ``layers`` (``None``: every block).

    ``frames`` (latent frames, mapped to token frames by the patch size) and ``tokens`` (token indices, ordered
    frame, row, col) narrow the positions edited; both ``None``: all.
    """

    site: str = "blocks.{layer}.hook_resid_post"
    layers: Index = None
    frames: Index = None
    tokens: Index = None

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        if not SITE_RE.match(v):
            raise ValueError(f"unknown site pattern {v!r}; valid: {SITE_HELP}")
        return v

    @model_validator(mode="after")
    def _one_value_per_block(self) -> SiteSpec:
        if self.site.endswith(MOD_HOOKS) and (self.frames is not None or self.tokens is not None):
            raise ValueError(f"{self.site}: a modulation site holds one value for every token of the block; "
                             "frames and tokens cannot narrow it (leave them unset)")  # fmt: skip
        return self

    # True: ``site`` names blocks; edit() acts at each block's hook_resid_post and reads its hook_resid_pre (``skip``)
    reads_block_input: ClassVar[bool] = False

    def edit(self, value: Tensor, rows: Rows, pos: Tensor | None, *, direction=None,
             block_input: Tensor | None = None) -> Tensor:  # fmt: skip
        """The edited (batch, pos, d) ``value`` at the site: each kind implements its own (a new kind is one file)."""
        raise NotImplementedError(f"{type(self).__name__} does not edit a site")

    def sites(self, n_blocks: int) -> list[str]:
        """Concrete site names (globs stay globs; the tracer resolves them)."""
        if "{layer}" not in self.site:
            if self.layers is not None:
                raise ValueError(f"layers={self.layers!r} given but site {self.site!r} has no {{layer}} placeholder")
            return [self.site]
        return [self.site.format(layer=i) for i in resolve_index(self.layers, n_blocks, "layers")]


@dataclass
class Rows:
    """Batch rows an intervention edits and the rows it reads.

    target: rows edited; source: for each target the row read (patch, swap, resample); group: for each target the
    rows averaged (mean ablation: reference rows; ensemble: its members).
    """

    target: Int[Tensor, " n"]
    source: Int[Tensor, " n"] | None = None
    group: Int[Tensor, "n k"] | None = None

    @classmethod
    def of(cls, target: list[int], source: list[int] | None = None, group: list[list[int]] | None = None) -> Rows:
        """A :class:`Rows` from plain lists."""
        import torch  # torch loads on first use: validating an experiment file needs none (benchmarks/startup.py)

        t = lambda v: None if v is None else torch.tensor(v, dtype=torch.long)  # noqa: E731
        return cls(t(target), t(source), t(group))

    def to(self, device) -> Rows:
        """The same rows as index tensors on ``device``: indexing a device's tensor with host indices copies them
        there at every use, and a copy from pageable host memory waits for the device's queue (the host can no
        longer run ahead of it)."""
        mv = lambda v: None if v is None else v.to(device)  # noqa: E731
        return Rows(mv(self.target), mv(self.source), mv(self.group))


def positions(
    frames: Index, tokens: Index, grid: tuple[int, int, int], patch_t: int = 1, latent: bool = False
) -> Int[Tensor, " p"] | None:
    """Positions selected on a site's position axis (None: all). Token sites: tokens of the selected frames (latent
    frame ``f`` is token frame ``f // patch_t``) intersected with ``tokens``; latent sites: the frames."""
    import torch  # torch loads on first use: validating an experiment file needs none (benchmarks/startup.py)

    f, h, w = grid
    if latent:
        if tokens is not None:
            raise ValueError("tokens cannot select positions of a latent (hook_out or the latent itself); use frames")
        return None if frames is None else torch.tensor(resolve_index(frames, f, "frames"))
    if frames is None and tokens is None:
        return None
    keep = torch.ones(f * h * w, dtype=torch.bool)
    if frames is not None:
        fr = torch.tensor(sorted({i // patch_t for i in resolve_index(frames, f * patch_t, "frames")}))
        keep &= torch.isin(torch.arange(f * h * w) // (h * w), fr)
    if tokens is not None:
        tk = torch.zeros_like(keep)
        tk[resolve_index(tokens, f * h * w, "tokens")] = True
        keep &= tk
    return torch.nonzero(keep).flatten()


def as_positions(value: Tensor) -> tuple[Float[Tensor, "batch pos ..."], callable]:
    """A site value in (batch, positions, features) layout and the function that restores its layout (a per-head
    site's (batch, positions, head, d_head) stays as it is)."""
    if value.ndim in (3, 4):
        return value, lambda v: v
    if value.ndim == 5:  # latent layout (B, C, F, H, W): positions are frames
        b, c, f, h, w = value.shape
        return rearrange(value, "b c f h w -> b f (c h w)"), lambda v: rearrange(
            v, "b f (c h w) -> b c f h w", c=c, h=h, w=w
        )
    raise ValueError(f"cannot intervene on a value of shape {tuple(value.shape)}")


def put(
    value: Float[Tensor, "batch pos feat"], rows: Tensor, pos: Tensor | None, new: Float[Tensor, "n p feat"]
) -> Float[Tensor, "batch pos feat"]:
    """A copy of ``value`` with ``value[rows][:, pos]`` replaced by ``new`` (indices moved to ``value``'s device
    where they are elsewhere)."""
    out = value.clone()
    rows = rows.to(value.device)
    if pos is None:
        out[rows] = new.to(out.dtype)
    else:
        out[rows[:, None], pos.to(value.device)[None, :]] = new.to(out.dtype)
    return out


def take(value: Float[Tensor, "batch pos ..."], rows: Tensor, pos: Tensor | None) -> Float[Tensor, "n p ..."]:
    """``value[rows][:, pos]`` (rows may be 1-D or 2-D; any feature axes after the positions)."""
    v = value[rows.to(value.device)]
    return v if pos is None else v.index_select(rows.ndim, pos.to(v.device))


def check_heads(site: str, heads: Index) -> None:
    """``heads`` is for per-head sites only."""
    if heads is not None and not HEAD_SITE_RE.match(site):
        raise ValueError(
            "heads selects heads of a per-head site (blocks.{i}.attn.hook_q/k/v/z, blocks.{i}.attn2.hook_q/k/v/z, "
            f"LTX-2's blocks.{{i}}.{{{','.join(ATTN_MODULES[2:])}}}.hook_q/k/v/z), not {site!r}"
        )


def on_heads(value: Tensor, heads: Index, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn`` applied to the ``heads`` of a per-head value (batch, pos, head, d_head) only, the other heads kept;
    ``heads=None``: ``fn(value)``."""
    if heads is None:
        return fn(value)
    if value.ndim != 4:
        raise ValueError(f"heads needs a per-head value (batch, pos, head, d_head), got shape {tuple(value.shape)}")
    import torch  # torch loads on first use (see above)

    idx = torch.tensor(resolve_index(heads, value.shape[2], "heads"), dtype=torch.long, device=value.device)
    out = value.clone()
    out[:, :, idx] = fn(value[:, :, idx])
    return out
