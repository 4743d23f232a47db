"""Typed conversion of JSON-like dicts (config.json, a checkpoint's settings, --config files)
into the settings dataclasses, checking keys and value types; one line naming the setting."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ssimae.errors import SsimaeError


def from_dict(cls, data: dict, where: str):
    """Build dataclass ``cls`` from a JSON-like dict, checking keys and value types.

    Nested dataclass fields are converted recursively; lists become tuples where the
    field is a tuple; ints are accepted for floats. Raises SsimaeError naming ``where``
    and the field on unknown keys or wrong types.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise SsimaeError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise SsimaeError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise SsimaeError(f"{where}: {e}") from None


def _convert(tp, value, where: str):
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in (a for a in args if a is not type(None)):
            try:
                return _convert(a, value, where)
            except SsimaeError:
                continue
        raise SsimaeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(tp)
    if ok is not None:
        if not ok(value):
            raise SsimaeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return float(value) if tp is float else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise SsimaeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        item_types = [args[0]] * len(value) if args[-1] is Ellipsis else args
        return tuple(_convert(t, v, where) for t, v in zip(item_types, value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise SsimaeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    raise TypeError(f"{where}: unsupported settings type {tp!r}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def at_most(flag: str, value, ceiling) -> None:
    """SsimaeError unless ``value <= ceiling`` (the documented ceilings: docs/commands.md, "Limits")."""
    if value > ceiling:
        raise SsimaeError(f"{flag} must be at most {ceiling} (a documented ceiling), got {value}")
