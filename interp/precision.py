"""The arithmetic an experiment's model forwards run in: one name per mode, one context that applies it.

- ``float32`` (the default): every forward in full float32, bit-exact against diffusers' pipelines;
- ``tf32``: float32 tensors, matrix products and convolutions on TensorFloat-32 tensor cores (CUDA only; a CPU runs
  float32 unchanged);
- ``bfloat16``: ``torch.autocast`` to bfloat16 around every forward (the weights stay float32; the scheduler's
  update and every stored value are float32).

Reduced precision changes the numbers slightly (a maze near a decision can flip): a run records its precision in
its cache key, and a result is only ever compared with runs of the same precision.

>>> with precision_context("bfloat16", "cuda"):
...     run_batches()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["float32", "tf32", "bfloat16"]
PRECISIONS: tuple[str, ...] = ("float32", "tf32", "bfloat16")


@contextlib.contextmanager
def precision_context(precision: str, device: str | torch.device) -> Iterator[None]:
    """Run the body's forwards in ``precision`` on ``device``; the global TF32 flags are restored on exit."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "float32":
        yield
    elif precision == "tf32":
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    else:
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            yield
