"""Typed `key=value` overrides for config dataclasses (profiles, `--set`, method hyperparameters).

A field with a fixed set of values says so in its metadata, ``field(default="joint", metadata={"help": ...,
"choices": ("joint", "detached", "adversarial")})``; `make_config` (hence `methods.resolve`, when a run starts)
rejects any other value with the choices and a "did you mean", before any training.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from splits.registry import did_you_mean


class ConfigError(ValueError):
    """A bad profile, key or value; the message names it."""


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a dataclass annotation (int, float, bool, str, list[...], X | None)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where)
    if origin is list:
        (item,) = typing.get_args(annotation)
        items = value if isinstance(value, list) else str(value).split(",")
        return [coerce(v, item, where) for v in items]
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads "2e-5" (no dot) as text
        try:
            value = float(value)
        except ValueError:
            pass
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:  # NaN (YAML's .nan): never a meaningful setting, and it would only surface mid-training
            raise ConfigError(f"{where}: expected a number, got NaN")
        return float(value)
    if annotation is str and value is not None and not isinstance(value, (list, dict)):
        return str(value)
    if annotation not in (bool, int, float, str):
        return value
    raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")


def describe_fields(config_cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) of every field of a config dataclass, for `python -m bench ls METHOD`."""
    hints = typing.get_type_hints(config_cls)
    rows = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        kind = getattr(hints[f.name], "__name__", None) if typing.get_origin(hints[f.name]) is None else None
        text = f.metadata.get("help", "")
        if "choices" in f.metadata:
            text += f" [choices: {', '.join(map(str, f.metadata['choices']))}]"
        rows.append((f.name, kind or str(hints[f.name]).replace("typing.", ""), default, text.strip()))
    return rows


def check_choices(config, where: str) -> None:
    """Every field of a config dataclass whose metadata lists ``choices`` holds one of them (each item, for a list;
    None passes where the field allows it)."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if item not in choices:
                raise ConfigError(f"{where}.{f.name}: {item!r} is not one of {', '.join(map(str, choices))}."
                                  f"{did_you_mean(item, choices)}")


def make_config(config_cls: type, overrides: dict[str, Any], where: str):
    """A dataclass instance with `overrides` applied, each key, type and choice checked."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown hyperparameter {key!r}.{did_you_mean(key, known)} "
                              f"Known: {', '.join(sorted(known))}")
        values[key] = coerce(value, hints[key], f"{where}.{key}")
    config = config_cls(**values)
    check_choices(config, where)
    return config
