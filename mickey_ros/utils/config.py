"""Frozen dataclass configs loaded from dicts and YAML, rejecting unknown keys by name.

Every config in the project (model, solver, node parameters, training) is a frozen dataclass with
documented defaults. These helpers build one from a (possibly nested) mapping so a typo in a YAML
file fails with the list of valid keys instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or mapping does not match its dataclass schema."""


def _type_error(value: Any, expected: str, where: str) -> ConfigError:
    return ConfigError(f"{where} must be {expected}, got {type(value).__name__} {value!r}")


def _convert(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return config_from_dict(annotation, value, where)  # a non-mapping raises ConfigError
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(value, non_none[0], where) if len(non_none) == 1 else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(value, "a list", where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], where) for v in value)
        if args and len(args) != len(value):
            raise ConfigError(f"{where} must have {len(args)} entries, got {len(value)}")
        return tuple(_convert(v, a, where) for v, a in zip(value, args or [Any] * len(value)))
    if annotation in (int, float) and isinstance(value, bool):  # bool is an int subclass
        raise _type_error(value, annotation.__name__, where)
    if annotation is float and isinstance(value, int):
        return float(value)
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        raise _type_error(value, annotation.__name__, where)
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build the dataclass ``cls`` from ``data``; unknown keys raise ``ConfigError``.

    Args:
        cls: a dataclass type (nested dataclass fields are built recursively).
        data: a mapping of field names to values.
        where: a label for error messages (file name or key path).

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     a: int = 1
    >>> config_from_dict(C, {"a": 2})
    C(a=2)
    """
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)  # YAML keys may be ints or None
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def config_from_yaml(cls: type[T], path: str | Path, key: str | None = None) -> T:
    """Load ``cls`` from a YAML file, optionally from a sub-mapping ``key``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, ValueError) as err:  # ValueError: bad dates, !!int x, not UTF-8
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if key is not None:
        if not isinstance(data, dict) or key not in data:
            raise ConfigError(f"{path} has no top-level key {key!r}")
        data = data[key]
    return config_from_dict(cls, data, str(path))


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view (tuples become lists) suitable for YAML, JSON or checkpoint embedding."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
