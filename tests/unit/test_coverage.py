"""``interp models``' coverage table: one row per diffusers video transformer, its adapter, sites and pipelines."""

from __future__ import annotations

import inspect

import diffusers
import pytest
from typer.testing import CliRunner

from interp.adapters import EXACT
from interp.adapters.coverage import coverage_rows, pipelines_by_transformer
from interp.adapters.generic import video_transformer_classes
from interp.cli import app
from interp.sites import MOD_HOOKS


def test_one_row_per_video_transformer_exact_first():
    rows = coverage_rows()
    assert [r.class_name for r in rows[: len(EXACT)]] == [a.class_name for a in EXACT]
    assert sorted(r.class_name for r in rows) == sorted(c.__name__ for c in video_transformer_classes())
    by = {r.class_name: r for r in rows}
    assert by["WanTransformer3DModel"].kind == "exact"
    assert by["WanTransformer3DModel"].hooks == (
        "hook_resid_pre", *MOD_HOOKS, "hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post"
    )  # fmt: skip
    assert by["CogVideoXTransformer3DModel"].hooks == ("hook_resid_pre", *MOD_HOOKS, "hook_attn_out", "hook_mlp_out",
                                                       "hook_resid_post")  # fmt: skip
    assert by["AllegroTransformer3DModel"].kind == "generic"
    assert by["AllegroTransformer3DModel"].hooks == ("hook_resid_pre", "hook_resid_post")
    assert "skip blocks.{i} and sublayers" in by["WanTransformer3DModel"].sites
    heads = {r.family: r.heads for r in rows if r.heads}  # the attention modules with per-head sites
    assert heads == {"wan": ("attn", "attn2"), "cogvideox": ("attn",), "ltx": ("attn", "attn2"), "hunyuan": ("attn",),
                     "wanvace": ("attn", "attn2"), "skyreels": ("attn", "attn2"), "mochi": ("attn",),
                     "hunyuan15": ("attn",), "ltx2": ("attn", "audio_attn", "attn2", "audio_attn2",
                                                      "audio_to_video_attn", "video_to_audio_attn")}  # fmt: skip
    assert by["MochiTransformer3DModel"].head_sites == ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z")
    assert "per head blocks.{i}.attn2.hook_{q,k,v,z}" in by["SkyReelsV2Transformer3DModel"].sites
    assert not by["AllegroTransformer3DModel"].heads and "per head" not in by["AllegroTransformer3DModel"].sites
    assert by["AllegroTransformer3DModel"].sites.endswith("skip blocks.{i}")


def test_pipelines_match_diffusers_own_annotations():
    """Every (transformer, pipeline) pair found in the sources is what the imported pipeline class says."""
    pipes = pipelines_by_transformer()
    assert {"WanPipeline", "WanImageToVideoPipeline"} <= set(pipes["WanTransformer3DModel"])
    assert pipes["MochiTransformer3DModel"] == ("MochiPipeline",)
    assert "WanVACEPipeline" in pipes["WanVACETransformer3DModel"]
    assert "WanPipeline" not in pipes["WanVACETransformer3DModel"]
    checked = 0
    for cls in ("WanTransformer3DModel", "LTX2VideoTransformer3DModel", "HunyuanVideo15Transformer3DModel",
                "SkyReelsV2Transformer3DModel", "MochiTransformer3DModel", "CogVideoXTransformer3DModel"):  # fmt: skip
        for name in pipes[cls]:
            if name.endswith("(modular)"):
                continue
            params = inspect.signature(getattr(diffusers, name).__init__).parameters
            annotations = " ".join(str(p.annotation) for n, p in params.items() if n.startswith("transformer"))
            assert cls in annotations, (name, annotations)
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("width", [80, 120, 200])
def test_models_table_fits_the_terminal(width):
    res = CliRunner().invoke(app, ["models"], terminal_width=width, env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(map(len, lines)) <= width
    assert "generic" in res.output and "exact" in res.output
    if width >= 120:  # the per-head sites are listed
        assert "attn2.q/k/v/z" in res.output
    if width >= 200:  # wide enough that no class name is folded
        for r in coverage_rows():
            assert r.class_name in res.output
