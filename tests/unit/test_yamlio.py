"""The one YAML reader: safe tags, bounded size, depth and alias expansion, duplicate keys refused."""

from __future__ import annotations

import pytest

from interp import yamlio
from interp.yamlio import YAMLInputError, load_yaml, read_yaml


def test_reads_what_safe_load_reads_and_merge_keys_may_override():
    assert load_yaml("a: 1\nb: [1, 2.5, {c: d}]\n") == {"a": 1, "b": [1, 2.5, {"c": "d"}]}
    assert load_yaml("x: &a {p: 1, q: 2}\ny:\n  <<: *a\n  p: 3\n") == {"x": {"p": 1, "q": 2}, "y": {"p": 3, "q": 2}}
    assert load_yaml("") is None


def test_a_key_given_twice_is_an_error_naming_both_lines():
    with pytest.raises(YAMLInputError, match=r"key 'steps' given twice \(lines 2 and 4\)"):
        load_yaml("sampler:\n  steps: 4\n  seed: 0\n  steps: 8\n", "e.yaml")


def test_python_tags_are_refused():
    with pytest.raises(YAMLInputError, match="not valid YAML"):
        load_yaml("!!python/object/apply:os.system ['echo hi']")


def test_alias_bomb_is_refused_before_it_is_built():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefg", "bcdefgh")]
    with pytest.raises(YAMLInputError, match="alias bomb"):
        load_yaml("\n".join(levels))  # 10**8 nodes once expanded
    assert len(load_yaml("\n".join(levels[:3]))["c"]) == 10  # 1,110 nodes: fine


def test_depth_and_size_are_bounded(tmp_path, monkeypatch):
    ok = "[" * yamlio.MAX_DEPTH + "]" * yamlio.MAX_DEPTH
    load_yaml(ok)
    with pytest.raises(YAMLInputError, match="nested deeper than 64 levels"):
        load_yaml("[" + ok + "]")
    monkeypatch.setattr(yamlio, "MAX_BYTES", 100)
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 200)
    with pytest.raises(YAMLInputError, match=r"big.yaml: 203 bytes; YAML input is limited to 100 bytes"):
        read_yaml(big)
