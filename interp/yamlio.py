"""The one YAML reader: ``yaml.safe_load``'s safe constructor with bounds, used for every YAML the package reads
(experiment and training files, ``--set`` values).

Bounded input: a file larger than :data:`MAX_BYTES`, a document nested deeper than :data:`MAX_DEPTH`, or one whose
aliases expand to more than :data:`MAX_NODES` nodes (an alias bomb: a few lines that expand to gigabytes) is refused
before anything is built from it. A mapping that gives a key twice is an error (YAML says keys are unique; PyYAML
lets the last one win without a word). Every refusal is a :class:`YAMLInputError` (a ValueError) naming the source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: the largest experiment file ships at a few KiB
MAX_DEPTH = 64
MAX_NODES = 200_000  # scalars + collections after alias expansion


class YAMLInputError(ValueError):
    """A YAML input that is malformed, too large, too deep, an alias bomb, or gives a key twice."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader (safe tags only) that tracks nesting depth while composing and refuses duplicate keys."""

    def __init__(self, stream, where: str):
        super().__init__(stream)
        self.where, self.depth = where, 0

    def compose_node(self, parent, index):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise YAMLInputError(f"{self.where}: nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):  # the keys written here (a merge key's values may be overridden)
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    line = seen.get(key)
                except TypeError:  # an unhashable key: the base constructor says so
                    continue
                if line is not None:
                    raise YAMLInputError(f"{self.where}: key {key!r} given twice (lines {line} and "
                                         f"{key_node.start_mark.line + 1}); give each key once")  # fmt: skip
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded (shared subtrees counted at each use; memoised by identity)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once (the constructor builds a cycle, not an expansion)
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(c, memo) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        n = 1
    memo[id(node)] = min(n, MAX_NODES + 1)
    return memo[id(node)]


def load_yaml(text: str | bytes, where: str = "YAML input") -> Any:
    """One YAML document as Python data (safe tags only), within the bounds above; ``where`` names it in errors."""
    if len(text) > MAX_BYTES:
        raise YAMLInputError(f"{where}: {len(text):,} bytes; YAML input is limited to {MAX_BYTES:,} bytes")
    loader = _BoundedLoader(text, where)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise YAMLInputError(f"{where}: its aliases expand to more than {MAX_NODES:,} nodes (an alias bomb?); "
                                 "write the values out")  # fmt: skip
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise YAMLInputError(f"{where}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML file ``path`` (:func:`load_yaml`); its size is checked before it is read."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YAMLInputError(f"{path}: {size:,} bytes; YAML input is limited to {MAX_BYTES:,} bytes")
    return load_yaml(path.read_text(), str(path))
