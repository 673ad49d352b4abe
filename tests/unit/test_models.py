"""Loading by built-in name, transformer directory, pipeline directory and hub id (a local hub-style cache)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import tiny_inputs
from diffusers import FlowMatchEulerDiscreteScheduler

from interp.adapters import ADAPTERS
from interp.models import BUILTINS, list_models, load_model


def test_builtins_load_and_hash(family):
    m = load_model(f"tiny-{family}")
    assert m.family == family and list(m.transformers) == ["transformer"]
    assert m.weight_hash == load_model(f"tiny-{family}").weight_hash
    assert len(m.weight_hash) == 64


def test_weight_hash_sees_weights():
    m = load_model("tiny-wan")
    h = m.weight_hash
    with torch.no_grad():
        m.transformer.proj_out.bias[0] += 1e-3
    m.__dict__.pop("weight_hash")
    assert m.weight_hash != h


def test_transformer_dir_round_trip(tmp_path, family):
    m = load_model(f"tiny-{family}")
    m.transformer.save_pretrained(tmp_path / "t")  # hooked blocks save like plain ones
    back = load_model(tmp_path / "t")
    assert back.family == family and back.weight_hash == m.weight_hash
    x, t, text = tiny_inputs(family, m.transformer)
    with torch.no_grad():
        assert torch.equal(
            m.adapter.forward(m.transformer, x, t, text), back.adapter.forward(back.transformer, x, t, text)
        )


def _pipeline_dir(root, two=True):
    a = ADAPTERS["wan"]
    a.tiny(0).save_pretrained(root / "transformer")
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "vae": ["diffusers", "AutoencoderKLWan"]}  # fmt: skip
    if two:
        a.tiny(1).save_pretrained(root / "transformer_2")
        index |= {"transformer_2": ["diffusers", "WanTransformer3DModel"], "boundary_ratio": 0.875}
    (root / "model_index.json").write_text(json.dumps(index))
    FlowMatchEulerDiscreteScheduler(shift=5.0).save_pretrained(root / "scheduler")


def test_pipeline_dir_two_experts(tmp_path):
    _pipeline_dir(tmp_path)
    (tmp_path / "interp.json").write_text(json.dumps({"task": "maze", "frames": 3}))
    m = load_model(tmp_path, dtype="float16")
    assert list(m.transformers) == ["transformer", "transformer_2"]
    assert m.boundary_ratio == 0.875 and m.scheduler.config.shift == 5.0
    assert m.task == {"task": "maze", "frames": 3}
    assert m.transformer.dtype == torch.float16
    assert m.expert_for(900.0) == "transformer" and m.expert_for(874.0) == "transformer_2"
    one = load_model("tiny-wan")
    assert m.weight_hash != one.weight_hash


def test_hub_id_from_local_cache(tmp_path):
    snap = tmp_path / "cache" / "models--acme--tiny-wan-pipe" / "snapshots" / ("a" * 40)
    _pipeline_dir(snap, two=False)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("a" * 40)
    m = load_model("acme/tiny-wan-pipe", cache_dir=tmp_path / "cache", local_files_only=True)
    assert m.weight_hash == load_model("tiny-wan").weight_hash
    assert m.source == str(snap)
    with pytest.raises(Exception, match="(?i)local|cache|offline|snapshot"):
        load_model("acme/missing", cache_dir=tmp_path / "cache", local_files_only=True)


def test_bad_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a built-in \\(tiny-wan"):
        load_model("no such thing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a transformer directory"):
        load_model(tmp_path / "empty")
    names = {b.name: b for b in list_models()}
    assert set(names) >= {"tiny-wan", "tiny-cogvideox", "tiny-ltx", "tiny-hunyuan", "maze-wan"}
    if not BUILTINS["maze-wan"].available:
        with pytest.raises(FileNotFoundError, match="not trained yet"):
            load_model("maze-wan")


def test_maze_style_dir_without_model_index(tmp_path):
    """Our trainer writes transformer/, scheduler/ and interp.json without a model_index.json."""
    d = tmp_path / "maze"
    _pipeline_dir(d, two=False)
    (d / "model_index.json").unlink()
    shutil.copytree(d, tmp_path / "copy")
    m = load_model(tmp_path / "copy")
    assert list(m.transformers) == ["transformer"] and m.scheduler.config.shift == 5.0


def test_hub_patterns_never_fetch_pickled_weights():
    import fnmatch

    from interp.models import HUB_PATTERNS
    from interp.pipelines.components import hub_patterns

    pickled = ["diffusion_pytorch_model.bin", "transformer/diffusion_pytorch_model.bin", "transformer/model.pt",
               "transformer_2/pytorch_model-00001-of-00002.bin", "text_encoder/pytorch_model.bin",
               "scheduler/x.pkl"]  # fmt: skip
    wanted = ["transformer/diffusion_pytorch_model-00001-of-00002.safetensors", "transformer/config.json",
              "diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"]  # fmt: skip
    pats = HUB_PATTERNS + hub_patterns({}, ["transformer", "text_encoder", "scheduler"])
    assert not [f for f in pickled if any(fnmatch.fnmatch(f, p) for p in pats)]
    assert all(any(fnmatch.fnmatch(f, p) for p in HUB_PATTERNS) for f in wanted)


def test_builtins_list_every_shipped_model_without_model_code():
    """interp.builtins (what `interp models` prints) names the adapter families in the registry's order and every
    shipped model, the maze LM included, with its task, parameter count (from the weight headers) and card."""
    import subprocess
    import sys

    from interp.adapters import ADAPTERS
    from interp.builtins import BUILTINS, FAMILIES

    assert FAMILIES == tuple(ADAPTERS)
    shipped = {n: b for n, b in BUILTINS.items() if b.path is not None and b.available}
    assert {"maze-wan", "maze-cogvideox", "organism", "maze-lm"} <= set(shipped)
    assert BUILTINS["maze-lm"].family == "lm" and BUILTINS["maze-lm"].task == "maze"
    assert BUILTINS["organism"].task == "suite"
    for b in shipped.values():
        assert b.card is not None and b.card.name == "MODEL_CARD.md"
    wan = load_model("maze-wan")
    assert BUILTINS["maze-wan"].parameters == sum(p.numel() for p in wan.transformer.parameters())
    code = (
        "import sys, interp.builtins as b; b.BUILTINS['maze-wan'].parameters; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'diffusers', 'nnsight')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    with pytest.raises(ValueError, match="load_lm"):
        load_model("maze-lm")
