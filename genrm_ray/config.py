"""Typed configs: a YAML file plus ``key=value`` overrides into a tree of dataclasses.

    cfg = load_config(GenRMJobConfig, "tests/configs/test_tiny.yaml", ["genrm.train.lr=1e-3", "genrm.deepspeed.zero_stage=3"])

Override values are parsed as YAML scalars (``1e-3`` -> float, ``true`` -> bool, ``null`` -> None,
``{CPU: 1}`` -> dict). Keys that do not exist and values of the wrong type fail at load time with the
key, the source (file or override) and, for unknown keys, the valid keys at that level.
Supported field types: bool, int, float (ints accepted), str, ``X | None``, ``Literal[...]``,
``list[X]``, ``dict[str, X]`` (with X a dataclass: named sections, merged entry by entry; ``key.name=null`` removes one) and nested
dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls``, updated by the YAML file at ``path`` (if any), then by ``overrides``."""
    cfg = cls()
    if path is not None:
        with open(path) as f:
            try:
                raw = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
        _update(cfg, raw, prefix="", source=str(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=1e-3)")
        *parents, leaf = key.strip().split(".")
        # `key=` means the empty string (YAML would read it as null)
        try:
            nested: dict[str, Any] = {leaf: yaml.safe_load(text) if text.strip() else ""}
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)}); quote a value "
                              "holding '=' or brackets, e.g. 'a.b=[\"x=1\"]'") from None
        for part in reversed(parents):
            nested = {part: nested}
        _update(cfg, nested, prefix="", source=f"override {item!r}")
    return cfg


def _yaml_problem(e: Exception) -> str:
    """PyYAML's message, with the line and column where it found the problem (1-based)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (for logging, wandb and YAML dumps)."""
    return dataclasses.asdict(cfg)


def _update(obj: Any, raw: dict[str, Any], prefix: str, source: str) -> None:
    """Set the fields of dataclass ``obj`` named in ``raw``, recursing into nested dataclasses."""
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            level = f"'{prefix[:-1]}'" if prefix else "the top level"
            raise ConfigError(
                f"{source}: unknown config key '{dotted}'; valid keys at {level}: {', '.join(names)}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{source}: '{dotted}' is a section ({type(current).__name__}); expected a mapping, "
                    f"got {value!r}"
                )
            _update(current, value, prefix=f"{dotted}.", source=source)
        elif isinstance(current, dict) and isinstance(value, dict) and _section_values(hints[key]):
            # A named set of sections (e.g. verifiers): entries merge, so an override changes one
            # field of one entry and leaves the rest.
            merged = dict(current)
            for name, entry in value.items():
                if entry is None:  # `verifiers.X=null` removes entry X
                    merged.pop(name, None)
                elif dataclasses.is_dataclass(merged.get(name)) and isinstance(entry, dict):
                    _update(merged[name], entry, prefix=f"{dotted}.{name}.", source=source)
                else:
                    merged[name] = _coerce(entry, typing.get_args(hints[key])[1], f"{dotted}.{name}", source)
            setattr(obj, key, merged)
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted, source))


def _section_values(tp: Any) -> bool:
    """Whether ``tp`` is ``dict[str, SomeDataclass]``."""
    args = typing.get_args(tp)
    return typing.get_origin(tp) is dict and len(args) == 2 and dataclasses.is_dataclass(args[1])


def _type_name(tp: Any) -> str:
    if typing.get_args(tp):  # list[str], str | None, ...
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp)


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` checked (and int -> float widened) against type ``tp``; ConfigError if it does not fit."""

    def fail() -> typing.NoReturn:
        raise ConfigError(f"{source}: '{key}' expects {_type_name(tp)}, got {value!r} ({type(value).__name__})")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                pass
        fail()
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{source}: '{key}' must be one of {list(args)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            fail()
        return [_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return {_coerce(k, args[0], key, source): _coerce(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):  # an entry of a dict of sections
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' is a section ({tp.__name__}); expected a mapping, got {value!r}")
        section = tp()
        _update(section, value, prefix=f"{key}.", source=source)
        return section
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 as a string: it wants "1.0e-3"
            try:
                return float(value)
            except ValueError:
                fail()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail()
        return value
    raise ConfigError(f"'{key}': unsupported field type {_type_name(tp)} in the config dataclass")
