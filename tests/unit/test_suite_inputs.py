"""Experiment inputs from the organism's task suite: held-out instances through the whole pipeline, goalmaze pairs
(the same image with the other prompt), the default scorer, and the errors a wrong field gets."""

from __future__ import annotations

import numpy as np
import pytest

from interp.experiments import Experiment, ExperimentError
from interp.experiments.plan import plan, source_rows
from interp.interventions import parse
from interp.tasks import suite
from interp.tasks.goalmaze import heldout_pairs


def _exp(**inputs):
    return Experiment.validate_data({"model": "organism", "inputs": inputs})


def test_suite_inputs_are_the_pinned_held_out_instances_at_the_suites_size():
    e = _exp(task="loopmaze", levels=[3, 4], count=3)
    assert e.inputs.is_suite and e.inputs.uses_pipeline and e.scorer == "interp.scorers:suite"
    assert (e.inputs.frames, e.inputs.height, e.inputs.width) == (suite.FRAMES, suite.SIZE, suite.SIZE)
    task = suite.get_task("loopmaze")
    prompts, images, metas = e.inputs.prompt_inputs(4)
    want = suite.heldout(task, 4, 3)
    assert [m["instance"] for m in metas] == want and prompts == [task.prompt(i) for i in want]
    assert all(np.array_equal(a, task.render(i)[0]) for a, i in zip(images, want))
    assert _exp(task="mirror").inputs.levels == [suite.get_task("mirror").levels[0]]  # default: the easiest


def test_goalmaze_pairs_put_the_other_prompt_half_a_group_later_and_swap_pair_reads_it():
    e = Experiment.validate_data({"model": "organism", "inputs": {"task": "goalmaze", "levels": [4], "count": 3,
                                  "pairs": True}, "interventions": [{"kind": "swap", "other": "pair", "steps": 0}]})  # fmt: skip
    prompts, images, metas = e.inputs.prompt_inputs(4)
    assert e.inputs.group_size == 6 and len(prompts) == 6
    pairs = heldout_pairs(4, 3)
    for i in range(3):
        a, b = metas[i]["instance"], metas[i + 3]["instance"]
        assert {a["target"], b["target"]} == {"red", "blue"} and {a["target"]: a, b["target"]: b}["red"] == pairs[i][0]
        assert np.array_equal(images[i], images[i + 3]) and prompts[i] != prompts[i + 3]  # same image, other text
    pl = plan(e)
    assert len(pl.samples) == 6
    iv = e.interventions[0]
    for s in pl.samples:
        (src,) = source_rows(e, iv, s, 0)
        assert src.sample == (s.local + 3) % 6 and src.slot == s.local  # B's run with A's noise


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        (
            {"task": "goalmze"},
            "unknown inputs.task 'goalmze' (did you mean 'goalmaze'?); valid: maze, random, prompts, goalmaze",
        ),
        ({"task": "loopmaze", "levels": [9]}, "loopmaze has no level [9]"),
        ({"task": "mirror", "pairs": True}, "pairs: mirror has one prompt per image"),
        ({"task": "goalmaze", "prompts": ["x"]}, "gives its own prompts"),
        ({"task": "goalmaze", "frames": 5}, "the suite's videos are 9 x 96 x 96"),
        ({"task": "maze", "levels": [3]}, "levels and pairs are inputs of a suite task"),
    ],
)
def test_bad_suite_inputs_get_one_clear_error(inputs, fragment):
    with pytest.raises(ExperimentError, match=None) as e:
        _exp(**inputs)
    assert fragment in str(e.value)


def test_swap_other_pair_needs_an_even_group_and_zero_is_refused():
    with pytest.raises(ValueError, match="other: 0 is the input itself"):
        parse({"kind": "swap", "other": 0})
    with pytest.raises(ValueError, match="needs paired inputs"):
        parse({"kind": "swap", "other": "pair"}).reads(0, 3, 0)
    assert parse({"kind": "swap", "other": "pair"}).reads(1, 8, 5)[0].offset == 4
