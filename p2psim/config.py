"""Typed parsing of plain dicts (from TOML or Python) into frozen dataclasses.

Unknown keys and wrong types are rejected with a `ScenarioError` that names the
field by its dotted path, the bad value and what is allowed, so that a typo in
a scenario file fails before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar, Union

__all__ = [
    "INT64_MAX",
    "MAX_HISTORY_ROWS",
    "Range",
    "ScenarioError",
    "ScenarioWarning",
    "bounded",
    "check_ranges",
    "parse_dataclass",
    "to_plain",
    "warn",
]

INT64_MAX = 2**63 - 1  # numpy and torch hold counts and seeds as int64: a larger integer overflows there
# history rows a run may record (~20 MB of CSV); every row evaluates every peer's model, ~1 ms for small models
MAX_HISTORY_ROWS = 10**5

T = TypeVar("T")


class ScenarioError(ValueError):
    """A scenario that cannot run: the message names the field, the value and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)

    def within(self, prefix: str) -> ScenarioError:
        """The same error, with its field path prefixed by `prefix`."""
        if not prefix:
            return self
        field = f"{prefix}.{self.field}" if self.field and not self.field.startswith("[") else f"{prefix}{self.field}"
        return ScenarioError(field, self.reason)


class ScenarioWarning(UserWarning):
    """A scenario that runs, but not as a researcher may expect: the message names the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


def warn(field: str, message: str) -> None:
    """Issue a `ScenarioWarning`, attributed to the first caller outside p2psim (a notebook cell, a script)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(ScenarioWarning(field, message), stacklevel=level)


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric field can take: a closed or open interval, and why its ends are there.

    >>> Range(0, 1, low_open=True).contains(0.0), str(Range(1, 10**6))
    (False, '[1, 1e6]')
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the range (NaN never does)."""
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"

    def check(self, value: Any, field: str) -> None:
        """Raise `ScenarioError` on `field` unless `value` (a number, or each item of a list or table) is in range."""
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.check(item, f"{field}.{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                self.check(item, f"{field}[{i}]")
        elif value is not None and not self.contains(value):
            why = f" ({self.why})" if self.why else ""
            raise ScenarioError(field, f"must be in {self}, got {value!r}{why}")


def _number(x: float) -> str:
    """A range's end as a reader writes it: 1000, 1e6, 1048576, 0.001, 1e-9.

    >>> [_number(x) for x in (1000, 10**6, 2**20, 1e9, 1e-3, 1e-9, 0)]
    ['1000', '1e6', '1048576', '1e9', '0.001', '1e-9', '0']
    """
    if isinstance(x, int) and not (x >= 10**4 and str(x).rstrip("0") == "1"):
        return str(x)
    return f"{x:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def bounded(default: Any = dataclasses.MISSING, *, low: float, high: float, low_open: bool = False,
            high_open: bool = False, why: str = "", **kwargs: Any) -> Any:
    """A dataclass field with a documented `Range`, checked by `check_ranges`."""
    metadata = {"range": Range(low, high, low_open, high_open, why)}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def check_ranges(obj: Any) -> None:
    """Raise `ScenarioError` for the first field of the dataclass `obj` outside its `Range` (see `bounded`)."""
    for f in dataclasses.fields(obj):
        limits = f.metadata.get("range")
        if limits is not None:
            limits.check(getattr(obj, f.name), f.name)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _either(errors: list[ScenarioError]) -> ScenarioError:
    """One error for a value that no option of a union accepts, at the deepest field any option reached.

    >>> _either([ScenarioError("x", "must be an integer, got True (bool)"),
    ...          ScenarioError("x", "must be a number, got True (bool)")])
    ScenarioError('x: must be an integer or a number, got True (bool)')
    """
    depth = max(len(error.field) for error in errors)
    reasons = list(dict.fromkeys(error.reason for error in errors if len(error.field) == depth))
    field = next(error.field for error in errors if len(error.field) == depth)
    suffixes = {reason.rpartition(", got ")[2] for reason in reasons}
    if len(reasons) > 1 and len(suffixes) == 1 and all(r.startswith("must be ") and ", got " in r for r in reasons):
        kinds = [reason[len("must be ") :].rpartition(", got ")[0] for reason in reasons]
        return ScenarioError(field, f"must be {' or '.join(kinds)}, got {suffixes.pop()}")
    return ScenarioError(field, " or ".join(reasons))


def _parse_value(annotation: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if isinstance(value, float) and not math.isfinite(value) and annotation is not str:
        raise ScenarioError(path, f"must be a finite number, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        raise ScenarioError(path, f"must be at most {INT64_MAX} in size (a 64-bit integer), got {value!r}")
    # bool is a subclass of int, but `true` is not a count: only a bool annotation takes it as is
    if isinstance(annotation, type) and isinstance(value, annotation) and (annotation is bool or not isinstance(value, bool)):
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error, with its full field path
            return _parse_value(options[0], value, path)
        errors = []
        for option in options:
            try:
                return _parse_value(option, value, path)
            except ScenarioError as error:
                errors.append(error)
        raise _either(errors)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return parse_dataclass(annotation, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ScenarioError(path, f"must be a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_value(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ScenarioError(path, f"must have {len(args)} items, got {len(value)}")
        return tuple(_parse_value(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ScenarioError(path, f"must be a table of name = value, got {_describe(value)}")
        value_type = args[1] if args else Any
        return {str(k): _parse_value(value_type, v, f"{path}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ScenarioError(path, f"must be true or false, got {_describe(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(path, f"must be an integer, got {_describe(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(path, f"must be a number, got {_describe(value)}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ScenarioError(path, f"must be a string, got {_describe(value)}")
        return value
    raise TypeError(f"{path}: unsupported annotation {annotation!r}")


def parse_dataclass(cls: type[T], data: Any, path: str = "") -> T:
    """Build the frozen dataclass `cls` from the mapping `data`, checking keys and types.

    >>> @dataclasses.dataclass(frozen=True)
    ... class Link:
    ...     up_mbps: float
    ...     label: str = "home"
    >>> parse_dataclass(Link, {"up_mbps": 50})
    Link(up_mbps=50.0, label='home')
    >>> parse_dataclass(Link, {"up_mbps": 50, "lable": "x"}, "network.links[0]")
    Traceback (most recent call last):
    ...
    p2psim.config.ScenarioError: network.links[0].lable: unknown key 'lable' (allowed: up_mbps, label)
    """
    if not isinstance(data, Mapping):
        raise ScenarioError(path, f"must be a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    allowed = [f.name for f in fields]
    for key in data:
        if key not in allowed:
            name = str(key) or "''"  # an empty key still gets a field that names it
            field = f"{path}.{name}" if path else name
            raise ScenarioError(field, f"unknown key {key!r} (allowed: {', '.join(allowed)})")
    values = {}
    for f in fields:
        sub = f"{path}.{f.name}" if path else f.name
        if f.name in data:
            values[f.name] = _parse_value(hints[f.name], data[f.name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ScenarioError(sub, "is required")
    try:
        return cls(**values)
    except ScenarioError as error:
        raise error.within(path) from None


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and mappings as plain dicts and lists (TOML-ready), dropping None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        name = getattr(type(obj), "name", None)
        if isinstance(name, str) and "name" not in {f.name for f in dataclasses.fields(obj)}:
            out["name"] = name
        for f in dataclasses.fields(obj):
            value = to_plain(getattr(obj, f.name))
            if value is not None:
                out[f.name] = value
        return out
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
