"""A strict reader of nested dataclass configs: every key known, every value of its declared type.

`build(cls, data, where)` is `cls(**data)` after the checks; an error is one
line naming the key (`where`), the closest valid key or the allowed values.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Literal


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the key and the fix."""


def join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def check_keys(data: dict, known, where: str) -> None:
    """Fail on the first key of `data` not in `known`, naming the closest known key."""
    known = list(known)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {join(where, close[0])}?" if close else f"valid keys: {', '.join(known)}"
            raise ConfigError(f"{join(where, key)}: unknown key; {hint}")


def build(cls, data, where: str):
    """`cls(**data)` after checking every key and value against `cls`'s fields and their types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    known = [f.name for f in fields(cls)]
    check_keys(data, known, where)
    hints = typing.get_type_hints(cls)
    values = {name: coerce(hints[name], data[name], join(where, name)) for name in known if name in data}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where or 'params'}: {err}") from None


# A scalar type: the Python types a YAML value may have for it, and how an error names it.
SCALARS = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
}


def coerce(tp, value, where: str):
    """`value` as type `tp` (dataclass, bool, int, float, str, Literal, tuple, list, dict, Optional/union)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if is_dataclass(tp):
        return build(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not allowed; use one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(option, value, where)
            except ConfigError as err:
                errors.append(str(err).split(": ", 1)[-1])
        raise ConfigError(f"{where}: {value!r} fits none of the allowed forms ({'; '.join(errors)})")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else object
        out = [coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp in SCALARS:
        accepted, wanted = SCALARS[tp]
        if not isinstance(value, accepted) or (tp is not bool and isinstance(value, bool)):  # True is an int
            raise ConfigError(f"{where}: expected {wanted}, got {value!r}")
        return float(value) if tp is float else value
    return value


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def to_plain(obj):
    """A config as the nested dicts/lists of its YAML form."""
    if is_dataclass(obj):
        return {k: to_plain(getattr(obj, k)) for k in (f.name for f in fields(obj))}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
