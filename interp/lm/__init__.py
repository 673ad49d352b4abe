"""A TransformerLens language-model backend on the same mazes as the video DiTs.

- :mod:`interp.lm.tokens`: a maze as tokens (``<bos> size<n> <grid of (2n+1)^2 block tokens> <sep>``, then the
  solution as moves ``U D L R`` and ``<eos>``). One token per maze block, like the DiTs' one token per block.
- :mod:`interp.lm.model`: the model, a ``TransformerBridge.boot_native`` (TransformerLens 4.3), saved as safetensors.
- :mod:`interp.lm.train`: the trainer (``interp train experiments/train/maze-lm.yaml``, dispatched on ``kind: lm``).
- :mod:`interp.lm.run`: hooked forwards by TransformerLens' own site names, greedy decoding, held-out evaluation,
  captures for ``probes`` and :func:`~interp.lm.run.run_lm_experiment` (patch, skip, ablate, swap YAMLs).

Import cost: TransformerLens takes several seconds to import; only :mod:`interp.lm.model` and :mod:`interp.lm.run`
import it, lazily.
"""

from interp.lm.tokens import is_lm_path

__all__ = ["is_lm_path"]
