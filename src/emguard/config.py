"""Dataclass configs <-> YAML files <-> command-line flags (TRL's style).

A config is a plain dataclass whose fields carry ``metadata={"help": ...}``. :func:`add_dataclass_args`
turns it into argparse options (``--learning-rate`` and ``--learning_rate`` both work), and
:func:`resolve_config` merges, in increasing priority: the dataclass defaults, a YAML file given with
``--config``, then the flags the user typed. Unknown YAML keys are an error naming the key and file, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or flag that cannot be used; the message says which key and why."""


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_scalar_or_yaml(text: str) -> Any:
    """Parse a flag value written as YAML/JSON (``'{"a": 1}'``, ``[a, b]``), falling back to the raw string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _parse_yaml_or_file(text: str) -> Any:
    """A structured flag: inline YAML/JSON, or the path of a .yaml/.yml/.json file holding it."""
    if text.lower().endswith((".yaml", ".yml", ".json")) and Path(text).is_file():
        return load_yaml(text)
    return _parse_scalar_or_yaml(text)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one option per dataclass field. Defaults are suppressed so that only typed flags override."""
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        names = [f"--{f.name.replace('_', '-')}"]
        if "_" in f.name and tp is not bool:  # --learning_rate works too (TRL style); booleans stay short
            names.append(f"--{f.name}")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        if default not in (None, "", [], {}):
            help_text = f"{help_text} (default: {repr(default).replace('%', '%%')})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float, str):
            kwargs["type"] = tp
            kwargs["metavar"] = f.metadata.get("metavar", tp.__name__.upper())
        elif origin is list or tp is list:
            kwargs["nargs"] = "+"
            kwargs["metavar"] = f.metadata.get("metavar", "VALUE")
            kwargs["type"] = _parse_scalar_or_yaml
        else:  # dicts and anything structured: a YAML/JSON string or a file of it
            kwargs["type"] = _parse_yaml_or_file
            kwargs["metavar"] = f.metadata.get("metavar", "YAML")
        parser.add_argument(*names, **kwargs)


def _coerce(name: str, value: Any, tp: Any, source: str) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: '{name}' may not be empty")
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.lower()
                if low in ("true", "yes", "1", "on"):
                    return True
                if low in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
        if origin is list or tp is list:
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            if not isinstance(value, list):
                value = [value]
            return list(value)
        if (origin is dict or tp is dict) and not isinstance(value, dict):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: '{name}' must be {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of option names to values")
    return data


def build_config(cls: type[T], values: dict[str, Any], *, source: str = "config") -> T:
    """Make a ``cls`` from a mapping, checking names and coercing types. ``-`` in keys is read as ``_``."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in names:
            close = [n for n in names if n.startswith(name[:4])]
            hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
            raise ConfigError(f"{source}: unknown option '{key}'{hint}")
        kwargs[name] = _coerce(name, value, hints[name], source)
    obj = cls(**kwargs)
    post = getattr(obj, "validate", None)
    if callable(post):
        post()
    return obj


def resolve_config(cls: type[T], args: argparse.Namespace, *, config_attr: str = "config") -> T:
    """Defaults < YAML file (``args.config``) < flags explicitly typed on the command line."""
    values: dict[str, Any] = {}
    source = "command line"
    cfg_path = getattr(args, config_attr, None)
    if cfg_path:
        values.update(load_yaml(cfg_path))
        source = f"{cfg_path} + command line"
    names = {f.name for f in dataclasses.fields(cls)}
    for k, v in vars(args).items():
        if k in names:
            values[k] = v
    return build_config(cls, values, source=source)


def to_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def dump_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
