"""The storage dtypes' names and their decoding, without torch (configs validate them, and ``interp view`` reads
captures, where no model code is imported); the encodings (on the capture's device) live in
:mod:`interp.store.codec`."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

STORAGE_DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3:token", "float8_e4m3:channel")
CODE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3:token": 1, "float8_e4m3:channel": 1}
"""Bytes per stored element of each storage dtype (the 8-bit ones' scales, one float32 per token or channel, apart)."""
SCALE_SUFFIX = ".scale"  # an 8-bit site's scales: the dataset beside it, named the site plus this


def check_dtype(name: str, where: str = "dtype") -> str:
    """``name`` when it is a storage dtype, else one ValueError naming the valid ones."""
    if name not in STORAGE_DTYPES:
        raise ValueError(f"{where}: unknown storage dtype {name!r}; valid: {', '.join(STORAGE_DTYPES)}")
    return name


def _e4m3fn_table() -> np.ndarray:
    """float32 value of each of the 256 float8 e4m3fn codes: sign, 4 exponent bits (bias 7), 3 mantissa bits, no
    infinities, 0x7f / 0xff NaN (never written: the encoder clamps to +-448)."""
    code = np.arange(256)
    sign = np.where(code & 0x80, -1.0, 1.0)
    exp, man = (code >> 3) & 0xF, code & 0x7
    value = np.where(exp == 0, man / 8 * 2.0**-6, (1 + man / 8) * 2.0 ** (exp - 7.0))
    value = np.where((exp == 0xF) & (man == 0x7), np.nan, value)
    return (sign * value).astype(np.float32)


_FP8_TABLE = _e4m3fn_table()


def decode(codes: np.ndarray, dtype: str, scale: np.ndarray | None = None) -> np.ndarray:
    """float32 values of stored ``codes`` (and ``scale``, broadcast against them, for 8-bit floats)."""
    if dtype == "float32":
        return np.asarray(codes, np.float32)
    if dtype == "float16":
        return codes.astype(np.float32)
    if dtype == "bfloat16":
        bits = codes.view(np.uint16) if codes.dtype == np.int16 else codes
        return (bits.astype(np.uint32) << 16).view(np.float32)
    check_dtype(dtype)
    if scale is None:
        raise ValueError(f"{dtype} values need their scale")
    return _FP8_TABLE[codes] * scale


def read_site(ds: h5py.Dataset, index: Any) -> np.ndarray:
    """float32 values of rows ``index`` of a site dataset, whatever its storage dtype (files written before storage
    dtypes: float32 or float16 as the dataset is)."""
    codes = ds[index]
    sd = ds.attrs.get("storage_dtype")
    if sd is None:
        return np.asarray(codes, np.float32)
    scale = ds.parent[ds.attrs["scale"]][index] if "scale" in ds.attrs else None
    return decode(codes, str(sd), scale)
