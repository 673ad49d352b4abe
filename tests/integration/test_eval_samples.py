"""interp eval MODEL --samples DIR: a whole pipeline on a folder of VBVR-Bench samples, scored per sample, with the
mean and its interval; the scores are the scorer's own on the stored final videos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.pipelines.samples import load_samples
from interp.scorers import final_frame, suite
from interp.store import load_cache
from interp.tasks import suite as S


@pytest.mark.slow
def test_eval_samples_scores_every_sample_with_the_scorers_own_numbers(tmp_path):
    S.write_vbvr(tmp_path / "vbvr", S.get_task("mirror"), 2, 2)
    runner = CliRunner()
    for scorer, fn in ((None, final_frame), ("interp.scorers:suite", suite)):
        out = tmp_path / f"out-{scorer is None}"
        args = ["eval", "organism", "--samples", str(tmp_path / "vbvr"), "--steps", "2", "--out", str(out)]
        res = runner.invoke(app, args + ([] if scorer is None else ["--scorer", scorer]))
        assert res.exit_code == 0, res.output
        got = json.loads((out / "eval.json").read_text())
        assert got["n"] == 2 and got["scorer"] == (scorer or "interp.scorers:final_frame")
        with load_cache(out / "samples.h5") as c:
            video = c.video
        metas = [s.meta(i) for i, s in enumerate(load_samples(tmp_path / "vbvr"))]
        want = [fn(video[i], metas[i]) for i in range(2)]
        for k, v in got["per_sample"].items():
            assert np.allclose(v, [w[k] for w in want])
            assert got["scores"][k]["mean"] == pytest.approx(np.mean(v))
            lo, hi = got["scores"][k]["ci95"]
            assert lo <= np.mean(v) <= hi
    assert "ssim" in json.loads((tmp_path / "out-True" / "eval.json").read_text())["scores"]


def test_eval_samples_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "organism", "--samples", str(tmp_path), "--task", "mirror", "--out", "x"])
    assert res.exit_code == 2 and "leave out --task" in res.output
    res = runner.invoke(app, ["eval", "maze-wan", "--scorer", "interp.scorers:final_frame"])
    assert res.exit_code == 2 and "--scorer scores a --samples folder" in res.output
