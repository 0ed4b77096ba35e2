"""Configuration fields with declared bounds: the one place where a training or run setting is
checked, whether it comes from the command line or from Python.

A field declares its help text and its bounds in its metadata:

    batch_size: int = option(64, "trajectories per step", min=1)
    loss: str = option("tb", "objective", choices=("tb", "db"))

``check(cls, name, value)`` checks one value against its field; ``validate(obj)`` checks every
field of a dataclass instance (configuration dataclasses call it from ``__post_init__``). Both
raise ValueError (TypeError for a value of the wrong type) naming the field and what it expects.
The CLI prints the same message with the flag's spelling (``--batch-size``).
"""
from __future__ import annotations

import dataclasses
import math
import operator


def option(default, help: str, **bounds) -> dataclasses.Field:
    """A dataclass field with help text and bounds: min / max (inclusive), gt / lt (exclusive),
    choices, finite (floats; default True), check (a callable returning an error string or None)."""
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


def _type_name(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else f.type.__name__


def label(name: str, flag: bool) -> str:
    return "--" + name.replace("_", "-") if flag else name


def coerce(f: dataclasses.Field, value, flag: bool = False):
    """The value in the field's type (int for int fields, float for float fields), or TypeError."""
    t = _type_name(f)
    what = label(f.name, flag)
    if t == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{what} must be a bool, got {value!r}")
        return value
    if t == "int":
        if isinstance(value, bool):
            raise TypeError(f"{what} must be an integer, got {value!r}")
        try:
            return operator.index(value)
        except TypeError:
            raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise TypeError(f"{what} must be a number, got {value!r}")
        return float(value)
    if t == "str":
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a string, got {value!r}")
    return value


def check(cls, name: str, value, flag: bool = False):
    """Checks one value against the bounds of field `name` of dataclass `cls`; returns it coerced
    to the field's type. Raises ValueError / TypeError naming the field (or its flag)."""
    f = _fields(cls)[name]
    v = coerce(f, value, flag)
    m = f.metadata
    what = label(name, flag)
    if "choices" in m and v not in m["choices"]:
        raise ValueError(f"unknown {what} {v!r}; choose one of {', '.join(map(str, m['choices']))}")
    if isinstance(v, float) and m.get("finite", True) and not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v}")
    # written as `not (v >= lo)` so that NaN fails every bound
    if "min" in m and not v >= m["min"]:
        raise ValueError(f"{what} must be >= {m['min']}, got {v}")
    if "max" in m and not v <= m["max"]:
        raise ValueError(f"{what} must be <= {m['max']}, got {v}")
    if "gt" in m and not v > m["gt"]:
        raise ValueError(f"{what} must be > {m['gt']}, got {v}")
    if "lt" in m and not v < m["lt"]:
        raise ValueError(f"{what} must be < {m['lt']}, got {v}")
    if "check" in m:
        err = m["check"](v)
        if err:
            raise ValueError(f"{what} {err}")
    return v


def validate(obj, flag: bool = False) -> None:
    """Checks (and coerces in place) every field of a configuration dataclass instance."""
    for f in dataclasses.fields(obj):
        object.__setattr__(obj, f.name, check(type(obj), f.name, getattr(obj, f.name), flag))


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}
