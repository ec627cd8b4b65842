"""Settings from JSON and the command line: dataclasses built from dicts with unknown keys refused,
and the one range check every config uses. Torch-free."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, TypeVar

from .errors import InputError

__all__ = ["check_ranges", "from_dict", "to_dict", "key_value"]

T = TypeVar("T")


def check_ranges(config: Any, **intervals: str) -> None:
    """Raise :class:`InputError` naming the first field of ``config`` outside its interval.

    Intervals are written as in mathematics: ``"[0, 1]"`` closed, ``"[0, 1)"`` open at 1, ``"(0, inf)"``
    positive, e.g. ``check_ranges(self, cutmix_p="[0, 1]", ema="[0, 1)")``.
    """
    for name, interval in intervals.items():
        value = getattr(config, name)
        low, high = (float(x) for x in interval[1:-1].split(","))
        above = value >= low if interval[0] == "[" else value > low
        below = value <= high if interval[-1] == "]" else value < high
        if not (above and below):
            raise InputError(f"{name} must be in {interval}, got {value}")


def from_dict(cls: type[T], values: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``values``, refusing unknown keys.

    Raises:
        InputError: not a dict, a key that ``cls`` does not have (naming the valid ones), or a value
            whose type is not that of the field's default (``"300"`` or ``3.7`` or ``true`` for an integer).
    """
    if values is not None and not isinstance(values, dict):
        raise InputError(f"{where} settings must be an object of key: value, got {values!r}")
    values = dict(values or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InputError(f"unknown {where} key(s) {unknown}; valid keys: {sorted(names)}")
    for key, value in list(values.items()):
        default = names[key].default
        if default is not dataclasses.MISSING and not _same_kind(value, default):
            raise InputError(
                f"{where} {key!r} must be {_KIND_NAMES.get(type(default), type(default).__name__)}, got {value!r}"
            )
        if isinstance(default, tuple) and isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list"}


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` may stand for a field whose default is ``default`` (JSON types; an int is a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and (not default or all(_same_kind(v, default[0]) for v in value))
    return default is None or isinstance(value, type(default))


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of a command-line option; the value as JSON when it parses (numbers, true), else text."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"method option must be KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value
