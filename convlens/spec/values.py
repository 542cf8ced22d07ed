"""Spec values, text <-> Python: sizes like ``3x3``, shapes, numbers, names, booleans.

Each ``kind`` in the table of layers (``forms.Param.kind``) is read by ``parse_value`` and
written by ``format_value``.
"""

from __future__ import annotations

import difflib
import re

from convlens.ops.activations import NAMES as ACTIVATIONS

_INT = re.compile(r"[+-]?\d+\Z")
SIZES = re.compile(r"[+-]?\d+(x[+-]?\d+)*\Z", re.IGNORECASE)
EXPECTED = {
    "count": "a positive integer such as 32",
    "size": "a size such as 3 or 3x3",
    "size0": "a size of integers >= 0 such as 1 or 1x0",
    "dims": "a shape such as 28x28x1",
    "dims-1": "a shape such as 7x7x16 (one -1 allowed)",
    "pad": "a padding such as 1, 1x2 or 1x1x2x2",
    "rate": "a number between 0 and 1 such as 0.5",
    "float": "a number such as 0.99",
    "float?": "a number or none",
    "int": "an integer such as -1",
    "bool": "true or false",
    "padding": "valid or same",
    "padding1d": "valid, same or causal",
    "format": "channels_last or channels_first",
    "name": "a name of letters, digits, _ or -",
}


MAX_INT = 2**31 - 1  # any larger size or count would overflow the arrays it describes


def _whole(text: str) -> int:
    """``int(text)`` for text that ``_INT`` matched, or a ValueError when it is too large."""
    if len(text.lstrip("+-")) > len(str(MAX_INT)) or abs(int(text)) > MAX_INT:
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"
        raise ValueError(f"{shown} is too large: integers in a spec are at most {MAX_INT:,}")
    return int(text)


def _ints(text: str) -> list[int] | None:
    parts = text.lower().split("x")
    if not all(_INT.match(p) for p in parts):
        return None
    return [_whole(p) for p in parts]


def parse_value(kind: str, text: str, rank: int):
    """The Python value for ``text``, or raise ``ValueError`` with what was expected."""
    lower = text.lower()
    if kind == "count":
        if _INT.match(text) and _whole(text) > 0:
            return int(text)
    elif kind in ("size", "size0"):
        values = _ints(text)
        lowest = 0 if kind == "size0" else 1
        if values and all(v >= lowest for v in values):
            if len(values) == 1:
                return values[0]
            if len(values) == rank:
                return tuple(values)
            raise ValueError(
                f"expected 1 or {rank} sizes joined by 'x' for a {rank}D layer, got {len(values)}"
            )
    elif kind == "dims":
        values = _ints(text)
        if values and all(v > 0 for v in values):
            return tuple(values)
    elif kind == "dims-1":
        values = _ints(text)
        if values and all(v > 0 or v == -1 for v in values) and values.count(-1) <= 1:
            return tuple(values)
    elif kind == "pad":
        values = _ints(text)
        if values and all(v >= 0 for v in values) and len(values) in (1, 2, 4):
            if len(values) == 1:
                return values[0]
            if len(values) == 2:
                return tuple(values)
            return ((values[0], values[1]), (values[2], values[3]))
    elif kind in ("rate", "float", "float?"):
        if kind == "float?" and lower == "none":
            return None
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is not None and value == value and abs(value) != float("inf"):
            if kind != "rate" or 0 <= value <= 1:
                return value
    elif kind == "int":
        if _INT.match(text):
            return _whole(text)
    elif kind == "bool":
        if lower in ("true", "false"):
            return lower == "true"
    elif kind in ("padding", "padding1d"):
        allowed = ("valid", "same", "causal") if kind == "padding1d" else ("valid", "same")
        if lower in allowed:
            return lower
    elif kind == "activation":
        if lower in ACTIVATIONS:
            return lower
        raise ValueError(
            f"unknown activation {text!r}{did_you_mean(lower, ACTIVATIONS)}; expected one of: "
            + ", ".join(ACTIVATIONS)
        )
    elif kind == "format":
        if lower in ("channels_last", "channels_first"):
            return lower
    elif kind == "name":
        if re.match(r"[A-Za-z_][\w.-]*\Z", text):
            return text
    raise ValueError(f"expected {EXPECTED[kind]}")


def size_text(values) -> str:
    if values is None:
        return "none"
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return str(int(values))
    values = [int(v) for v in values]
    if len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


def format_value(kind: str, value) -> str:
    if kind in ("size", "size0"):
        return size_text(value)
    if kind in ("dims", "dims-1"):
        return "x".join(str(int(v)) for v in value)
    if kind == "pad":
        (top, bottom), (left, right) = value
        if top == bottom == left == right:
            return str(top)
        if top == bottom and left == right:
            return f"{top}x{left}"
        return f"{top}x{bottom}x{left}x{right}"
    if kind in ("rate", "float", "float?"):
        return "none" if value is None else repr(float(value))
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("count", "int"):
        return str(int(value))
    return str(value)


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
