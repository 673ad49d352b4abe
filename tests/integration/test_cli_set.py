"""A verb's options are its pydantic config: ``--set key=value`` reaches every field, a bad key exits 2 naming the
valid keys before anything is written."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict
from typer.testing import CliRunner

from interp.apps.capture import CaptureConfig
from interp.apps.options import OptionError, config_from
from interp.cli import app
from interp.store import load_cache

runner = CliRunner()


def test_set_reaches_fields_without_an_option(tmp_path):
    out = tmp_path / "run.h5"
    args = ["capture", "tiny-wan", "--steps", "2", "--sites", "hook_out", "--out", str(out),
            "--set", "frames=2", "--set", "height=8", "--set", "width=8", "--set", "noise_seed=3"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    with load_cache(out) as c:
        assert c.config["frames"] == 2 and c.config["noise_seed"] == 3 and c.latents.shape[-3:] == (2, 8, 8)


def test_a_bad_key_exits_2_naming_the_valid_keys_and_writes_nothing(tmp_path):
    out = tmp_path / "run.h5"
    res = runner.invoke(app, ["capture", "tiny-wan", "--out", str(out), "--set", "stepz=2"])
    assert (
        res.exit_code == 2 and "unknown key 'stepz'" in res.output and "valid keys: model, steps, sites" in res.output
    )
    bad = runner.invoke(app, ["capture", "tiny-wan", "--out", str(out), "--set", "steps=zero"])
    assert bad.exit_code == 2 and "steps: Input should be a valid integer" in bad.output
    twice = runner.invoke(app, ["capture", "tiny-wan", "--out", str(out), "--steps", "2", "--set", "steps=3"])
    assert twice.exit_code == 2 and "given twice" in twice.output
    comp = runner.invoke(app, ["compare", "a", "b", "--out", str(tmp_path / "cmp"), "--set", "probe_stp=1"])
    assert comp.exit_code == 2 and "valid keys: models, size, n, seed" in comp.output
    assert not out.exists() and not list(tmp_path.iterdir())


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = 0.1
    tags: list[str] = []


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "x"
    inner: Inner = Inner()


def test_dotted_keys_reach_nested_configs():
    cfg = config_from(Outer, {"name": "y"}, ["inner.rate=0.5", "inner.tags=[a, b]"])
    assert cfg == Outer(name="y", inner=Inner(rate=0.5, tags=["a", "b"]))
    with pytest.raises(OptionError, match="unknown key 'rte' in inner; valid keys: rate, tags"):
        config_from(Outer, {}, ["inner.rte=1"])
    with pytest.raises(OptionError, match="unknown key 'deeper' in name; valid keys: none"):
        config_from(Outer, {}, ["name.deeper=1"])
    with pytest.raises(OptionError, match="expected key=value"):
        config_from(Outer, {}, ["inner.rate"])
    assert config_from(CaptureConfig, {"model": "m", "steps": None}, ["text_len=2"]).text_len == 2
