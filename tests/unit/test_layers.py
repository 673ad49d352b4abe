"""House rules checked on the source: the library never imports the verbs, the trainers import in one direction,
the benchmarks stay outside the package, and shipped files are found as package data, never from the checkout."""

from __future__ import annotations

import ast
from pathlib import Path

import interp
import interp.models

PKG = Path(interp.__file__).resolve().parent
ROOT = PKG.parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-local imports included)."""
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom) and n.module:
            out.add(n.module)
            out.update(f"{n.module}.{a.name}" for a in n.names)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
    return out


def _library() -> list[Path]:
    skip = {PKG / "cli.py", PKG / "__main__.py"}
    return [p for p in [*PKG.rglob("*.py"), *(ROOT / "probes").rglob("*.py")]
            if p not in skip and (PKG / "apps") not in p.parents]  # fmt: skip


def test_the_library_never_imports_the_verbs_or_the_benchmarks():
    bad = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] == "benchmarks"
                                            or m.startswith(("interp.apps", "interp.cli")))
           for p in _library()}  # fmt: skip
    assert not {k: v for k, v in bad.items() if v}


def test_the_dit_trainer_does_not_import_the_lm():
    assert not [m for m in _imports(PKG / "train.py") if m.startswith("interp.lm")]


def test_shipped_files_are_package_data():
    for p in PKG.rglob("*.py"):
        text = p.read_text()
        assert "REPO_ROOT" not in text and "parents[" not in text, p
    assert interp.models.data_path().is_relative_to(PKG)
    for b in interp.models.BUILTINS.values():
        assert b.path is None or b.path.is_relative_to(PKG / "data"), b


def test_nothing_outside_a_kind_tests_for_a_kind():
    """Interventions dispatch by a method on each kind (a new kind is one file): no ``isinstance`` on a kind class."""
    kinds = ("Skip", "Swap", "Patch", "Ablate", "Steer", "Noise", "Ensemble")
    bad = []
    for p in PKG.rglob("*.py"):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "isinstance" and len(n.args) == 2:
                names = {x.id for x in ast.walk(n.args[1]) if isinstance(x, ast.Name)}
                bad += [f"{p.relative_to(ROOT)}:{n.lineno}"] if names & set(kinds) else []
    assert not bad
