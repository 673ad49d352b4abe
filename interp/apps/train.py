"""``interp train``: one training YAML -> the DiT trainer (:mod:`interp.train`) or, for ``kind: lm``, the maze
language model's (:mod:`interp.lm.train`). The dispatch lives here, above both, so neither trainer imports the other
(``interp.lm`` reuses :mod:`interp.train`'s run spec and checkpoint publishing; :mod:`interp.train` never imports
``interp.lm``).
"""

from __future__ import annotations

from interp import train as dit_train
from interp.lm import train as lm_train
from interp.yamlio import read_yaml


def main(config: str, overrides: list[str] | None = None) -> dict:
    """Train what ``config`` describes; returns the final train state."""
    if (read_yaml(config) or {}).get("kind") == "lm":  # the maze language model
        return lm_train.main(config, overrides)
    return dit_train.main(config, overrides)
