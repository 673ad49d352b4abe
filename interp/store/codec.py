"""Storage dtypes of captured activations: how a site's values are encoded on disk and decoded back to float32.

The one owner of the names, the byte sizes and the encodings (the writer, the readers and the cost estimates all
import them from here):

- ``float32``, ``float16``: stored as they are named.
- ``bfloat16``: HDF5 has no bfloat16, so its raw 16 bits are stored as ``uint16`` (2 bytes an element; decoded
  exactly, bit for bit, to the float32 torch's ``.float()`` gives; int16 bits on the device and across the copy).
- ``float8_e4m3:token`` / ``float8_e4m3:channel``: 8-bit floats (``torch.float8_e4m3fn``) stored as their ``uint8``
  codes, each vector scaled so its largest magnitude is the format's 448 (``scale = amax / 448``, float32, in a
  dataset ``<site>.scale`` beside the codes). ``token``: one scale per vector along the last axis (one per token of
  a (B, tokens, d) site); ``channel``: one scale per batch row and channel (the last axis), taken over the token
  axes (every axis between the batch and the last; a site with no such axis gets one scale per row).

Every site dataset carries ``storage_dtype`` (one of :data:`STORAGE_DTYPES`) and, for 8-bit floats, ``scale``
(the name of its scale dataset); readers call :func:`decode`. Encoding (:func:`encode`) is vectorized torch and
runs where the value is (the GPU in real use), before the device-to-host copy, so only the stored bytes cross PCIe.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from interp.store.dtypes import SCALE_SUFFIX, STORAGE_DTYPES, check_dtype, decode  # noqa: F401 -- re-exported

FP8_MAX = 448.0  # largest finite torch.float8_e4m3fn
_ELEM = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3:token": 1, "float8_e4m3:channel": 1}

DtypeSpec = str | Mapping[str, str]
_WILD = re.compile(r"\[[^\]]*\]|[*?]")  # the wildcards of a glob


def check_spec(spec: DtypeSpec) -> DtypeSpec:
    """A dtype spec: one storage dtype for every site, or ``{site glob: dtype}`` (the most specific match wins)."""
    if isinstance(spec, str):
        return check_dtype(spec)
    if not spec:
        raise ValueError("dtype: an empty mapping; give one dtype, or {site glob: dtype} such as "
                         "{'blocks.*.hook_resid_post': 'float8_e4m3:token', '*': 'float16'}")  # fmt: skip
    for pattern, name in spec.items():
        check_dtype(name, f"dtype[{pattern!r}]")
    return dict(spec)


def site_dtype(spec: DtypeSpec, site: str) -> str:
    """The storage dtype of ``site``: the spec itself, or the dtype of the most specific glob that matches it (the
    one with the most characters besides wildcards, so the mapping's order never matters; float32 when none
    matches). Two matching globs equally specific but of different dtypes are a ValueError."""
    if isinstance(spec, str):
        return spec
    matches = [(len(_WILD.sub("", p)), p, name) for p, name in spec.items() if fnmatch.fnmatchcase(site, p)]
    if not matches:
        return "float32"
    best = max(m[0] for m in matches)
    tied = {name: p for n, p, name in matches if n == best}
    if len(tied) > 1:
        raise ValueError(f"dtype: site {site!r} matches {sorted(tied.values())} equally, with different dtypes; "
                         "make one pattern more specific")  # fmt: skip
    return next(iter(tied))


def spec_attr(spec: DtypeSpec) -> str:
    """The spec as a root attribute: the name itself, or its mapping as JSON."""
    return spec if isinstance(spec, str) else json.dumps(dict(spec))


def is_fp8(dtype: str) -> bool:
    return dtype.startswith("float8_e4m3")


def scale_dims(ndim: int, dtype: str) -> tuple[int, ...]:
    """The axes a value of ``ndim`` axes is reduced over for one scale (:mod:`interp.store.codec`'s doc)."""
    if dtype == "float8_e4m3:channel" and ndim > 2:
        return tuple(range(1, ndim - 1))
    return (ndim - 1,)


def scale_shape(shape: Sequence[int], dtype: str) -> tuple[int, ...]:
    dims = scale_dims(len(shape), dtype)
    return tuple(1 if i in dims else int(n) for i, n in enumerate(shape))


def encode(x: Tensor, dtype: str) -> tuple[Tensor, Tensor | None]:
    """``(codes, scale)`` of one value as stored, computed on ``x``'s device: codes in the dataset's dtype
    (float32, float16, uint16 bits of bfloat16, uint8 codes of e4m3), scale (float32, the value's shape with the
    reduced axes kept as 1) for 8-bit floats, else None."""
    if dtype == "float32":
        return x.float(), None
    if dtype == "float16":
        return x.to(torch.float16), None
    if dtype == "bfloat16":  # int16 on the device (every CUDA copy kernel has it), uint16 on disk (to_disk)
        return x.to(torch.bfloat16).view(torch.int16), None
    check_dtype(dtype)
    xf = x.float()
    amax = xf.abs().amax(dim=scale_dims(x.ndim, dtype), keepdim=True)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    codes = (xf / scale).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).view(torch.uint8)
    return codes, scale


def to_disk(codes: np.ndarray, dtype: str) -> np.ndarray:
    """Host codes as the dataset holds them: bfloat16's bits as uint16 (a view, no copy)."""
    return codes.view(np.uint16) if dtype == "bfloat16" and codes.dtype == np.int16 else codes


def nbytes(shape: Sequence[int], dtype: str) -> int:
    """Bytes one value of ``shape`` takes on disk in ``dtype`` (codes and, for 8-bit floats, scales)."""
    n = math.prod(shape) * _ELEM[check_dtype(dtype)]
    if is_fp8(dtype):
        n += 4 * math.prod(scale_shape(shape, dtype))
    return n
