"""The arithmetic an experiment's model forwards run in: one name per mode (this module, free of torch so that the
experiment schema and the light commands import no model code); :func:`interp.trajectory.precision_context`
applies it.

- ``float32`` (the default): every forward in full float32, bit-exact against diffusers' pipelines;
- ``tf32``: float32 tensors, matrix products and convolutions on TensorFloat-32 tensor cores (CUDA only; a CPU runs
  float32 unchanged);
- ``bfloat16``: ``torch.autocast`` to bfloat16 around every forward (the weights stay float32; the scheduler's
  update and every stored value are float32).

Reduced precision changes the numbers slightly (a maze near a decision can flip): a run records its precision in
its cache key, and a result is only ever compared with runs of the same precision.

>>> from interp.trajectory import precision_context
>>> with precision_context("bfloat16", "cuda"):
...     run_batches()
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["float32", "tf32", "bfloat16"]
PRECISIONS: tuple[str, ...] = ("float32", "tf32", "bfloat16")
