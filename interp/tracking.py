"""Weights & Biases run tracking, offline by default; a run never fails for lack of network or of wandb."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MODES = ("offline", "online", "disabled")
DEFAULT_MODE = "offline"


def resolve_mode(flag: str | None) -> str:
    """The W&B mode of a run: the ``--wandb`` flag if given, else ``WANDB_MODE`` from the environment (wandb's own
    variable: offline, online, disabled, or dryrun meaning offline), else offline."""
    if flag is not None:
        if flag not in MODES:
            raise ValueError(f"--wandb must be one of {', '.join(MODES)}, got {flag!r}")
        return flag
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "dryrun":
        return "offline"
    return env if env in MODES else DEFAULT_MODE


class Tracker:
    """A thin W&B run: ``log`` metrics, ``log_image`` figures, ``finish``. Falls back to a no-op."""

    def __init__(
        self, project: str, config: dict, mode: str = "offline", dir: str | Path | None = None, name: str | None = None
    ):
        if mode not in MODES:
            raise ValueError(f"wandb mode must be one of {MODES}, got {mode!r}")
        self.run = None
        if mode == "disabled":
            return
        # the environment variable (not only the init argument) stops wandb's telemetry lookups when offline
        os.environ.setdefault("WANDB_MODE", mode)
        if mode == "offline":
            os.environ["WANDB_MODE"] = "offline"
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        try:
            import wandb  # optional at run time: only when W&B logging is on (a slow import)

            kwargs: dict[str, Any] = dict(
                project=project, config=config, mode=mode, name=name, reinit="finish_previous"
            )
            if dir is not None:
                Path(dir).mkdir(parents=True, exist_ok=True)
                kwargs["dir"] = str(dir)
            self.run = wandb.init(**kwargs)
        except Exception as err:  # no wandb, no network, bad key: keep going without it
            print(f"[interp] W&B logging off: {type(err).__name__}: {err}")
            self.run = None

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_image(self, key: str, path: str | Path, step: int | None = None) -> None:
        if self.run is not None:
            import wandb  # optional at run time: only when W&B logging is on (a slow import)

            self.run.log({key: wandb.Image(str(path))}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
