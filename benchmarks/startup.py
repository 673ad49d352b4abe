"""CPU seconds of the commands that should start fast, and whether they import model code.

Run: python -m benchmarks.startup [--repeat 3]

Each command runs as a subprocess (``python -m interp ...``); its CPU seconds (user + system, from
``resource.getrusage(RUSAGE_CHILDREN)``) are the best of ``--repeat`` runs; a second run under ``python -X importtime``
says which of diffusers, nnsight, torch and matplotlib it imported. Goal: < 1.5 s and no diffusers / nnsight for
``--help``, ``inspect``, ``view`` and YAML validation (``run --plan`` on a bad file). The inputs (a tiny capture, a
bad experiment file) are made first, in a temporary directory, and not timed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HEAVY = ("diffusers", "nnsight", "torch", "matplotlib")


def cpu_seconds(args: list[str], env: dict) -> tuple[float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = subprocess.run(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), rc


def imported(args: list[str], env: dict) -> list[str]:
    err = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True).stderr  # fmt: skip
    names = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in names]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    env = {**os.environ, "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run.h5"
        subprocess.run([sys.executable, "-m", "interp", "capture", "tiny-wan", "--steps", "2", "--out", str(run)],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        bad = tmp / "bad.yaml"
        bad.write_text("name: bad\nmodel: maze-wan\ninterventions:\n  - kind: skip\n    layer: 3\n")
        commands = {
            "interp --help": ["--help"],
            "interp models": ["models"],
            "interp inspect run.h5": ["inspect", str(run)],
            "interp view run.h5": ["view", str(run), "--out", str(tmp / "view")],
            "interp run bad.yaml --plan": ["run", str(bad), "--plan"],
            "python -c 'import interp.models'": None,  # for scale: what loading model code costs
        }
        print(f"{'command':<34}{'CPU s (best of ' + str(args.repeat) + ')':>20}  {'exit':>4}  imports")
        for name, cmd in commands.items():
            argv = ["-c", "import interp.models"] if cmd is None else ["-m", "interp", *cmd]
            runs = [cpu_seconds(argv, env) for _ in range(args.repeat)]
            best = min(r[0] for r in runs)
            heavy = imported(argv, env)
            print(f"{name:<34}{best:>20.2f}  {runs[0][1]:>4}  {', '.join(heavy) or '-'}")
    print(f"\n{os.cpu_count()} CPUs; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} (a busy machine "
          "inflates CPU seconds too)")  # fmt: skip


if __name__ == "__main__":
    main()
