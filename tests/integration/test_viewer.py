"""interp view: page data from captures (maze verdicts per step, budget), the CLI verb, and the page in a real
headless Chromium (no console errors, a slider changes the shown image, a screenshot kept as an artifact).

Screenshots (a capture page and a results page) are written to pytest's tmp path and copied to
``tests/artifacts/viewer.png`` and ``tests/artifacts/viewer_results.png`` (gitignored).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.fake_capture import write_capture
from helpers.headless import Browser, find_chromium
from typer.testing import CliRunner

from interp.cli import app
from interp.report import viewer as vw
from interp.tasks import build_inputs
from interp.tasks.maze import to_model_space

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # tests/artifacts/ (gitignored)
MAZE_META = {"task": "maze", "frames": 5, "text_dim": 32, "default_size": 5}


def _maze_capture(path: Path, steps: int = 3, batch: int = 2, layers: int = 3) -> Path:
    """A maze-wan capture without the model: x0 is noise at step 0, the true solution video from step 1 on, except
    sample 1's last frame keeps no trail (unsolved). Activations are random, tokens one per maze block."""
    ti = build_inputs(MAZE_META, batch, seed=0)
    truth = to_model_space(torch.from_numpy(np.asarray(ti.targets))).numpy()  # (B, 3, F, 44, 44)
    wrong = truth.copy()
    wrong[1, :, -1] = wrong[1, :, 0]  # last frame = the bare maze
    rng = np.random.default_rng(0)
    x0 = np.stack([rng.uniform(-1, 1, truth.shape)] + [wrong] * (steps - 1)).astype(np.float32)
    grid = (5, 11, 11)
    acts = {f"blocks.{i}.hook_resid_post": rng.normal(size=(steps, batch, 605, 8)) * (i + 1) for i in range(layers)}
    cfg = {"model": "maze-wan", "seed": 0, "batch": batch, "noise_seed": 0}
    return write_capture(path, acts, x0, grid, cfg)


@pytest.fixture(scope="module")
def maze_h5(tmp_path_factory) -> Path:
    return _maze_capture(tmp_path_factory.mktemp("maze") / "maze.h5")


def _payload(page: Path) -> dict:
    m = re.search(r"const D = (\{.*?\});\n", page.read_text())
    return json.loads(m.group(1))


def test_maze_page_data(maze_h5, tmp_path):
    page = vw.write_view(maze_h5, tmp_path)
    d = _payload(page)
    assert d["steps"] == ["0", "1", "2"] and d["layers"] == [f"blocks.{i}.hook_resid_post" for i in range(3)]
    assert [k["id"] for k in d["kinds"]] == ["norm", "pca", "channel0", "channel1", "channel2"]
    # the scorer's verdict of each step's x0: noise fails, the true video solves, the trail-less one does not
    assert [[v["success"] for v in row] for row in d["verdicts"]] == [[False, False], [True, False], [True, False]]
    assert d["verdicts"][1][0]["path_recall"] == 1.0 and d["verdicts"][1][1]["path_recall"] == 0.0
    assert [v["success"] for v in d["final_verdicts"]] == [True, False]
    assert all(u.startswith("data:image/png;base64,") for row in d["x0"] for u in row)
    maps = d["maps"]["pca"]
    assert len(maps) == 3 and len(maps[0]) == 3 and len(maps[0][0]) == 2
    assert maps[0][0][0] != maps[1][0][0]
    assert len(d["energy"][0][0][0]) == 5  # per frame
    assert "http" not in page.read_text().replace("http://www.w3.org", "")  # nothing fetched


def test_budget(maze_h5, tmp_path):
    plan = vw.plan_budget(10 * vw.MB, n_steps=50, n_layers=40, n_samples=8, grid=(21, 30, 52),
                          x0_shape=(81, 480, 832), kinds=["norm", "pca", "channel0", "channel1"])  # fmt: skip
    assert "steps thinned" in plan.reductions and len(plan.samples) <= 4 and plan.x0_factor >= 4
    assert plan.steps[0] == 0 and plan.steps[-1] == 49  # first and last step kept
    with pytest.raises(ValueError, match="budget-mb"):
        vw.plan_budget(1000, n_steps=5, n_layers=4, n_samples=1, grid=(5, 11, 11), x0_shape=None, kinds=["norm"])
    budget = 0.12
    page = vw.write_view(maze_h5, tmp_path, budget_mb=budget)
    d = _payload(page)
    assert page.stat().st_size <= budget * vw.MB
    assert d["budget"]["reductions"] and len(d["steps"]) * len(d["layers"]) * len(d["samples"]) < 3 * 3 * 2


def test_cli_and_real_capture(tmp_path):
    from interp.apps.capture import CaptureConfig, capture

    run = capture(
        CaptureConfig(model="tiny-wan", steps=2, sites=["blocks.*.hook_resid_post", "hook_out"]), tmp_path / "run.h5"
    )
    r = CliRunner().invoke(
        app, ["view", str(run), "--out", str(tmp_path / "view"), "--budget-mb", "2", "--channels", "1"]
    )
    assert r.exit_code == 0, r.output
    d = _payload(tmp_path / "view" / "index.html")
    assert d["verdicts"] is None and "latent" in d["x0_note"]  # tiny-wan: no task; x0 is a latent
    assert [k["id"] for k in d["kinds"]] == ["norm", "pca", "channel0"] and len(d["layers"]) == 3  # hook_out: no map
    r = CliRunner().invoke(
        app, ["view", str(tmp_path / "run.h5"), "--out", str(tmp_path / "v2"), "--budget-mb", "0.001"]
    )
    assert r.exit_code != 0 and "budget-mb" in r.output


def _results_file(path: Path, steps: int = 3, n: int = 2) -> Path:
    """A results.h5 in interp.experiments' layout (schema 1): a 2 x 3 sweep over layers x steps of a maze model, with
    per-step x0 and one captured site per point. Point p's x0 is the true video once step >= p % 3."""
    import h5py

    axes = {"interventions.0.layers": [0, 1], "interventions.0.steps": [0, 1, 2]}
    points = [{"interventions.0.layers": a, "interventions.0.steps": b} for a in (0, 1) for b in (0, 1, 2)]
    ti = build_inputs(MAZE_META, n, seed=0)
    truth = to_model_space(torch.from_numpy(np.asarray(ti.targets))).numpy()  # (n, 3, F, H, W)
    rng = np.random.default_rng(0)
    x0 = np.stack(
        [
            np.stack([truth if s >= p % 3 else rng.uniform(-1, 1, truth.shape) for s in range(steps)], 1)
            for p in range(len(points))
        ]
    ).astype(np.float32)  # (P, n, steps, 3, F, H, W)
    solve = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [np.nan, np.nan]])
    exp = {"name": "fake", "model": "maze-wan", "inputs": {"task": "maze", "count": n, "seed": 0}}
    with h5py.File(path, "w") as f:
        f.attrs.update(schema_version=1, key="k", model_hash="m", experiment=json.dumps(exp), points=json.dumps(points),
                       axes=json.dumps(axes), n_batches=1, complete=True)  # fmt: skip
        f["metrics/solve_rate"] = solve
        f["metrics/x0_distance"] = rng.uniform(size=(6, n, steps))
        f["clean/metrics/solve_rate"] = np.ones(n)
        g = f.create_group("group_0")
        g.attrs.update(size=5, samples=list(range(n)))
        g["condition_frames"] = np.asarray(ti.condition_frames)
        g["x0"] = x0
        g["final"] = x0[:, :, -1]
        g["cond/blocks.3.hook_resid_post"] = rng.normal(size=(6, n, steps, 605, 8)).astype(np.float32)
    return path


def test_results_page_data(tmp_path):
    res = _results_file(tmp_path / "results.h5")
    d = _payload(vw.write_view(res, tmp_path / "view", point=2))
    solve, per_step = d["heatmaps"]
    assert solve["y_name"] == "interventions.0.layers" and solve["x_ticks"] == ["0", "1", "2"]
    assert solve["values"] == [[0.5, 1.0, 0.0], [1.0, 0.5, None]]  # mean over samples; not run -> None
    p = solve["points"][1][2]
    assert p["point"] == 5 and p["interventions.0.layers"] == 1 and p["interventions.0.steps"] == 2
    assert solve["link"] == {"y": "layer", "x": "step"} and solve["link_index"]["x"] == [0, 1, 2]
    assert solve["link_index"]["y"] == [None, None]  # the page maps only blocks.3: no slider position for layers 0, 1
    assert per_step["x_name"] == "step" and len(per_step["values"]) == 6 and len(per_step["values"][0]) == 3
    # point 2's run: x0 is noise before step 2; verdicts read the stored conditioning frames
    assert [row[0]["success"] for row in d["verdicts"]] == [False, False, True]
    assert d["layers"] == ["blocks.3.hook_resid_post"] and len(d["maps"]["norm"]) == 3
    assert ("clean solve_rate", "1.0") in [tuple(i) for i in d["info"]]
    with pytest.raises(ValueError, match="do not apply"):
        vw.write_view(tmp_path / "results.h5", tmp_path / "v2", branch="cond", pngs=True)


def test_real_experiment_results(tmp_path):
    """The viewer reads what ``interp run`` writes (tiny model, one sweep axis over layers)."""
    ex = pytest.importorskip("interp.experiments")
    exp = ex.Experiment.validate_data({
        "model": "tiny-wan", "inputs": {"task": "random", "count": 1}, "sampler": {"steps": 2},
        "capture": {"x0": True, "sites": ["blocks.*.hook_resid_post"]},
        "interventions": [{"kind": "skip", "layers": 0}], "sweep": {"interventions.0.layers": [0, 2]},
        "metrics": ["mse", "x0_distance"],
    })  # fmt: skip
    run = ex.run_experiment(exp, tmp_path / "run", wandb="disabled", progress=False)
    d = _payload(vw.write_view(run.results, tmp_path / "view", budget_mb=1))
    assert [h["title"].split()[0] for h in d["heatmaps"]] == ["mse", "x0_distance"]
    assert d["heatmaps"][0]["link"] == {"y": "layer"} and d["heatmaps"][0]["link_index"]["y"] == [0, 2]
    assert len(d["layers"]) == 3 and d["x0"] is not None and d["verdicts"] is None


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (apt-get install chromium); "
                    "the page's browser test needs a real headless browser")  # fmt: skip
def test_page_in_headless_chromium(maze_h5, tmp_path):
    page = vw.write_view(maze_h5, tmp_path)
    with Browser() as b:
        b.open(page.as_uri())
        assert b.eval("document.getElementById('mapimg').naturalWidth") > 0
        src = "document.getElementById('{}').src"
        map0, x00 = b.eval(src.format("mapimg")), b.eval(src.format("x0img"))
        assert b.eval("document.getElementById('verdict').textContent").startswith("scorer: not solved")
        b.eval("document.getElementById('step').focus()")
        b.press("ArrowRight", 39)  # a real key press moves the step slider
        assert b.eval("document.getElementById('step').value") == "1"
        assert b.eval(src.format("mapimg")) != map0 and b.eval(src.format("x0img")) != x00
        assert b.eval("document.getElementById('verdict').textContent").startswith("scorer: solved")
        layer0 = b.eval(src.format("mapimg"))
        b.eval("document.getElementById('layer').focus()")
        b.press("ArrowRight", 39)
        assert b.eval("document.getElementById('layerLabel').textContent") == "blocks.1.hook_resid_post"
        assert b.eval(src.format("mapimg")) != layer0
        b.eval("const k = document.getElementById('kind'); k.value = 'pca'; k.dispatchEvent(new Event('change'))")
        assert b.eval("document.getElementById('kindLabel').textContent").startswith("PCA")
        shot = b.screenshot(tmp_path / "viewer.png")
        assert not b.errors(), b.errors()

        # experiment results: the sweep point under the cursor is shown; a click moves the linked sliders
        results = vw.write_view(_results_file(tmp_path / "results.h5"), tmp_path / "rview")
        b.open(results.as_uri())
        left, top, width, height = b.eval(
            "(() => { const r = document.getElementById('heat0').getBoundingClientRect(); "
            "return [r.left, r.top, r.width, r.height]; })()"
        )
        x, y = left + width * 5 / 6, top + height / 4  # row 0 (layers 0), column 2 (steps 2)
        b.mouse("mouseMoved", x, y)
        hover = b.eval("document.getElementById('hover').textContent")
        assert "point: 2" in hover and "interventions.0.steps: 2" in hover and "solve_rate" in hover, hover
        b.mouse("mousePressed", x, y)
        b.mouse("mouseReleased", x, y)
        assert b.eval("document.getElementById('step').value") == "2"
        shot2 = b.screenshot(tmp_path / "viewer_results.png")
        assert not b.errors(), b.errors()
    ARTIFACTS.mkdir(exist_ok=True)
    for s in (shot, shot2):
        assert s.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shutil.copy(s, ARTIFACTS / s.name)


def test_strings_from_files_stay_text(tmp_path):
    """A ``<script>`` planted in every string a capture file carries (model name, prompts, site names, task metadata,
    instances, config JSON) reaches the page as data, never as a live script element."""
    from interp.store import RunWriter
    from interp.trajectory import StepRecord

    bad = "</script><script>alert({})</script><img src=x onerror=alert({})>"
    steps, rng = 2, np.random.default_rng(0)
    sites = ["blocks.0.hook_resid_post", f"blocks.1.hook_resid_post{bad.format(1, 1)}"]
    cfg = {"model": bad.format(2, 2), "seed": 0, "batch": 1, "prompts": [bad.format(3, 3)],
           "negative_prompt": bad.format(4, 4)}  # fmt: skip
    desc = {"task_meta": {"task": bad.format(5, 5), "note": bad.format(6, 6)}, "instances": [json.dumps({"x": bad})]}
    w = RunWriter(tmp_path / "evil.h5", config=cfg, model_hash=bad.format(7, 7), family="wan",
                  timesteps=torch.linspace(1000, 0, steps), sigmas=torch.linspace(1, 0, steps),
                  branch_steps={"cond": [0, 1]}, sites=sites, grid=(1, 2, 2), description=desc)  # fmt: skip
    for s in range(steps):
        x = torch.from_numpy(rng.normal(size=(1, 4, 1, 4, 4)).astype(np.float32))
        acts = {k: torch.from_numpy(rng.normal(size=(1, 4, 8)).astype(np.float32)) for k in sites}
        w.on_step(StepRecord(s, 0.0, 0.0, "transformer", x, x, x, x, {"cond": acts}))
    page = vw.write_view(w.finish(), tmp_path / "view")
    html = page.read_text()
    assert html.count("<script") == vw._TEMPLATE.count("<script") == 1  # the page's own script only
    assert html.count("<img") == vw._TEMPLATE.count("<img")  # "<" of every file string is \\u003c in the data
    assert "</script><script>" not in html and "alert(" not in html.replace("\\u003e", "").split("const D = ")[0]
    shown = json.dumps(_payload(page))
    assert "alert(2)" in shown  # the model name is shown, as text
