"""Prompts, images and VBVR-Bench sample folders as experiment inputs: the schema, up-front validation (one clear
error), load_samples, and the runner's error for a model that is not a whole pipeline (nothing written)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from interp.experiments.schema import Experiment, ExperimentError
from interp.pipelines.samples import SampleError, load_samples


def _png(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return str(path)


def _sample(root, name, prompt="draw the path", final=True):
    d = root / name
    d.mkdir(parents=True)
    _png(d / "first_frame.png")
    (d / "prompt.txt").write_text(prompt + "\n")
    if final:
        _png(d / "final_frame.png", 1)
    return d


def _exp(inputs: dict, **kw) -> Experiment:
    return Experiment.validate_data({"model": "tiny-wan", "inputs": inputs, **kw})


def test_prompts_and_images_validate_and_set_count(tmp_path):
    imgs = [_png(tmp_path / "a.png"), _png(tmp_path / "b.png")]
    e = _exp({"prompts": ["a ball", "a box"], "negative_prompt": "blur", "images": imgs, "frames": 9, "height": 96,
              "width": 96})  # fmt: skip
    assert e.inputs.task == "prompts" and e.inputs.count == 2 and e.inputs.negative_prompt == "blur"
    prompts, images, metas = e.inputs.prompt_inputs()
    assert prompts == ["a ball", "a box"] and images == imgs and metas[1]["image"] == imgs[1]
    assert Experiment.validate_data(yaml_roundtrip(e)).inputs == e.inputs


def yaml_roundtrip(e: Experiment) -> dict:
    import yaml

    return yaml.safe_load(e.to_yaml())


@pytest.mark.parametrize(
    "inputs, says",
    [
        ({"prompts": ["a", "b"], "images": ["x.png"]}, "2 prompt(s) and 1 image(s)"),
        ({"prompts": ["a"], "images": ["nope.png"]}, "image file(s) not found: nope.png"),
        ({"prompts": []}, "needs prompts (a non-empty list) or samples"),
        ({"prompts": ["a", " "]}, "prompts [1] are empty"),
        ({"prompts": ["a"], "count": 3}, "count 3 but 1 prompt(s)"),
        ({"prompts": ["a"], "sizes": [5]}, "sizes is for task: maze"),
        ({"task": "maze", "prompts": ["a"]}, "prompts are inputs of task: prompts"),
        ({"task": "random", "negative_prompt": "x"}, "negative_prompt are inputs of task: prompts"),
        ({"samples": "no/such/dir"}, "does not exist"),
        ({"samples": ".", "prompts": ["a"]}, "give samples, or prompts"),
    ],
)
def test_bad_prompt_inputs_are_one_clear_error(inputs, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if inputs.get("images") == ["x.png"]:
        _png(tmp_path / "x.png")
    with pytest.raises(ExperimentError) as e:
        _exp(inputs)
    assert says in str(e.value) and "inputs" in str(e.value)


def test_maze_metrics_need_maze_inputs():
    with pytest.raises(ExperimentError, match="need inputs.task: maze"):
        _exp({"prompts": ["a"]}, metrics=["solve_rate"])


def test_load_samples_reads_a_vbvr_folder(tmp_path):
    from interp.tasks import suite

    task = suite.get_task("mirror")
    suite.write_vbvr(tmp_path, task, task.levels[0], 2)
    ss = load_samples(tmp_path)
    assert [s.name for s in ss] == sorted(s.name for s in ss) and len(ss) == 2
    assert ss[0].prompt == task.prompt(ss[0].instance) and ss[0].final_frame.name == "final_frame.png"
    assert ss[0].ground_truth.name == "ground_truth.mp4" and ss[0].instance["task"] == "mirror"
    m = ss[1].meta(1)
    assert m["index"] == 1 and m["sample_dir"] == str(ss[1].dir) and m["instance"] == ss[1].instance
    e = _exp({"samples": str(tmp_path)})
    assert e.inputs.count == 2
    prompts, images, metas = e.inputs.prompt_inputs()
    assert images == [str(s.first_frame) for s in ss] and metas[0]["final_frame"] == str(ss[0].final_frame)


def test_load_samples_optional_files_and_every_problem_listed(tmp_path):
    _sample(tmp_path, "s0", final=False)
    assert load_samples(tmp_path)[0].final_frame is None
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "prompt.txt").write_text("x")
    _sample(tmp_path, "s2", prompt="")
    d = _sample(tmp_path, "s3")
    (d / "final_frame.png").write_bytes(b"not a png")
    (d / "instance.json").write_text("[1, 2]")
    with pytest.raises(SampleError) as e:
        load_samples(tmp_path)
    msg = str(e.value)
    assert "4 problem(s) in 4 sample folder(s)" in msg
    for says in ("s1: missing first_frame.png", "s2: prompt.txt is empty", "s3: final_frame.png is not a readable",
                 "s3: instance.json holds a list"):  # fmt: skip
        assert says in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SampleError, match="no sample folders"):
        load_samples(empty)


def test_prompt_inputs_need_a_whole_pipeline_and_nothing_is_written(tmp_path):
    from interp.experiments.runner import execute

    e = _exp({"prompts": ["a"]})
    with pytest.raises(ExperimentError, match="inputs.prompts: ") as err:
        execute(e, tmp_path / "out", progress=False)
    assert "tiny-wan" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unset_prompt_fields_keep_older_experiment_keys():
    e = _exp({"task": "random"})
    assert "prompts" not in e.canonical() and "samples" not in e.canonical()


def test_yaml_paths_are_relative_to_the_file(tmp_path, monkeypatch):
    d = tmp_path / "exp"
    d.mkdir()
    _sample(d / "samples", "s0")
    (d / "e.yaml").write_text("model: tiny-wan\ninputs: {samples: samples}\n")
    monkeypatch.chdir(tmp_path)
    e = Experiment.load(d / "e.yaml")
    assert e.inputs.samples == str(d / "samples") and e.inputs.count == 1
