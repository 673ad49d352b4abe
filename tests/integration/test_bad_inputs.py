"""Bad input never becomes a traceback or a file: each case below runs the console entry point (``interp.cli.main``,
in-process for speed; one case also as a real subprocess) and must end with exit code 2, one short message holding
the expected fragment, and nothing written under ``--out``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from interp import cli
from interp.adapters import ADAPTERS
from interp.apps.capture import CaptureConfig, capture
from interp.experiments import Experiment, run_experiment

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _exp(name: str = "bad", **fields) -> dict:
    base = {"name": name, "model": "tiny-wan", "inputs": {"task": "random", "count": 1}, "sampler": {"steps": 2},
            "interventions": [{"kind": "skip", "layers": 0}], "metrics": ["mse"]}  # fmt: skip
    base.update(fields)
    return base


@pytest.fixture(scope="module")
def F(tmp_path_factory) -> Path:
    """Every bad file a case names, built once."""
    d = tmp_path_factory.mktemp("bad")
    ADAPTERS["wan"].tiny(0).save_pretrained(d / "tw")

    def variant(name: str, edit) -> None:
        shutil.copytree(d / "tw", d / name)
        edit(d / name)

    w = WEIGHTS
    variant("t_trunc", lambda p: os.truncate(p / w, (p / w).stat().st_size // 2))
    variant("t_zero", lambda p: os.truncate(p / w, 0))
    variant("t_corrupt", lambda p: (p / w).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage" + bytes(64)))
    variant("t_config", lambda p: (p / "config.json").write_text('{"_class_name": "WanTransformer3DModel",'))

    def fewer_layers(p: Path) -> None:
        cfg = json.loads((p / "config.json").read_text())
        (p / "config.json").write_text(json.dumps({**cfg, "num_layers": cfg["num_layers"] - 1}))

    variant("t_fewer", fewer_layers)

    def pickled(p: Path) -> None:
        sd = load_file(p / w)
        (p / w).unlink()
        torch.save(sd, p / "diffusion_pytorch_model.bin")

    variant("t_bin", pickled)
    (d / "t_meta").mkdir()
    shutil.copytree(d / "tw", d / "t_meta" / "transformer")
    (d / "t_meta" / "interp.json").write_text("{'task': maze}")

    capture(CaptureConfig(model="tiny-wan", steps=2, sites=["blocks.0.hook_resid_post"]), d / "good.h5")
    (d / "trunc.h5").write_bytes((d / "good.h5").read_bytes()[:3000])
    (d / "notes.h5").write_text("not hdf5\n")
    np.save(d / "strings.npy", np.array(["left"]))
    run_experiment(Experiment.model_validate(_exp(sweep={"interventions.0.layers": [0, 1]})), d / "res",
                   wandb="disabled", progress=False)  # fmt: skip

    def yml(name: str, text: str) -> None:
        (d / f"{name}.yaml").write_text(text)

    base = json.dumps(_exp())[1:-1]
    yml("dup", "name: a\nname: b\nmodel: tiny-wan\n")
    levels = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef"))
    yml("bomb", "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + levels + "name: *f\nmodel: tiny-wan\n")
    yml("deep", "model: tiny-wan\nsweep: " + "[" * 100 + "]" * 100 + "\n")
    yml("huge", "model: tiny-wan\n# " + "x" * (2 << 20) + "\n")
    yml("empty_sweep", "{" + base + ', "sweep": {"interventions.0.layers": []}}')
    yml("name_up", json.dumps(_exp("../outside")))
    yml("name_abs", json.dumps(_exp(str(d / "abs"))))
    steer = {"kind": "steer", "site": "blocks.0.hook_resid_post", "direction": {"file": "nope.safetensors",
                                                                               "key": "direction"}}  # fmt: skip
    yml("steer_missing", json.dumps(_exp(interventions=[steer])))
    yml("steer_width", json.dumps(_exp(interventions=[{**steer, "direction": [1.0, 2.0, 3.0]}])))
    yml("count_huge", json.dumps(_exp(inputs={"task": "random", "count": 100_000_000})))
    yml(
        "k_huge", json.dumps(_exp(interventions=[{"kind": "ensemble", "k": 10**9, "site": "blocks.0.hook_resid_post"}]))
    )
    yml("sweep_huge", "{" + base + ', "sweep": {"interventions.0.layers": "0:1000000000"}}')
    return d


CASES = [
    # capture: weights and configs
    ("capture {F}/t_trunc --out {out}/x.h5", "truncated or corrupt"),
    ("capture {F}/t_zero --out {out}/x.h5", "truncated or corrupt"),
    ("capture {F}/t_corrupt --out {out}/x.h5", "truncated or corrupt"),
    ("capture {F}/t_config --out {out}/x.h5", "config.json: not valid JSON"),
    ("capture {F}/t_meta --out {out}/x.h5", "interp.json: not valid JSON"),
    ("capture {F}/t_fewer --out {out}/x.h5", "do not match config.json: 27 unexpected keys"),
    ("capture {F}/t_bin --out {out}/x.h5", "convert it to safetensors"),
    # capture: numbers and choices
    ("capture tiny-wan --steps 0 --out {out}/x.h5", "steps: Input should be greater than or equal to 1"),
    ("capture tiny-wan --steps -1 --out {out}/x.h5", "steps: Input should be greater than or equal to 1"),
    ("capture tiny-wan --batch 0 --out {out}/x.h5", "batch: Input should be greater than or equal to 1"),
    ("capture tiny-wan --seed -1 --out {out}/x.h5", "seed: Input should be greater than or equal to 0"),
    ("capture tiny-wan --frames 0 --out {out}/x.h5", "frames: Input should be greater than or equal to 1"),
    ("capture tiny-wan --dtype float64 --out {out}/x.h5",
     "unknown storage dtype 'float64'; valid: float32, float16, bfloat16, float8_e4m3:token, float8_e4m3:channel"),
    ('capture tiny-wan --set dtype={{"blocks.*":"e5m2"}} --out {out}/x.h5', "dtype['blocks.*']: unknown storage dtype"),
    ('capture tiny-wan --set tokens={{"rows":[2,9]}} --out {out}/x.h5', "tokens.rows [2, 9) is outside the token grid"),
    ("capture tiny-wan --set tokens=[0,999] --out {out}/x.h5", "give token indices in 0.."),
    ('capture tiny-wan --set tokens={{"frames":[7]}} --out {out}/x.h5', "tokens.frames [7]: give distinct frames"),
    ("capture tiny-wan --set store_steps=[0,50] --out {out}/x.h5", "store_steps [50]: give steps in 0..19"),
    ("capture tiny-wan --set step_stride=0 --out {out}/x.h5", "step_stride: Input should be greater than"),
    ("capture tiny-wan --pool mean --set tokens=[0] --out {out}/x.h5", "pool 'mean' averages them all"),
    ("capture tiny-wan --pool max --out {out}/x.h5", "pool: Input should be 'none', 'mean' or 'frame'"),
    ("capture tiny-wan --steps 10000000 --out {out}/x.h5", "10,000,000 row-forwards > 2,000,000"),
    ("capture tiny-wan --batch 1000000 --out {out}/x.h5", "(free memory)"),
    # eval
    ("eval maze-wan --n 0 --out {out}", "'--n'"),
    ("eval maze-wan --batch 0 --out {out}", "'--batch'"),
    ("eval maze-wan --steps 0 --out {out}", "'--steps'"),
    # inspect, probe, view
    ("inspect {F}/trunc.h5", "not a readable HDF5 file"),
    ("inspect {F}/notes.h5", "not a readable HDF5 file"),
    ("probe {F}/trunc.h5 --label wall --out {out}", "not a readable HDF5 file"),
    ("probe {F}/notes.h5 --label wall --out {out}", "not a readable HDF5 file"),
    ("probe {F}/good.h5 --label {F}/strings.npy --out {out}", "map strings to class ids"),
    ("probe {F}/good.h5 --label wall --bootstrap -1 --out {out}", "bootstrap: Input should be greater than or equal"),
    ("view {F}/good.h5 --samples 5 --out {out}", "--samples 5: the file has samples 0..0"),
    ("view {F}/res/results.h5 --point 99 --out {out}", "--point 99: the sweep has points 0..1"),
    ("view {F}/good.h5 --sites nope --out {out}", "sites ['nope'] match no per-token site"),
    ("probe {F}/good.h5 --label wall --lambdas -1 --out {out}", "lambdas.0: Input should be greater than 0"),
    ("capture tiny-wan --x0-steps 0 --out {out}/x.h5", "--x0-steps decodes x0 through a pipeline's VAE"),
    ("run --merge {out}/nowhere", "no shard files to merge"),
    # experiment files
    ("run {F}/dup.yaml --out {out}", "key 'name' given twice (lines 1 and 2)"),
    ("run {F}/bomb.yaml --out {out}", "alias bomb"),
    ("run {F}/deep.yaml --out {out}", "nested deeper than 64 levels"),
    ("run {F}/huge.yaml --out {out}", "YAML input is limited to 1,048,576 bytes"),
    ("run {F}/empty_sweep.yaml --out {out}", "has no values"),
    ("run {F}/name_up.yaml", "give a relative name without '..'"),
    ("run {F}/name_abs.yaml", "give a relative name without '..'"),
    ("run {F}/steer_missing.yaml --out {out}", "nope.safetensors does not exist"),
    ("run {F}/steer_width.yaml --out {out}", "the steer direction has 3 features; the model's sites have 16"),
    ("run {F}/count_huge.yaml --out {out}", "100,000,000 samples"),
    ("run {F}/k_huge.yaml --out {out}", "less than or equal to 10000"),
    ("run {F}/sweep_huge.yaml --out {out}", "1,000,000,000 points > 100,000 (INTERP_MAX_POINTS)"),
]


def _main(argv: list[str], capsys) -> tuple[int, str]:
    old = sys.argv
    sys.argv = ["interp", *argv]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("command", "fragment"), CASES, ids=[c.split(" --out")[0] for c, _ in CASES])
def test_bad_input_is_one_message_and_nothing_written(command, fragment, F, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output (runs/<name>) would land here
    out = tmp_path / "out"
    code, err = _main(command.format(F=F, out=out).split(), capsys)
    flat = " ".join(line.strip(" │╭╮╰╯─") for line in err.splitlines())  # typer's box wraps long messages
    assert code == 2, err
    assert "Traceback" not in err
    assert fragment in " ".join(flat.split()), err
    assert len(err.strip().splitlines()) <= 8, err
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    assert not (tmp_path / "runs").exists() and not (F / "abs").exists() and not (F.parent / "outside").exists()


def test_a_pickled_checkpoint_from_the_real_console_script(F, tmp_path):
    r = subprocess.run([sys.executable, "-m", "interp", "capture", str(F / "t_bin"), "--out", str(tmp_path / "x.h5")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "diffusion_pytorch_model.bin are a pickled checkpoint" in r.stderr
    assert not list(tmp_path.iterdir())


def test_mismatched_weights_load_when_asked(F):
    from interp.models import load_model

    m = load_model(F / "t_fewer", strict=False)
    assert len(m.transformer.blocks) == len(load_model(F / "tw").transformer.blocks) - 1
