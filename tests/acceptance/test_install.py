"""The package installs like a package: a built wheel, installed (not editable) into a fresh virtual environment,
runs `interp demo` and `interp reproduce --quick --only chain_of_steps` from a directory outside the checkout, with
the shipped models and the paper's experiment files read from the installed package data.

The fresh environment borrows the current environment's installed dependencies through a ``.pth`` line (a full
``pip install`` of torch, diffusers, nnsight, ... takes minutes); the wheel itself is installed with
``pip install --no-deps``, so ``interp`` comes from the wheel's files and its console script, never the checkout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
WHEEL_LIMIT_MB = 100

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, timeout=600) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin dir, clean env, work dir) of a fresh venv holding the wheel built from this checkout."""
    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    src = tmp / "src"  # build from a copy: setuptools' build/ and egg-info stay out of the checkout
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT).split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes((ROOT / f).read_bytes())
    # the build backend of this environment when it has one (no index needed), else pip's isolated build
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(wheels), str(src)], tmp)
    (wheel,) = wheels.glob("interp-*.whl")
    size_mb = wheel.stat().st_size / 2**20
    assert size_mb < WHEEL_LIMIT_MB, f"wheel is {size_mb:.1f} MB"
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "maze-wan/transformer/diffusion_pytorch_model.safetensors",
        "maze-wan/interp.json",
        "maze-cogvideox/interp.json",
        "maze-lm/lm.json",
        "eval-sets/maze.json",
        "paper/chain_of_steps.yaml",
    ):
        needed = f"interp/data/{needed}"
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    vpy = env_dir / "bin" / "python"
    site = Path(sysconfig.get_paths(vars={"base": str(env_dir), "platbase": str(env_dir)})["purelib"])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # nothing of the checkout
    _run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "-q", str(wheel)], tmp, env)
    # then the dependencies: this environment's site-packages, as a path line after the venv's own (the .pth files
    # there, such as an editable install of interp, are not processed from a path line); written after the install
    # so pip never sees this environment's interp
    (site / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp / "elsewhere"
    work.mkdir()
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}", WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    code = "import interp, interp.models as m; print(interp.__file__, m.data_path())"
    where = _run([str(vpy), "-c", code], work, env)
    for line in where.split():
        assert Path(line).resolve().is_relative_to(site.resolve()), f"{line} is not the installed copy ({site})"
    return env_dir / "bin", env, work


def test_installed_wheel_runs_the_demo(installed):
    bindir, env, work = installed
    out = _run([str(bindir / "interp"), "demo", "--out", "demo", "--n", "1", "--size", "3", "--steps", "4"], work, env)
    assert "solve rate" in out
    assert (work / "demo" / "samples.h5").is_file() and (work / "demo" / "filmstrip_0.png").is_file()


def test_installed_wheel_reproduces_chain_of_steps(installed):
    bindir, env, work = installed
    cmd = ["reproduce", "--quick", "--only", "chain_of_steps", "--out", "paper", "--threads", "1"]
    _run([str(bindir / "interp"), *cmd], work, env)
    assert (work / "paper" / "REPORT.md").is_file()
    numbers = json.loads((work / "paper" / "numbers.json").read_text())
    assert "chain_of_steps" in json.dumps(numbers)
