"""The storage dtypes' names, without torch (configs validate them where no model code is imported); their
encodings live in :mod:`interp.store.codec`."""

from __future__ import annotations

STORAGE_DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3:token", "float8_e4m3:channel")
SCALE_SUFFIX = ".scale"  # an 8-bit site's scales: the dataset beside it, named the site plus this


def check_dtype(name: str, where: str = "dtype") -> str:
    """``name`` when it is a storage dtype, else one ValueError naming the valid ones."""
    if name not in STORAGE_DTYPES:
        raise ValueError(f"{where}: unknown storage dtype {name!r}; valid: {', '.join(STORAGE_DTYPES)}")
    return name
