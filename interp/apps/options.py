"""A verb's options declared once: its pydantic config. The few common fields have typer options (default None: the
config owns every default); every field is reachable as ``--set key=value``.

>>> config_from(CaptureConfig, {"model": "tiny-wan", "steps": 4}, ["text_len=2", "sites=[hook_out]"])
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from interp.yamlio import load_yaml


class OptionError(ValueError):
    """A bad ``--set`` key or value, or a config that does not validate: the message names the key (and valid ones)."""


def _fields(model: Any) -> list[str]:
    return list(getattr(model, "model_fields", {}))


def _sub_model(model: Any, name: str) -> type[BaseModel] | None:
    ann = getattr(model.model_fields.get(name), "annotation", None)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def apply_sets(cls: type[BaseModel], data: dict, sets: list[str]) -> dict:
    """``data`` with each ``key=value`` of ``sets`` put in (dotted keys reach nested configs; values are YAML)."""
    data = dict(data)
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(f"--set {item!r}: expected key=value, e.g. {_fields(cls)[0]}=...")
        parts, node, model = key.split("."), data, cls
        for i, part in enumerate(parts):
            if model is None or part not in model.model_fields:
                where = ".".join(parts[:i])
                valid = ", ".join(_fields(model)) if model is not None else "none (it is a value, not a config)"
                raise OptionError(
                    f"--set {key}: unknown key {part!r}{f' in {where}' if where else ''}; valid keys: {valid}"
                )
            if i == len(parts) - 1:
                node[part] = load_yaml(value, f"--set {key}")
            else:
                sub = node.get(part)
                node[part] = sub = dict(sub.model_dump() if isinstance(sub, BaseModel) else sub or {})
                node, model = sub, _sub_model(model, part)
    return data


def config_from(cls: type[BaseModel], given: dict, sets: list[str]) -> BaseModel:
    """``cls`` validated from the typer options given (None: not given, the config's default) and ``--set`` on top.
    A key set both ways, an unknown key or an invalid value raises :class:`OptionError`."""
    data = {k: v for k, v in given.items() if v is not None}
    twice = [s.partition("=")[0].strip() for s in sets if s.partition("=")[0].strip() in data]
    if twice:
        raise OptionError(f"--set {twice[0]}: given twice (also as --{twice[0].replace('_', '-')}); give it once")
    data = apply_sets(cls, data, sets)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<top>"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg}")
        raise OptionError("invalid options: " + "; ".join(lines)) from None
