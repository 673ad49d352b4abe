"""What every intervention shares: index specs (steps, layers, frames, tokens), site patterns, row bindings.

An intervention is plain data (a pydantic model with a ``kind``) plus one apply function over tensors. The apply
functions see a site's value in a uniform layout, (batch, positions, features): tokens for residual-stream sites,
latent frames for ``hook_out`` and the latent itself. Which batch rows are edited and which rows they read from is
a :class:`Rows` binding, made by the experiment engine (:mod:`interp.interventions.bind`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, ClassVar, Union

import torch
from einops import rearrange
from jaxtyping import Float, Int
from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator
from torch import Tensor

from interp.sites import SITE_HELP, SITE_RE

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
    raise ValueError(f"an index is an int, a list of ints, a slice string like '2:5' or '-3:', or a fraction of the "
                     f"axis like '50%' or '25%:75%', got {v!r}")


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


class Spec(BaseModel):
    """Base of every intervention: a kind and the steps it acts at (``None``: every step)."""

    model_config = ConfigDict(extra="forbid")
    steps: Index = None


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

    reads_block_input: ClassVar[bool] = False  # True: edit() needs the block's hook_resid_pre (``skip``)

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


def positions(
    frames: Index, tokens: Index, grid: tuple[int, int, int], patch_t: int = 1, latent: bool = False
) -> Int[Tensor, " p"] | None:
    """Positions selected on a site's position axis (None: all). Token sites: tokens of the selected frames (latent
    frame ``f`` is token frame ``f // patch_t``) intersected with ``tokens``; latent sites: the frames."""
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


def as_positions(value: Tensor) -> tuple[Float[Tensor, "batch pos feat"], callable]:
    """A site value in (batch, positions, features) layout and the function that restores its layout."""
    if value.ndim == 3:
        return value, lambda v: v
    if value.ndim == 5:  # latent layout (B, C, F, H, W): positions are frames
        b, c, f, h, w = value.shape
        return rearrange(value, "b c f h w -> b f (c h w)"), lambda v: rearrange(v, "b f (c h w) -> b c f h w", c=c, h=h, w=w)
    raise ValueError(f"cannot intervene on a value of shape {tuple(value.shape)}")


def put(
    value: Float[Tensor, "batch pos feat"], rows: Tensor, pos: Tensor | None, new: Float[Tensor, "n p feat"]
) -> Float[Tensor, "batch pos feat"]:
    """A copy of ``value`` with ``value[rows][:, pos]`` replaced by ``new``."""
    out = value.clone()
    if pos is None:
        out[rows] = new.to(out.dtype)
    else:
        out[rows[:, None], pos[None, :]] = new.to(out.dtype)
    return out


def take(value: Float[Tensor, "batch pos feat"], rows: Tensor, pos: Tensor | None) -> Float[Tensor, "n p feat"]:
    """``value[rows][:, pos]`` (rows may be 1-D or 2-D)."""
    v = value[rows]
    return v if pos is None else v[..., pos, :]
