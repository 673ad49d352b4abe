"""The maze language model backend (TransformerLens 4.3) and `interp compare`, on tiny models (CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

pytest.importorskip("transformer_lens")

from interp.cli import app  # noqa: E402
from interp.lm import is_lm_path  # noqa: E402
from interp.lm import tokens as T  # noqa: E402
from interp.tasks import maze as mz  # noqa: E402

TINY_LM = ["model.n_layers=3", "model.d_model=32", "model.n_heads=2", "model.d_mlp=64", "data.tokens_per_batch=600",
           "data.size_weights={3: 1.0}", "eval.n=2", "eval.sizes=[3]", "log_every=1", "save_every=100",
           "max_steps=2"]  # fmt: skip


def test_tokens_roundtrip():
    m = mz.eval_mazes(4, 1, 3)[0]
    seq = T.sequence(m)
    assert len(T.prompt(m)) == T.prompt_len(4) and seq[T.prompt_len(4) - 1] == T.SEP
    grid = seq[T.grid_positions(4)] - T.BLOCK0
    assert np.array_equal(grid.reshape(9, 9), mz.layout_blocks(m))  # token i = maze block i
    assert T.walk(m, T.answer(m)) == {"exact": True, "goal_reached": True, "wall_hits": 0, "first_move": True}
    assert not T.walk(m, T.answer(m)[:-2] + [T.EOS])["exact"]
    assert len(T.sequence(m)) <= T.max_len(4)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from interp.apps.train import main as train_main

    out = tmp_path_factory.mktemp("lm")
    state = train_main("experiments/train/maze-lm.yaml", TINY_LM + [f"out={out}"])  # dispatched on kind: lm
    assert state["step"] == 2 and "eval/exact_3" in state["history"][-1]
    return out / "ckpt"


@pytest.fixture(scope="module")
def tiny_dit(tmp_path_factory):
    from interp.train import TrainConfig, build_model, save_checkpoint

    out = tmp_path_factory.mktemp("dit")
    cfg = TrainConfig.from_yaml("experiments/train/maze-wan.yaml", [
        "model.num_layers=2", "model.attention_head_dim=8", "model.num_attention_heads=2", "model.ffn_dim=16",
        "model.text_dim=8", "model.freq_dim=16"])  # fmt: skip
    torch.manual_seed(0)
    return save_checkpoint(build_model(cfg.model), cfg, out / "ckpt", {"step": 0})


def test_lm_saves_loads_and_evaluates(tiny_lm, tmp_path):
    from interp.lm.model import load_lm
    from interp.lm.run import eval_lm, generate

    assert is_lm_path(tiny_lm) and not is_lm_path(tmp_path)
    m = load_lm(tiny_lm)
    assert m.n_layers == 3 and len(m.weight_hash) == 64
    mazes = mz.eval_mazes(3, 3, 0)
    toks, answers = generate(m, mazes)
    assert toks.shape[0] == 3 and all(len(a) <= T.max_moves(3) + 1 for a in answers)
    rows = eval_lm(m, [3], 3)
    assert rows[0]["size"] == 3 and 0 <= rows[0]["exact"] <= 1 and len(rows[0]["ci95"]) == 2
    res = CliRunner().invoke(app, ["eval", str(tiny_lm), "--size", "3", "--n", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "eval.json").read_text())[0]["n"] == 2


def test_lm_interventions(tiny_lm):
    """skip / ablate / patch / swap by TransformerLens site names; positions: steps = answer, tokens = grid."""
    from interp.interventions import ablate, patch, skip, swap
    from interp.lm.model import load_lm
    from interp.lm.run import LMEdits, clean_cache, forward, generate, lm_positions, run_interventions

    m = load_lm(tiny_lm)
    mazes = mz.eval_mazes(3, 3, 1)
    toks, answers = generate(m, mazes)
    assert lm_positions(skip.Skip(site="blocks.0", steps=0), 3).tolist() == [T.answer_position(3, 0)]
    assert lm_positions(swap.Swap(tokens=[0, 2]), 3).tolist() == [2, 4]
    with pytest.raises(ValueError, match="frames"):
        lm_positions(swap.Swap(frames=0), 3)
    # skip every block = the model reads only the embeddings: the same as zeroing every attention and MLP output
    x = toks[:, : T.prompt_len(3)]
    edits = LMEdits(m, mazes, [skip.Skip(site="blocks.{layer}")], {})
    zero = LMEdits(m, mazes, [ablate.Ablate(site="blocks.{layer}.hook_attn_out"),
                              ablate.Ablate(site="blocks.{layer}.hook_mlp_out")], {})  # fmt: skip
    assert torch.allclose(forward(m, x, edits.hooks(x.shape[1])), forward(m, x, zero.hooks(x.shape[1])), atol=1e-5)
    # swapping the whole residual stream of the last block at every position gives the other maze's answer
    r = run_interventions(m, mazes, [swap.Swap(site="blocks.2.hook_resid_post")], toks)
    assert r["answers"] == [answers[(i + 1) % 3] for i in range(3)]
    # a patch from the same input is a no-op
    same = run_interventions(m, mazes, [patch.Patch(source=patch.Source(input=0))], toks)
    assert same["answers"] == answers
    mean = run_interventions(m, mazes, [ablate.Ablate(site="blocks.1.hook_resid_post", mode="mean", tokens=":")], toks)
    assert set(mean) >= {"exact", "first_move", "goal_reached"}
    assert set(clean_cache(m, toks, ["blocks.0.hook_resid_post"])) == {"blocks.0.hook_resid_post"}


def test_lm_experiment_yaml_and_probes(tiny_lm, tmp_path):
    exp = {"name": "lm-skip", "model": str(tiny_lm), "inputs": {"task": "maze", "sizes": [3], "count": 3, "seed": 0},
           "interventions": [{"kind": "skip", "site": "blocks.{layer}", "layers": 0}],
           "sweep": {"interventions.0.layers": [0, 2]}, "metrics": ["solve_rate"]}  # fmt: skip
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [p["coords"] for p in summary["points"]] == [{"interventions.0.layers": 0}, {"interventions.0.layers": 2}]
    assert len(summary["points"][0]["per_maze"]["exact"]) == 3
    # probes read an LM capture like a DiT capture: token grid (1, 7, 7)
    from interp.lm.model import load_lm
    from interp.lm.run import capture_lm
    from probes import run_probes

    cap = capture_lm(load_lm(tiny_lm), mz.eval_mazes(3, 10, 0), tmp_path / "lm.h5")
    pr = run_probes(cap, labels=["wall", "path"], control="none", bootstrap=5, progress=False)
    assert pr.labels["wall"].metrics["accuracy"].shape == (3, 1, 3)


def test_cka():
    from interp.apps.compare import linear_cka

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, x @ q * 3 + 1) == pytest.approx(1.0, abs=1e-9)  # invariant to rotation, scale, shift
    assert linear_cka(x, torch.randn(200, 8, generator=g)) < 0.2


def test_compare_cli(tiny_lm, tiny_dit, tmp_path):
    res = CliRunner().invoke(app, ["compare", str(tiny_dit), str(tiny_lm), "--size", "3", "--n", "6", "--steps", "2",
                                   "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "profiles.json").read_text())["rows"]
    assert [r["layer"] for r in rows] == [0, 1, 0, 1, 2] and rows[-1]["depth"] == 1.0
    for r in rows:
        assert all(r[k] is not None for k in ("skip_damage", "swap_flip", "swap_damage", "wall_probe", "path_probe"))
    assert all(0 <= r["lens_solve"] <= 1 for r in rows[:2]) and all(r["lens_solve"] is None for r in rows[2:])
    cka = json.loads((tmp_path / "cka.json").read_text())
    assert np.array(cka[f"{tiny_dit}|{tiny_lm}"]).shape == (2, 3)
    assert np.allclose(np.diag(np.array(cka[f"{tiny_lm}|{tiny_lm}"])), 1.0)
    assert (tmp_path / "compare.png").stat().st_size > 10_000 and "| model |" in (tmp_path / "profiles.md").read_text()


def test_compare_layer_stride_takes_every_kth_block_of_each_model_and_its_last(tiny_lm, tiny_dit, tmp_path):
    """layer_stride=2: the 2-block DiT's blocks 0 and 1 (its last), the 3-block LM's 0 and 2: profiles and CKA over
    those blocks alone; with layers as well it is one clear error."""
    res = CliRunner().invoke(app, ["compare", str(tiny_dit), str(tiny_lm), "--size", "3", "--n", "6", "--steps", "2",
                                   "--measures", "skip,probe,cka", "--set", "layer_stride=2",
                                   "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "profiles.json").read_text())["rows"]
    assert [(r["layer"], r["depth"]) for r in rows] == [(0, 0.0), (1, 1.0), (0, 0.0), (2, 1.0)]
    cka = json.loads((tmp_path / "cka.json").read_text())
    assert np.array(cka[f"{tiny_dit}|{tiny_lm}"]).shape == (2, 2)
    both = CliRunner().invoke(app, ["compare", str(tiny_lm), "--set", "layer_stride=2", "--set", "layers=[0]",
                                    "--out", str(tmp_path / "both")])  # fmt: skip
    assert both.exit_code == 2 and "not both" in both.output and not (tmp_path / "both").exists()


def test_compare_x0_lens_profile_ends_at_the_models_own_x0():
    """The lens column: block i's x0-lens readout at probe_step, scored as a video. The last block's is the model's
    own x0 at that step, scored the same way, sample by sample; on the shipped maze-wan the first blocks' readouts
    solve nothing where the last one's solve every 4x4 maze (the answer is read out late in the stack)."""
    from interp.apps.compare import CompareConfig, _DiT, compare
    from interp.tasks import maze as mz
    from interp.tasks.maze_score import score_batch
    from interp.trajectory import run_trajectory

    cfg = CompareConfig(models=["maze-wan"], size=4, n=8, steps=2, measures=["lens"], probe_step=0)
    lens = compare(cfg, progress=False).profiles[0].samples["lens_solve"]  # (blocks, mazes)
    dit = _DiT("maze-wan", cfg)
    inputs, sc, cond = dit._inputs(mz.eval_mazes(4, 8, 0))
    got = {}
    run_trajectory(dit.loaded, inputs, sc, on_step=lambda r: got.setdefault("x0", r.x0), keep=False)  # step 0 first
    own = np.array([s.success for s in score_batch(mz.from_model_space(got["x0"].cpu()).numpy(), cond)], float)
    assert lens.shape == (16, 8) and np.array_equal(lens[-1], own)
    assert lens[:4].mean() == 0.0 and lens[-1].mean() == 1.0


def test_lm_training_checks_its_estimate_before_writing(tmp_path, monkeypatch):
    from interp.apps.train import main as train_main
    from interp.budget import BudgetError

    monkeypatch.setenv("INTERP_MAX_MEMORY_GB", "1e-6")
    with pytest.raises(BudgetError, match=r"training is too large: memory"):
        train_main("experiments/train/maze-lm.yaml", TINY_LM + [f"out={tmp_path / 'o'}"])
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_compare_profiles_a_suite_model_per_task_against_maze_wan(tiny_organism, tmp_path):
    """A suite model (the organism's pipeline with a tiny transformer and VAE) gives one profile per task of its
    suite (the whole pipeline, the task's scorer and probe labels) beside maze-wan on mazes; every pair gets its rank
    correlations and the output states the task-agnostic verdict and its rule. Random weights solve nothing, so
    both suite skip-damage profiles are flat and the verdict must say so rather than decide."""
    org = str(tiny_organism)
    res = CliRunner().invoke(app, ["compare", org, "maze-wan", "--size", "3", "--n", "3", "--steps", "1",
                                   "--measures", "skip,probe,cka,lens", "--set", "layers=[0, 1, 3]",
                                   "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "profiles.json").read_text())
    rows = data["rows"]
    names = [f"{org}/loopmaze", f"{org}/mirror", "maze-wan"]
    assert [(r["model"], r["layer"]) for r in rows] == [(m, i) for m in names for i in (0, 1, 3)]
    assert [r["depth"] for r in rows[:3]] == [0.0, round(1 / 3, 4), 1.0]  # of 4 blocks; maze-wan's of 16
    assert [r["depth"] for r in rows[6:]] == [0.0, round(1 / 15, 4), round(3 / 15, 4)]
    suite_rows = rows[:6]
    assert all(r["clean_solve"] == 0.0 and r["skip_damage"] == 0.0 for r in suite_rows)  # nothing to lose
    assert all(r["lens_solve"] == 0.0 for r in suite_rows)  # the lens decoded by the VAE, scored by the task
    assert [r["lens_solve"] for r in rows[6:]] == [0.0, 0.0, 0.0]  # maze-wan's first blocks read out no answer
    assert any(r["skip_damage"] != 0.0 for r in rows[6:])  # maze-wan: skipping a block costs solves
    assert all(0.0 <= r["wall_probe"] <= 1.0 and r["path_probe"] is not None for r in rows)
    agn = data["agnostic"]
    assert agn["task_pairs"] == [f"{names[0]} vs {names[1]}"]
    assert agn["verdict"] == "not measured (a flat profile: rho undefined)"
    assert [(p["a"], p["b"]) for p in agn["pairs"]] == [(names[0], names[1]), (names[0], names[2]),
                                                        (names[1], names[2])]  # fmt: skip
    from interp.apps.compare import spearman

    pair = agn["pairs"][0]["wall_probe"]  # a probe profile has no per-sample values: a point correlation
    want = spearman([r["wall_probe"] for r in rows[:3]], [r["wall_probe"] for r in rows[3:6]])
    assert pair["lo"] is None and pair["rho"] == pytest.approx(want, nan_ok=True)
    cka = json.loads((tmp_path / "cka.json").read_text())  # across models only on the same inputs
    assert set(cka) == {f"{m}|{m}" for m in names}
    md = (tmp_path / "profiles.md").read_text()
    assert "**Is the specialization task-agnostic?** not measured" in md and "null: rho = 0" in md
    assert "Suite tasks: 3 held-out instances each (loopmaze level 4" in md
