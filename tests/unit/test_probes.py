"""Probes on small synthetic captures (store layout written here): planted signals, controls, baselines, files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from interp.tasks import maze as maze_task
from probes import run_probes
from probes.labels import maze_label
from probes.results import load_direction, load_results
from probes.synthetic import anisotropic_noise, plant, write_cache

B, FRAMES, D, STEPS = 24, 5, 48, 2
SITES = ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
PLANT = (1, "blocks.1.hook_resid_post")  # wall is linearly readable here only
POSITIONAL = "blocks.2.hook_resid_post"  # carries a strong per-(row, col) code at every step


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and stall on a shared machine)
    yield
    torch.set_num_threads(n)


def _acts(seed: int, mazes, planted: bool):
    rng = np.random.default_rng(seed)
    side = mazes[0].side
    tokens = FRAMES * side * side
    acts = {s: anisotropic_noise(rng, (STEPS, B, tokens), D, decay=1.0) for s in SITES}
    if planted:
        wall = maze_label("wall", mazes, FRAMES).values
        acts[PLANT[1]][PLANT[0]] = plant(acts[PLANT[1]][PLANT[0]], wall, rng.standard_normal(D), 4.0)
        pos = np.tile(rng.standard_normal((side * side, D)).astype(np.float32) * 6, (FRAMES, 1))
        acts[POSITIONAL] += pos[None, None]
    return acts


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    mazes = maze_task.eval_mazes(3, B, seed=0)
    real = write_cache(d / "real.h5", _acts(0, mazes, True), mazes=mazes)
    rand = write_cache(d / "random.h5", _acts(1, mazes, False), mazes=mazes)
    return real, rand, mazes, d


@pytest.fixture(scope="module")
def wall_run(caches):
    real, rand, _, d = caches
    out = d / "out"
    res = run_probes(real, labels=["wall"], sites=[], baseline=rand, out=out, bootstrap=50, progress=False)
    return res, out


# ---------------------------------------------------------------------------------------------------------------
# labels


def test_maze_labels_align_with_token_grid():
    m = maze_task.eval_mazes(4, 1, seed=3)[0]
    side = m.side
    layout = maze_task.layout_blocks(m)
    classes, agent = maze_task.frame_blocks(m, FRAMES)

    def token(f, r, c):
        return (f * side + r) * side + c

    wall = maze_label("wall", [m], FRAMES)
    assert wall.grid == (FRAMES, side, side) and wall.values.shape == (1, FRAMES * side * side)
    assert wall.values[0, token(0, 0, 0)] == 1 and wall.values[0, token(4, 1, 1)] == 0  # corner post / a cell
    for f in (0, 3):
        for r in range(side):
            for c in range(side):
                assert wall.values[0, token(f, r, c)] == int(layout[r, c] == maze_task.WALL)
    sr, sc = 2 * m.start[0] + 1, 2 * m.start[1] + 1
    gr, gc = 2 * m.goal[0] + 1, 2 * m.goal[1] + 1
    assert maze_label("start", [m], FRAMES).values[0].sum() == FRAMES
    assert maze_label("start", [m], FRAMES).values[0, token(2, sr, sc)] == 1
    assert maze_label("goal", [m], FRAMES).values[0, token(2, gr, gc)] == 1
    ag = maze_label("agent", [m], FRAMES).values[0]
    assert ag[token(0, sr, sc)] == 1 and ag[token(FRAMES - 1, gr, gc)] == 1 and ag.sum() == FRAMES
    path = maze_label("path", [m], FRAMES)
    assert path.values[0, token(1, sr, sc)] == 1 and path.values[0, token(1, gr, gc)] == 1
    assert not path.mask[0, token(0, 0, 0)]  # walls carry no path label
    assert path.values[0][path.mask[0]].sum() == FRAMES * len(maze_task.block_path(m))
    block = maze_label("block", [m], FRAMES)
    assert block.classes == maze_task.CLASS_NAMES[: block.n_classes]
    assert (block.values[0].reshape(FRAMES, side, side) == classes).all()
    first = maze_label("first_move", maze_task.eval_mazes(4, 8, seed=3), FRAMES)
    assert first.level == "sample" and set(first.classes) <= {"up", "down", "left", "right"}


# ---------------------------------------------------------------------------------------------------------------
# planted signal, shuffled label, control task, baseline


def test_planted_signal_found_at_its_site_only(wall_run):
    res, _ = wall_run
    r = res.labels["wall"]
    acc, auroc = r.metrics["accuracy"][0], r.metrics["auroc"][0]
    assert acc.shape == (STEPS, len(SITES))
    i, j = PLANT[0], SITES.index(PLANT[1])
    assert acc[i, j] > 0.97 and auroc[i, j] > 0.99
    others = np.delete(acc.ravel(), i * len(SITES) + j)
    noise = [acc[s, k] for s in range(STEPS) for k in range(3) if (s, k) != (i, j)]
    assert max(noise) < 0.65  # pure-noise sites: chance (classes balanced 50/50)
    # the positional site reads wall well *through position* (border posts are always walls, cells never are)
    assert 0.8 < acc[:, SITES.index(POSITIONAL)].min() and others.max() < acc[i, j] - 0.03
    assert res.best("wall")[:2] == (PLANT[0], PLANT[1])
    lo, hi = r.metrics["accuracy"][1, i, j], r.metrics["accuracy"][2, i, j]
    assert lo <= acc[i, j] <= hi and hi - lo < 0.05
    assert r.balance["test"]["yes"] == pytest.approx(0.5, abs=0.02)


def test_shuffled_label_is_not_found(caches):
    real, _, mazes, _ = caches
    wall = maze_label("wall", mazes, FRAMES).values
    shuffled = np.random.default_rng(5).permutation(wall.ravel()).reshape(wall.shape)
    res = run_probes(
        real,
        labels=["shuffled"],
        arrays={"shuffled": shuffled},
        sites=[PLANT[1]],
        steps=[PLANT[0]],
        control="none",
        bootstrap=20,
        progress=False,
    )
    r = res.labels["shuffled"]
    assert r.label.kind == "binary" and r.label.level == "token"
    assert abs(r.metrics["accuracy"][0, 0, 0] - 0.5) < 0.08
    assert abs(r.metrics["auroc"][0, 0, 0] - 0.5) < 0.08


def test_control_task_and_selectivity(wall_run):
    res, _ = wall_run
    r = res.labels["wall"]
    ctrl, sel, maj = r.metrics["control_accuracy"][0], r.metrics["selectivity"][0], r.metrics["majority"][0]
    i, j, k = PLANT[0], SITES.index(PLANT[1]), SITES.index(POSITIONAL)
    # the positional site can memorise a random label per block position; noise sites cannot
    assert ctrl[:, k].min() > 0.9
    assert abs(ctrl[0, 0] - maj[0, 0]) < 0.1
    # the planted site reads wall itself, not position
    assert sel[i, j] > 0.35 and sel[:, k].max() < 0.2
    assert np.unravel_index(sel.argmax(), sel.shape) == (i, j)
    np.testing.assert_allclose(sel, r.metrics["accuracy"][0] - ctrl, atol=1e-6)


def test_random_weights_baseline(wall_run):
    res, _ = wall_run
    r = res.labels["wall"]
    i, j = PLANT[0], SITES.index(PLANT[1])
    assert r.metrics["baseline_accuracy"][0].max() < 0.65
    assert r.metrics["minus_baseline"][0, i, j] > 0.35
    assert abs(r.metrics["minus_baseline"][0, 0, 0]) < 0.15


def test_control_keeps_label_distribution():
    from probes.labels import control_values

    rng = np.random.default_rng(0)
    types = rng.integers(0, 49, 5000)
    y = (rng.random(5000) < 0.3).astype(np.int64)
    c = control_values(types, y, seed=1)
    assert abs(c.mean() - 0.3) < 0.03
    for t in range(49):  # one label per type
        assert len(np.unique(c[types == t])) == 1


# ---------------------------------------------------------------------------------------------------------------
# files


def test_results_file_and_directions(wall_run, caches):
    res, out = wall_run
    real, *_ = caches
    data = load_results(out / "probes.h5")
    assert data["sites"] == SITES and data["steps"] == [0, 1]
    w = data["labels"]["wall"]
    assert w["accuracy"].shape == (3, STEPS, len(SITES)) and w["main"] == "accuracy"
    np.testing.assert_allclose(w["accuracy"][0], res.labels["wall"].metrics["accuracy"][0], atol=1e-6)
    assert set(w["balance"]["test"]) == {"no", "yes"}
    assert (out / "heatmaps" / "wall.png").stat().st_size > 5000
    # a saved direction predicts the label from raw activations: logit = scale * (x @ direction) + bias
    probe = load_direction(out / "weights" / "wall.safetensors", PLANT[1], PLANT[0])
    assert probe["direction"].shape == (1, D)
    assert torch.linalg.norm(probe["direction"]) == pytest.approx(1.0, abs=1e-5)
    with h5py.File(real) as f:
        x = torch.from_numpy(f[PLANT[1]][PLANT[0]].astype(np.float32))
        mazes = [maze_task.Maze.from_dict(json.loads(s)) for s in f["task/instances"][()]]
    logit = probe["scale"] * (x @ probe["direction"][0]) + probe["bias"]
    wall = torch.from_numpy(maze_label("wall", mazes, FRAMES).values)
    assert ((logit > 0).long() == wall).float().mean() > 0.97
    meta = load_file(out / "weights" / "wall.safetensors")
    assert len(meta) == 5 * STEPS * len(SITES)


def test_ridge_and_sample_labels(caches, tmp_path):
    real, _, mazes, _ = caches
    rng = np.random.default_rng(3)
    side = mazes[0].side
    tokens = FRAMES * side * side
    target = rng.standard_normal((B, tokens)).astype(np.float32)
    acts = {s: anisotropic_noise(rng, (1, B, tokens), D, decay=1.0) for s in SITES[:2]}
    acts[SITES[1]][0] = plant(acts[SITES[1]][0], target, rng.standard_normal(D), 5.0)
    path = write_cache(tmp_path / "reg.h5", acts, mazes=mazes, branch="cond")
    np.save(tmp_path / "target.npy", target)
    with pytest.raises(ValueError, match="branch"):
        run_probes(path, labels=["wall"], progress=False)
    res = run_probes(
        path,
        labels=[str(tmp_path / "target.npy"), "path_length"],
        sites=[],
        branch="cond",
        bootstrap=20,
        progress=False,
    )
    r2 = res.labels["target"].metrics["r2"][0, 0]
    assert res.labels["target"].label.kind == "regression"
    assert r2[1] > 0.9 and r2[0] < 0.1
    pl = res.labels["path_length"]
    assert pl.label.level == "sample" and pl.metrics["r2"].shape == (3, 1, 2)


def test_bad_input_names_what_is_valid(caches):
    real, *_ = caches
    with pytest.raises(ValueError, match="maze labels"):
        run_probes(real, labels=["walls"], progress=False)
    with pytest.raises(ValueError, match="no site matches"):
        run_probes(real, labels=["wall"], sites=["blocks.9.*"], progress=False)
    with pytest.raises(ValueError, match="outside"):
        run_probes(real, labels=["wall"], steps=[7], progress=False)
    with pytest.raises(ValueError, match="control"):
        run_probes(real, labels=["wall"], control="row", progress=False)


# ---------------------------------------------------------------------------------------------------------------
# solver, CLI, real store


def _scaled_sites(seed: int, s: int, n: int, d: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``s`` sites of ``n`` standardized float32 examples whose ``d`` features have scales 0.2..3, a noisy linear
    binary label read from site 0, and a random 3-class label."""
    from probes.linear import Standardizer

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s, n, d)).astype(np.float32) * np.linspace(0.2, 3, d).astype(np.float32)
    y = (x[0] @ rng.standard_normal(d) + rng.standard_normal(n) > 0).astype(np.int64)
    y3 = rng.integers(0, 3, n)
    xt = torch.from_numpy(x)
    return Standardizer.fit(xt)(xt), y, y3


def test_batched_logistic_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.linear_model")
    from probes.linear import fit_logistic

    n = 600
    xs, y, y3 = _scaled_sites(0, 2, n, 12)
    lam = torch.tensor([1e-3, 1e-1])
    for labels, classes in ((y, 2), (y3, 3)):
        fit = fit_logistic(xs, torch.from_numpy(labels).repeat(2, 1), lam, classes, tol=1e-6, max_iter=300)
        for j, l in enumerate(lam.tolist()):
            ref = sk.LogisticRegression(C=1 / (l * n), tol=1e-10, max_iter=5000).fit(xs[0].numpy(), labels)
            ours = fit.weight[0, j].numpy()  # (d, k)
            want = ref.coef_.T if classes == 2 else ref.coef_.T - ref.coef_.T.mean(1, keepdims=True)
            got = ours if classes == 2 else ours - ours.mean(1, keepdims=True)
            np.testing.assert_allclose(got, want, atol=2e-3 * max(1.0, np.abs(want).max()))


def test_standardizer_and_raw_weights():
    """Standardized copies (float32 and bfloat16, written block by block) match float64 ``(x - mean) / std`` even with
    means far from zero; weights mapped back by ``to_raw`` give the same logits on raw activations."""
    from probes.linear import LinearFit, Standardizer, to_raw

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 2500, 8)) * [0.5, 1, 2, 4, 1, 1, 3, 0.1] + [0, 50, -20, 3, 0, 1, 0, 100]).astype(
        np.float32
    )
    ref = (x - x.mean(1, keepdims=True)) / x.std(1, ddof=1, keepdims=True)
    xt = torch.from_numpy(x)
    std = Standardizer.fit(xt)
    np.testing.assert_allclose(std(xt, block=1000).numpy(), ref, atol=5e-4)  # float32 mean of |mean| = 1000 std
    np.testing.assert_allclose(std(xt, torch.bfloat16).float().numpy(), ref, atol=2e-2, rtol=1e-2)
    gen = torch.Generator().manual_seed(0)
    w, b = torch.randn(2, 3, 8, 1, generator=gen), torch.randn(2, 3, 1, generator=gen)
    want = LinearFit(w, b).logits(torch.from_numpy(ref.astype(np.float32)))
    w_raw, b_raw = to_raw(w, b, std)
    got = LinearFit(w_raw, b_raw).logits(xt)
    # raw weights on raw activations cancel terms of size |x| @ |w_raw| + |b_raw| (~2000 here, for the feature with
    # mean 100 and std 0.1): float32 leaves an error of a few ulps of that size, and no less
    size = LinearFit(w_raw.abs(), b_raw.abs()).logits(xt.abs())
    bound = 8 * 8 * torch.finfo(torch.float32).eps * size
    assert ((got - want).abs() <= bound).all(), float(((got - want).abs() / bound).max())
    assert float(bound.max()) < 0.05  # the bound stays far below a wrong mapping's error (order 1)


def test_cli_probe(caches, tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    real, *_ = caches
    out = tmp_path / "cli"
    r = CliRunner().invoke(
        app, ["probe", str(real), "--label", "wall", "--sites", "blocks.1.*", "--steps", "1", "--out", str(out),
              "--bootstrap", "10"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "wall" in r.output and (out / "probes.h5").exists() and (out / "heatmaps" / "wall.png").exists()
    assert load_results(out / "probes.h5")["labels"]["wall"]["accuracy"][0, 0, 0] > 0.97
    bad = CliRunner().invoke(app, ["probe", str(real), "--label", "nope", "--out", str(out)])
    assert bad.exit_code != 0 and "maze labels" in bad.output


def test_reads_interp_store_captures(tmp_path):
    capture = pytest.importorskip("interp.apps.capture")
    path = capture.capture(
        capture.CaptureConfig(model="tiny-wan", steps=2, sites=["blocks.0.hook_resid_post"], batch=4, guidance=2.0),
        tmp_path / "run.h5",
    )
    from probes.data import open_cache

    with open_cache(path) as r:
        assert type(r).__name__ == "StoreReader" and r.sites == ["blocks.0.hook_resid_post"]
        tokens, grid = r.tokens, r.grid
        assert r.read("blocks.0.hook_resid_post", 1).shape == (4, tokens, r.d_model("blocks.0.hook_resid_post"))
    assert int(np.prod(grid)) == tokens
    lab = np.random.default_rng(0).integers(0, 2, (4, *grid))
    res = run_probes(path, labels=["rand"], arrays={"rand": lab}, branch="uncond", bootstrap=5, progress=False)
    assert res.steps == [0, 1] and res.labels["rand"].metrics["accuracy"].shape == (3, 2, 1)


def test_bench_sites_are_float32_like_the_store():
    """The benchmark feeds both solvers float32, as activations come out of the store (a float64 array once made
    scikit-learn's side 3.6x slower and the ratio look better than it is)."""
    from benchmarks.probes import make_site

    y = np.array([0, 1, 0, 1])
    x = make_site(0, 0, y, d=8, classes=2, strength=np.float64(1.5))
    assert x.dtype == np.float32 and x.shape == (4, 8)


def test_probe_refuses_a_run_over_the_memory_cap_and_writes_nothing(caches, monkeypatch, tmp_path):
    """The probe run's estimate (features of a chunk + every probe's weights) is checked before any solve; over
    INTERP_MAX_MEMORY_GB it is refused with the numbers and nothing is written; --force (force=True) runs it."""
    from interp.budget import BudgetError

    real, _, _, _ = caches
    monkeypatch.setenv("INTERP_MAX_MEMORY_GB", "1e-6")  # 1 kB
    with pytest.raises(BudgetError, match=r"probe is too large: memory .* > 1.0 kB \(INTERP_MAX_MEMORY_GB\)"):
        run_probes(real, labels=["wall"], sites=[], out=tmp_path / "o", bootstrap=5, progress=False)
    assert not (tmp_path / "o").exists()
    res = run_probes(real, labels=["wall"], sites=[], out=tmp_path / "o", bootstrap=5, progress=False, force=True)
    assert (tmp_path / "o" / "probes.h5").exists() and "wall" in res.labels


def test_preconditioner_forms_agree_and_the_explicit_one_solves_like_scikit_learn(monkeypatch):
    """The preconditioner's two forms (eigen on the CPU, explicit from Cholesky factors on CUDA) are one matrix:
    (c XᵀX/m + lam I)^-1 on the weights, 1/c on the bias; a solve with the explicit form forced matches
    scikit-learn's tight solution as the default one does."""
    sk = pytest.importorskip("sklearn.linear_model")
    from probes import linear as lin

    rng = np.random.default_rng(5)
    s, m, d = 3, 200, 10
    scale = np.linspace(0.3, 2, d, dtype=np.float32)
    rows = torch.from_numpy(rng.standard_normal((s, m, d)).astype(np.float32) * scale)
    lam = torch.tensor([1e-4, 1e-2, 1.0])
    lam_reg = lam[:, None] * torch.cat([torch.ones(d), torch.zeros(1)])
    g = torch.from_numpy(rng.standard_normal((s, 3, 2, d + 1)).astype(np.float32))
    eig = lin._Preconditioner.fit(rows, lam_reg, explicit=False)
    exp = lin._Preconditioner.fit(rows, lam_reg, explicit=True)
    monkeypatch.setattr(lin._Preconditioner, "BUILD_BYTES", 1)  # formed one site at a time: the same matrices
    torch.testing.assert_close(lin._Preconditioner.fit(rows, lam_reg, explicit=True).mat, exp.mat, rtol=0, atol=0)
    assert eig.mat is None and exp.mat is not None
    want = np.zeros((s, 3, d + 1, d + 1))
    for i in range(s):
        r = rows[i].double().numpy()
        for j, lj in enumerate(lam.tolist()):
            a = np.zeros((d + 1, d + 1))
            a[:d, :d] = lin.BINARY_CURVATURE * r.T @ r / m + lj * np.eye(d)
            a[d, d] = lin.BINARY_CURVATURE
            want[i, j] = np.linalg.inv(a)
    ref = np.einsum("spke,spef->spkf", g.double().numpy(), want)
    for pre in (eig, exp):
        np.testing.assert_allclose(pre(g).double().numpy(), ref, rtol=2e-4, atol=2e-4 * np.abs(ref).max())
    si, pj = torch.tensor([0, 2]), torch.tensor([[2, 0], [1, 1]])  # compaction: live sites, their problems
    sub = want[si.numpy()[:, None], pj.numpy()]
    for pre in (eig, exp):
        gs = g[si][:, :2]
        np.testing.assert_allclose(pre.take(si, pj)(gs).double().numpy(),
                                   np.einsum("spke,spef->spkf", gs.double().numpy(), sub), rtol=2e-4,
                                   atol=2e-4 * np.abs(ref).max())  # fmt: skip

    fit = lin._Preconditioner.fit
    monkeypatch.setattr(lin._Preconditioner, "fit", classmethod(lambda c, r, lr, e=None: fit(r, lr, explicit=True)))
    n = 500
    x = rng.standard_normal((1, n, d)).astype(np.float32) * np.linspace(0.2, 3, d).astype(np.float32)
    y = (x[0] @ rng.standard_normal(d) + rng.standard_normal(n) > 0).astype(np.int64)
    xt = torch.from_numpy(x)
    xs = lin.Standardizer.fit(xt)(xt)
    lam2 = torch.tensor([1e-3, 1e-1])
    out = lin.fit_logistic(xs, torch.from_numpy(y).repeat(2, 1), lam2, 2, tol=1e-6, max_iter=300)
    for j, lj in enumerate(lam2.tolist()):
        sref = sk.LogisticRegression(C=1 / (lj * n), tol=1e-10, max_iter=5000).fit(xs[0].numpy(), y)
        np.testing.assert_allclose(out.weight[0, j, :, 0].numpy(), sref.coef_[0], atol=2e-3 * np.abs(sref.coef_).max())


def test_newton_finish_on_separable_data():
    """On linearly separable examples at weak regularization (where CG alone stalls far from the optimum) the Newton
    steps end finite, at a lower objective than CG alone, at scikit-learn's tight solution."""
    sk = pytest.importorskip("sklearn.linear_model")
    from probes.linear import Standardizer, fit_logistic

    rng = np.random.default_rng(3)
    n, d = 400, 16
    x = rng.standard_normal((1, n, d)).astype(np.float32) * np.linspace(0.1, 2, d).astype(np.float32)
    y = (x[0] @ rng.standard_normal(d) > 0).astype(np.int64)  # separable: no noise
    xt = torch.from_numpy(x)
    xs = Standardizer.fit(xt)(xt)
    lam = torch.tensor([1e-4, 1e-2])
    yy = torch.from_numpy(y).repeat(2, 1)

    def objective(fit, j):
        z = xs[0] @ fit.weight[0, j, :, 0] + fit.bias[0, j, 0]
        ce = torch.nn.functional.softplus(z) - yy[j] * z
        return float(ce.double().mean() + 0.5 * lam[j] * fit.weight[0, j].double().square().sum())

    cg = fit_logistic(xs, yy, lam, 2, newton_steps=0, matmul_dtype=torch.float32)
    nt = fit_logistic(xs, yy, lam, 2, matmul_dtype=torch.float32)
    assert torch.isfinite(nt.weight).all() and torch.isfinite(nt.bias).all()
    for j, lam_j in enumerate(lam.tolist()):
        assert objective(nt, j) < objective(cg, j) - 1e-6
        ref = sk.LogisticRegression(C=1 / (lam_j * n), tol=1e-10, max_iter=20000).fit(xs[0].numpy(), y)
        want = ref.coef_[0]
        np.testing.assert_allclose(nt.weight[0, j, :, 0].numpy(), want, rtol=0, atol=2e-3 * np.abs(want).max())


def test_chunks_fit_like_one_batch_and_matmuls_stay_float32(caches, monkeypatch):
    """run_probes split into one-site chunks gives exactly the strengths and accuracies of one probe_chunk over every
    site (the benchmark's timed fits), even with TF32 requested outside; on CUDA the chunk grows to the free
    memory (DEVICE_SHARE of the smaller of device and host), never below what memory_gb holds."""
    from benchmarks.probe_parity import label_data
    from probes import linear
    from probes import run as R

    real, _, _, _ = caches
    cfg = R.ProbeConfig(labels=["wall"], sites=[], control="none", bootstrap=1)
    seen = []
    newton = linear._newton_group

    def spy(*a, **k):
        seen.append(torch.get_float32_matmul_precision())
        return newton(*a, **k)

    monkeypatch.setattr(linear, "_newton_group", spy)
    torch.set_float32_matmul_precision("high")  # TF32 allowed, as training sets it
    try:
        res = run_probes(real, cfg, memory_gb=1e-9, progress=False).labels["wall"]  # one site per chunk
        after = torch.get_float32_matmul_precision()
        ((lab, ex, x),) = label_data(real, cfg.labels, cfg)
        w_one = torch.ones(1, len(ex.index("test")))
        mets, _, lam = R.probe_chunk(torch.from_numpy(x), ex, lab, R.LOGISTIC_LAMBDAS, cfg, w_one, False)
    finally:
        torch.set_float32_matmul_precision("highest")
    assert after == "high" and seen and set(seen) == {"highest"}
    assert len(seen) == x.shape[0] + 1  # one Newton finish per chunk, then the one-batch fit
    np.testing.assert_array_equal(res.metrics["accuracy"][0].ravel(), mets["accuracy"][:, 0].numpy())
    np.testing.assert_array_equal(res.metrics["lambda"].ravel(), lam.numpy())
    assert len(np.unique(lam.numpy())) > 1  # the strengths picked differ by site: the comparison can fail

    per_site, gb = 2.0**20, 0.5  # 1 MiB a site: memory_gb holds 512
    assert R.chunk_size(per_site, gb, torch.device("cpu")) == 512
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (80 * 2**30, 140 * 2**30))
    monkeypatch.setattr(R, "free_memory", lambda: 40 * 2**30)
    assert R.chunk_size(per_site, gb, torch.device("cuda")) == int(R.DEVICE_SHARE * 40 * 1024)
    monkeypatch.setattr(R, "free_memory", lambda: None)
    assert R.chunk_size(per_site, gb, torch.device("cuda")) == int(R.DEVICE_SHARE * 80 * 1024)
    assert R.chunk_size(per_site, 100.0, torch.device("cuda")) == 100 * 1024
    # blocks the caching allocator holds unused count as free (the driver counts them as taken)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev=None: 30 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda dev=None: 10 * 2**30)
    assert R.chunk_size(per_site, gb, torch.device("cuda")) == int(R.DEVICE_SHARE * 100 * 1024)
    assert linear.newton_budget(torch.device("cuda")) == 100 * 2**30 // 4


def test_newton_tol_reaches_the_newton_steps(caches, monkeypatch):
    """ProbeConfig.newton_tol is the decrement every Newton finish of run_probes stops at."""
    from probes import linear
    from probes.run import ProbeConfig

    real, _, _, _ = caches
    seen = []
    newton = linear._newton_group

    def spy(x, y, lam, classes, steps, tol, *a, **k):
        seen.append(tol)
        return newton(x, y, lam, classes, steps, tol, *a, **k)

    monkeypatch.setattr(linear, "_newton_group", spy)
    cfg = ProbeConfig(labels=["wall"], sites=[], control="none", bootstrap=1, newton_tol=3e-6)
    run_probes(real, cfg, progress=False)
    assert seen and set(seen) == {3e-6}


def test_sparse_convergence_checks_solve_like_every_iteration(monkeypatch):
    """Off the CPU the CG phase reads its convergence every CHECK_EVERY iterations (converged pairs take the steps
    in between, and compaction waits for the next check): forced on the CPU, the solves of several sites and
    strengths (binary and 3-class) still end at scikit-learn's tight solution, and CG alone takes a multiple of the
    interval (or max_iter)."""
    sk = pytest.importorskip("sklearn.linear_model")
    from probes import linear as lin

    s, n = 3, 500
    xs, y, y3 = _scaled_sites(11, s, n, 10)
    lam = torch.tensor([1e-3, 1e-1])
    every = {}
    for k in (1, lin.CHECK_EVERY):
        monkeypatch.setattr(lin, "check_every", lambda dev, k=k: k)
        cg = lin.fit_logistic(xs, torch.from_numpy(y).repeat(2, 1), lam, 2, tol=1e-4, newton_steps=0,
                              matmul_dtype=torch.float32)  # fmt: skip
        assert k == 1 or cg.iterations % k == 0 or cg.iterations == 100
        every[k] = [lin.fit_logistic(xs, torch.from_numpy(lab).repeat(2, 1), lam, c, matmul_dtype=torch.float32)
                    for lab, c in ((y, 2), (y3, 3))]  # fmt: skip
    for (lab, c), fit in zip(((y, 2), (y3, 3)), every[lin.CHECK_EVERY]):
        for i in range(s):
            for j, lj in enumerate(lam.tolist()):
                ref = sk.LogisticRegression(C=1 / (lj * n), tol=1e-10, max_iter=5000).fit(xs[i].numpy(), lab)
                want = ref.coef_.T if c == 2 else ref.coef_.T - ref.coef_.T.mean(1, keepdims=True)
                got = fit.weight[i, j].numpy()
                got = got if c == 2 else got - got.mean(1, keepdims=True)
                np.testing.assert_allclose(got, want, atol=1e-3 * max(1.0, np.abs(want).max()))
    for a, b in zip(every[1], every[lin.CHECK_EVERY]):  # one optimum, whichever the interval
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=1e-3 * max(1.0, float(a.weight.abs().max())))


def test_stack_to_stacks_the_features_on_the_device():
    from probes.run import stack_to

    feats = [np.arange(12, dtype=np.float32).reshape(3, 4) + i for i in range(5)]
    out = stack_to(feats, torch.device("cpu"))
    assert out.dtype == torch.float32 and out.shape == (5, 3, 4)
    np.testing.assert_array_equal(out.numpy(), np.stack(feats))


def test_float64_newton_finish_reaches_the_float64_optimum(monkeypatch):
    """The Newton finish in float64 (CUDA's default, forced here on the CPU) takes binary weights to scikit-learn's
    float64 optimum to ~5e-8, closer than float32 where the float32 gradient's rounding shows (the strong strength);
    3-class within bounds in both; the weights come back float32."""
    sk = pytest.importorskip("sklearn.linear_model")
    from probes import linear as lin

    rng = np.random.default_rng(13)
    n, d = 800, 12
    x = rng.standard_normal((1, n, d)) * np.linspace(0.2, 3, d)
    y = (x[0] @ rng.standard_normal(d) + 2 * rng.standard_normal(n) > 0).astype(np.int64)
    y3 = rng.integers(0, 3, n)
    xs64 = torch.from_numpy((x - x[0].mean(0)) / x[0].std(0))  # standardized in float64, as scikit-learn sees them
    lam = torch.tensor([1e-3, 1e-1])
    err = {}
    for dt in (torch.float32, torch.float64):
        monkeypatch.setattr(lin, "newton_dtype", lambda dev, dt=dt: dt)
        for lab, c in ((y, 2), (y3, 3)):
            # the standardizer sees the float64 features so only the Newton finish's dtype differs
            fit = lin.fit_logistic(xs64.float(), torch.from_numpy(lab).repeat(2, 1), lam, c,
                                   matmul_dtype=torch.float32, newton_tol=1e-9)  # fmt: skip
            assert fit.weight.dtype == torch.float32
            for j, lj in enumerate(lam.tolist()):
                ref = sk.LogisticRegression(C=1 / (lj * n), tol=1e-12, max_iter=10000).fit(xs64[0].numpy(), lab)
                want = ref.coef_.T if c == 2 else ref.coef_.T - ref.coef_.T.mean(1, keepdims=True)
                got = fit.weight[0, j].double().numpy()
                got = got if c == 2 else got - got.mean(1, keepdims=True)
                err[dt, c, j] = np.abs(got - want).max() / np.abs(want).max()
    # float32 features limit both to ~1e-8..1e-7 of the float64 optimum; the float32 gradient adds its own rounding
    # (binary, strong lam: 3.3e-7 against 2.6e-8 in float64). Elsewhere which dtype lands closer is the rounding's
    # draw (float32 pairs stop where a step gains less than the logits' rounding; 3-class at the weak lam stops at
    # the step cap in both): only bounded there
    assert err[torch.float64, 2, 1] * 4 < err[torch.float32, 2, 1], err
    assert all(err[torch.float64, 2, j] < 6e-8 for j in range(2)) and err[torch.float32, 2, 1] > 1.5e-7, err
    assert err[torch.float64, 3, 1] < 2e-6, err
    assert max(err[dt, 3, j] for dt in (torch.float32, torch.float64) for j in range(2)) < 2e-4, err


def test_fixed_shape_cg_and_site_batched_newton_solve_like_compaction(monkeypatch):
    """The device path, forced on the CPU: CG at fixed shapes, converged pairs going on iterating instead of being
    compacted away (it stops at a convergence check once every pair has been below the tolerance, and the pairs that
    converged first kept moving), and Newton batches of any size (one site each, or every site, padded to the
    widest) end at the compacting path's optimum, binary and 3-class, with strengths converging at different
    iterations."""
    from probes import linear as lin

    s, n = 4, 600
    xs, y, y3 = _scaled_sites(17, s, n, 12)
    lam = torch.tensor([1e-4, 1e-2, 1.0])
    seen = []  # per iteration: (g'h, the weights before the step)
    grad = lin._cg_gradient

    def spy(v, *a, **k):
        out = grad(v, *a, **k)
        seen.append((out[2], v.clone()))
        return out

    monkeypatch.setattr(lin, "check_every", lambda dev: lin.CHECK_EVERY)
    fits = {}
    for fixed, budget in ((False, None), (True, 1), (True, 1 << 40)):
        monkeypatch.setattr(lin, "fixed_shape_cg", lambda dev, f=fixed: f)
        if budget is not None:
            monkeypatch.setattr(lin, "newton_budget", lambda dev, b=budget: b)
        for lab, c in ((y, 2), (y3, 3)):
            yy = torch.from_numpy(lab).repeat(3, 1)
            seen.clear()
            monkeypatch.setattr(lin, "_cg_gradient", spy)
            cg = lin.fit_logistic(xs, yy, lam, c, tol=1e-3, newton_steps=0, matmul_dtype=torch.float32)
            monkeypatch.setattr(lin, "_cg_gradient", grad)
            if fixed:
                assert all(gh.shape == (s, 3) for gh, _ in seen)  # nothing compacted
                below = torch.stack([gh.sqrt() < 1e-3 for gh, _ in seen])  # (iterations, s, p)
                assert bool(below.any(0).all()) and cg.iterations % lin.CHECK_EVERY == 0
                first = below.float().argmax(0)  # the iteration each pair first converged at
                early = first < first.max()
                assert bool(early.any())  # some pairs converged before others, and went on moving after
                pairs = early.nonzero().tolist()
                assert any(bool((seen[-1][1][j, q] != seen[int(first[j, q])][1][j, q]).any()) for j, q in pairs)
            fits[fixed, budget, c] = lin.fit_logistic(xs, yy, lam, c, matmul_dtype=torch.float32)
    # binary: one optimum to what the Newton decrement's tolerance leaves at the weakest strength (near-separable
    # site 0, weights ~5); 3-class: the block-diagonal Hessian's Newton steps stop within 1e-3 (as against
    # scikit-learn in test_sparse_convergence_checks_solve_like_every_iteration), the bias up to a shift
    for c, tol in ((2, 1e-4), (3, 1e-3)):
        ref = fits[False, None, c]
        for key in ((True, 1), (True, 1 << 40)):
            got = fits[(*key, c)]
            scale = max(1.0, float(ref.weight.abs().max()))
            torch.testing.assert_close(got.weight, ref.weight, rtol=0, atol=tol * scale)
            centred = [b.bias - b.bias.mean(-1, keepdim=True) for b in (got, ref)]
            torch.testing.assert_close(*centred, rtol=0, atol=tol * scale)


def test_newton_step_forms_each_pairs_hessian_and_leaves_padding_alone(monkeypatch):
    """One Newton step over a batch of two sites padded to the wider one (3-class): the Hessian it factors for each
    (site, problem, class) is that pair's own ``X'diag(p(1-p))X/n + lam`` (bias unpenalized) computed directly; the
    padding columns' weights and flags come back bit-identical; and from zero weights the binary finish converges
    quadratically (a handful of steps) to scikit-learn's tight solution."""
    sk = pytest.importorskip("sklearn.linear_model")
    from probes import linear as lin

    rng = np.random.default_rng(21)
    s, n, d, p, k = 2, 300, 5, 4, 3
    e = d + 1
    x = torch.from_numpy(rng.standard_normal((s, n, d)))
    xa = torch.cat([x, torch.ones(s, n, 1, dtype=x.dtype)], -1)
    y = torch.from_numpy(rng.integers(0, k, (p, n)))
    lam = torch.tensor([1e-3, 1e-2, 1e-1, 1.0], dtype=x.dtype)
    v = torch.from_numpy(rng.standard_normal((s, p, k, e)) * 0.1)
    active = torch.tensor([[True, False, True, True], [False, True, False, False]])  # site 1: one live problem
    pj = torch.argsort((~active).to(torch.int8), dim=1, stable=True)[:, :3]
    ix = (torch.arange(s)[:, None], pj)
    reg = torch.ones(e, dtype=x.dtype)
    reg[d] = 0.0
    onehot = torch.nn.functional.one_hot(y, k).to(x.dtype).transpose(1, 2)  # (p, k, n)
    seen = []
    chol_ex = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda a: (seen.append(a.clone()), chol_ex(a))[1])
    v0, active0 = v.clone(), active.clone()
    lin._newton_step(xa, xa.transpose(1, 2).contiguous(), y.to(x.dtype)[pj], onehot[pj], lam[pj][..., None, None] * reg,
                     v, active, ix, 1e-12)  # fmt: skip
    (hess,) = seen
    for i in range(s):
        for col in range(3):
            q = int(pj[i, col])
            pr = torch.softmax(v0[i, q] @ xa[i].T, 0)  # (k, n)
            for c in range(k):
                want = xa[i].T @ (xa[i] * (pr[c] * (1 - pr[c]))[:, None]) / n
                diag = torch.diagonal(want)
                diag += torch.maximum(lam[q] * reg, 1e-6 * diag.mean())
                torch.testing.assert_close(hess[i, col, c], want, rtol=1e-12, atol=1e-14)
    pad = ~active0  # the columns that were not live: untouched, still inactive
    assert torch.equal(v[pad], v0[pad]) and not bool(active[pad].any())
    assert not torch.equal(v[active0], v0[active0])  # the live ones moved

    xb = x[:1].float()
    yb = (x[0] @ torch.from_numpy(rng.standard_normal(d)) + torch.from_numpy(rng.standard_normal(n)) > 0).long()
    w = torch.zeros(1, 1, 1, d)
    b = torch.zeros(1, 1, 1)
    steps = lin._newton_group(xb.double(), yb[None], torch.tensor([0.1]), 2, 12, 1e-9, w, b)
    ref = sk.LogisticRegression(C=1 / (0.1 * n), tol=1e-12, max_iter=10000).fit(xb[0].double().numpy(), yb.numpy())
    assert steps <= 6
    np.testing.assert_allclose(w[0, 0, 0].numpy(), ref.coef_[0], rtol=0, atol=1e-6 * np.abs(ref.coef_).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_cg_matches_the_eager_iterations(monkeypatch):
    """On CUDA the fixed-shape CG replays its iteration as a CUDA graph: the same iterations and weights as running
    every iteration eagerly (``_cuda_graph`` replaced by the function itself), binary and 3-class."""
    from probes import linear as lin

    rng = np.random.default_rng(23)
    s, n, d = 6, 700, 32
    x = torch.from_numpy(rng.standard_normal((s, n, d)).astype(np.float32)).cuda()
    xs = lin.Standardizer.fit(x)(x)
    lam = torch.tensor([1e-4, 1e-2, 1.0], device="cuda")
    for c in (2, 3):
        yy = torch.from_numpy(rng.integers(0, c, n)).cuda().repeat(3, 1)
        graph = lin.fit_logistic(xs, yy, lam, c, tol=1e-3, newton_steps=0)
        with monkeypatch.context() as m:
            m.setattr(lin, "_cuda_graph", lambda fn: (fn(), fn)[1])
            eager = lin.fit_logistic(xs, yy, lam, c, tol=1e-3, newton_steps=0)
        assert graph.iterations == eager.iterations > 2
        torch.testing.assert_close(graph.weight, eager.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(graph.bias, eager.bias, rtol=1e-5, atol=1e-6)


def test_metrics_in_site_blocks_equal_one_block_and_scikit_learn(monkeypatch):
    """``probes.run._metric`` scores sites in blocks bounded by ``METRIC_BYTES``: one site per block gives the same
    accuracy and AUROC (with ties) as every site at once, bootstrap rows included, R² to float32 rounding, and the
    point estimates are scikit-learn's."""
    skm = pytest.importorskip("sklearn.metrics")
    from probes import metrics as M
    from probes import run as R

    rng = np.random.default_rng(31)
    s, n = 5, 120
    scores = torch.from_numpy(np.round(rng.standard_normal((s, n, 1)), 1).astype(np.float32))  # rounded: ties
    y = torch.from_numpy(rng.integers(0, 2, n))
    w = M.bootstrap_weights(torch.from_numpy(rng.integers(0, 30, n)), 7, torch.Generator().manual_seed(0))
    whole = {fn: R._metric(fn, scores, y if fn is not M.r2 else y.float(), w) for fn in (M.accuracy, M.auroc, M.r2)}
    monkeypatch.setattr(R, "METRIC_BYTES", 1)
    for fn, want in whole.items():
        got = R._metric(fn, scores, y if fn is not M.r2 else y.float(), w)
        assert got.shape == (s, 8)
        exact = fn is not M.r2  # counts and half-counts are exact in float32; R²'s float sums depend on the blocking
        torch.testing.assert_close(got, want, rtol=0 if exact else 1e-6, atol=0, msg=fn.__name__)
    for i in range(s):
        assert whole[M.auroc][i, 0] == pytest.approx(skm.roc_auc_score(y, scores[i, :, 0]), abs=1e-6)
        assert whole[M.accuracy][i, 0] == pytest.approx(skm.accuracy_score(y, scores[i, :, 0] > 0), abs=1e-6)
        assert whole[M.r2][i, 0] == pytest.approx(skm.r2_score(y.float(), scores[i, :, 0]), abs=1e-5)
