"""What a capture holds, read without torch (``interp inspect`` starts in well under a second)."""

from __future__ import annotations

import os

import h5py
import numpy as np

from interp.store.schema import CAPTURE, open_h5


def describe(path: str | os.PathLike, *, allow_partial: bool = False) -> dict:
    """What a capture holds: run attributes and, per branch, each dataset's shape, dtype and axes; a site stored in
    another dtype than its values' (:mod:`interp.store.codec`) shows both, e.g. ``uint8 (float8_e4m3:token)``."""
    with open_h5(path, CAPTURE, allow_partial=allow_partial) as f:
        out = {
            "attrs": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()},
            "datasets": [],
        }

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                dtype, storage = str(obj.dtype), obj.attrs.get("storage_dtype")
                if storage is not None and str(storage) != dtype:
                    dtype = f"{dtype} ({storage})"
                out["datasets"].append(
                    {"name": name, "shape": obj.shape, "dtype": dtype, "axes": obj.attrs.get("axes", "")}
                )

        f.visititems(visit)
    return out
