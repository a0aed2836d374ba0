"""Declaring a spec's fields once (type, default, help, allowed values, bounds) and checking every field.

EvalSpec, TuneSpec, GenerationParams and Endpoint declare their fields with `spec_field`; `check_fields`
then checks each one against its declaration (type from the annotation, choices, bounds, list items) and
`spec_help` lists them for the CLI and the docs. Errors name the source, the line when known, and the field.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Callable

_NUMBER_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


def spec_field(default: Any = MISSING, *, help: str, choices: tuple | None = None, min: float | None = None,
               max: float | None = None, above: float | None = None, below: float | None = None,
               default_factory: Callable | None = None):
    """A dataclass field with its help text and what values it allows (`above`/`below`: strict bounds)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "below": below}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldHelp:
    name: str
    type: str
    default: Any
    help: str


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _type_name(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is typing.Union or origin is types.UnionType:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" (or empty)" if type(None) in args else "")
    return {int: "int", float: "number", str: "text", bool: "bool", dict: "mapping", Path: "path"}.get(hint, str(hint))


def spec_help(cls) -> list[FieldHelp]:
    """Each field of a spec class: name, type, default and help, in declaration order."""
    hints, out = _hints(cls), []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        out.append(FieldHelp(f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return out


def _is(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_value(value, hint, meta) -> str | None:
    """Why `value` does not fit the declared type and bounds, or None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(value, inner[0], meta) if len(inner) == 1 else None
    if origin is list:
        if not isinstance(value, list):
            return f"must be a list, got {value!r}"
        for item in value:
            problem = _check_value(item, args[0], meta) if args else None
            if problem:
                return problem.replace("must be", "each value must be", 1)
        return None
    if origin is dict or hint is dict:
        return None if isinstance(value, dict) else f"must be a mapping, got {value!r}"
    if hint in _NUMBER_WORDS and not _is(value, hint):
        return f"must be {_NUMBER_WORDS[hint]}, got {value!r}"
    if meta.get("choices") is not None and value not in meta["choices"]:
        return f"'{value}' is not one of: {', '.join(map(str, meta['choices']))}"
    if hint in (int, float):
        low, high, above, below = meta.get("min"), meta.get("max"), meta.get("above"), meta.get("below")
        if (low is not None and value < low) or (high is not None and value > high) or (
                above is not None and value <= above) or (below is not None and value >= below):
            return f"must be {_range_words(low, high, above, below)}, got {_quoted(value)}"
    return None


def _quoted(value) -> str:
    """A number as a message quotes it: a whole number too long to print (Python refuses past 4300 digits) by
    its size."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"a number of {value.bit_length()} bits"
    return repr(value)


def _range_words(low, high, above, below=None) -> str:
    if below is not None:
        if above is not None:
            return f"between {above} and {below} (both excluded)"
        return (f"at least {low} and " if low is not None else "") + f"below {below}"
    if above is not None:
        return f"above {above}" + (f" and at most {high}" if high is not None else "")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def check_fields(spec, fail: Callable[[str, str], None]) -> None:
    """Call fail(field, problem) for the first field whose value does not fit its declaration."""
    hints = _hints(type(spec))
    for f in dataclasses.fields(spec):
        problem = _check_value(getattr(spec, f.name), hints[f.name], f.metadata)
        if problem:
            fail(f.name, problem)


def failer(source: str, lines: dict[str, int] | None, error: type[Exception]) -> Callable[[str, str], None]:
    """fail(field, problem) raising `error` as '<source>, line N: field 'x': problem' (the line when known)."""
    def fail(key: str, problem: str):
        line = f", line {lines[key]}" if lines and key in lines else ""
        raise error(f"{source}{line}: field '{key}': {problem}")
    return fail
