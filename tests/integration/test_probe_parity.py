"""run_probes at its default settings picks the same regularization strength as scikit-learn and scores within
0.5 points of it, on a real capture of the shipped maze-wan model (the problem both solve, solved tightly by
scikit-learn's lbfgs on float64 features as the reference; scikit-learn's own defaults stop short of it at the weak
strengths, and on float32 features so does its tight fit, by a test example or two)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.probe_parity import capture_maze_wan, label_data, ours, print_phases, sklearn_sites
from probes import ProbeConfig, linear

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_defaults_match_scikit_learn_on_maze_wan(tmp_path, capsys):
    # 20 mazes: 4 test mazes x 64 tokens, so one test example is 0.39 points; 2 steps x 8 blocks = 16 sites
    path = capture_maze_wan(tmp_path / "maze-wan.h5", mazes=20, steps=2, seed=0, device="cpu")
    cfg = ProbeConfig(labels=["wall", "path"], control="none",
                      sites=["blocks.[02468].hook_resid_post", "blocks.1[0246].hook_resid_post"])  # fmt: skip
    for lab, ex, x in label_data(path, cfg.labels, cfg):
        assert x.shape[0] == 16 and len(ex.index("test")) == 256
        _, pick, acc = ours(lab, ex, x, cfg, "cpu", repeats=1)
        _, ref_pick, ref_acc, _ = sklearn_sites(x, ex, tol=1e-8, max_iter=5000, jobs=1, float64=True)
        diff = 100 * np.abs(acc - ref_acc)
        assert diff.max() <= 0.5, (lab.name, diff.round(2).tolist())
        assert np.mean(pick == ref_pick) >= 0.95, (lab.name, pick.tolist(), ref_pick.tolist())

        # --phases: the same fit with its phases timed; the solvers' own returns (CG iterations, Newton steps) are
        # printed, and every patched function is restored afterwards
        before = (linear.Standardizer.__call__, linear._fit_logistic_group, linear._newton_group)
        capsys.readouterr()
        print_phases(lab, ex, x, cfg, "cpu")
        out = capsys.readouterr().out
        cg = next(line for line in out.splitlines() if line.strip().startswith("CG "))
        assert int(cg.split("returned [")[1].split("]")[0]) > 0
        assert "Newton finish" in out and "standardize (apply)" in out and "preconditioner" in out
        assert (linear.Standardizer.__call__, linear._fit_logistic_group, linear._newton_group) == before
