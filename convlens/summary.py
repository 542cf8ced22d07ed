"""``model.summary()``: the table Keras 3 prints for a Sequential model, byte for byte.

The table is rendered with ``rich`` exactly as Keras renders it (same box, same column
widths, same markup), so a program that swaps ``keras`` for ``convlens`` prints the same
text. The one addition is ``columns``: extra ``(title, fn(layer) -> str)`` columns after
Keras's own, for explanations such as receptive field or multiply-accumulate counts.

What is read from the model (duck-typed, so tests can pass stand-ins):

- ``model.name``, ``model.layers`` (without the InputLayer), ``model.trainable_weights``,
  ``model.non_trainable_weights`` (variables with ``.shape`` and ``.dtype``), and
  ``model.optimizer`` (None, or ``.built`` and ``.variables``) with ``model.compiled``;
- per layer: ``name``, ``type(layer).__name__``, ``built``, ``output_shape`` (None prints
  ``?``), ``count_params()`` (called only when built), ``trainable`` and ``weights``.

Example (in a terminal 80 columns wide, or when output is not a terminal):
    >>> from convlens.layers import Conv2D, Input
    >>> from convlens.models import Sequential
    >>> model = Sequential([Input((28, 28, 1)), Conv2D(32, 3, name="conv2d")], name="sequential")
    >>> model.summary()
    Model: "sequential"
    ┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
    ┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
    ┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
    │ conv2d (Conv2D)                 │ (None, 26, 26, 32)     │           320 │
    └─────────────────────────────────┴────────────────────────┴───────────────┘
     Total params: 320 (1.25 KB)
     Trainable params: 320 (1.25 KB)
     Non-trainable params: 0 (0.00 B)
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable, Sequence

import numpy as np
import rich.console
import rich.markup
import rich.table

__all__ = ["print_summary", "summary_text", "count_params", "weight_memory_size",
           "readable_memory_size"]

# Keras's layout for a sequential model: total width and where each column ends.
_BASE_LINE_LENGTH = 88
_BASE_POSITIONS = (0.45, 0.80, 1.0)
# ... and for a graph (a functional model that is not a plain chain), with "Connected to".
_GRAPH_LINE_LENGTH = 108
_GRAPH_POSITIONS = (0.3, 0.56, 0.74, 1.0)
_TRAINABLE_EXTRA_LENGTH = 12
_TRAINABLE_SHRINK = 0.90
# An extra column gets at least this many characters, or its title plus a margin.
_EXTRA_COLUMN_MIN_WIDTH = 19
_EXTRA_COLUMN_MARGIN = 4
_MIN_COLUMN_WIDTH = 4
_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")

ExtraColumn = tuple[str, Callable[[object], str]]


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------


def count_params(weights) -> int:
    """Number of scalars in ``weights`` (duplicates counted every time, as Keras does)."""
    return int(sum(math.prod(tuple(w.shape)) for w in weights))


def _bytes_per_element(dtype) -> int:
    try:
        return int(np.dtype(str(dtype) if dtype is not None else "float32").itemsize)
    except TypeError:
        return 4


def weight_memory_size(weights) -> float:
    """Bytes the distinct ``weights`` occupy, each at its own dtype's element size."""
    distinct = {id(w): w for w in weights}.values()
    return float(
        sum(
            math.prod(tuple(w.shape)) * _bytes_per_element(getattr(w, "dtype", "float32"))
            for w in distinct
        )
    )


def readable_memory_size(num_bytes: float) -> str:
    """``73.50 KB``-style size with binary (1024) steps and two decimals."""
    value = float(num_bytes)
    for unit in _UNITS[:-1]:
        if value < 1024:
            return f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} {_UNITS[-1]}"


# ---------------------------------------------------------------------------------------------
# Markup (what a terminal shows in colour; plain text elsewhere)
# ---------------------------------------------------------------------------------------------


def _number(value) -> str:
    colour = 45 if value is None else 34
    return f"[color({colour})]{value}[/]"


def _symbol(text: str) -> str:
    return f"[color(33)]{text}[/]"


def _bold(text: str, colour: int | None = None) -> str:
    if colour is None:
        return f"[bold]{text}[/]"
    return f"[bold][color({colour})]{text}[/][/]"


# ---------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------


def _format_shape(shape) -> str:
    # A single shape is a tuple of ints/None; several outputs are a list/tuple of shapes.
    if isinstance(shape, (list, tuple)) and any(isinstance(d, (list, tuple)) for d in shape):
        parts = [_format_shape(s) for s in shape]
        opening, closing = ("[", "]") if isinstance(shape, list) else ("(", ")")
        return opening + ", ".join(parts) + closing
    return "(" + ", ".join(_number(d) for d in shape) + ")"


def _shape_cell(layer) -> str:
    shape = getattr(layer, "output_shape", None)
    if shape is None:
        return "?"
    return _format_shape(shape)


def _rows(layer, expand_nested: bool, level: int = 0):
    """``(nesting level, layer)`` for a layer and, with ``expand_nested``, a nested model's
    layers below it, as Keras lists them."""
    yield level, layer
    if expand_nested and getattr(layer, "layers", None):
        for inner in layer.layers:
            yield from _rows(inner, expand_nested, level + 1)


def _name_cell(layer, prefix: str = "") -> str:
    name = rich.markup.escape(prefix + str(layer.name))
    class_name = rich.markup.escape(type(layer).__name__)
    return f"{name} ({_symbol(class_name)})"


def _params_cell(layer) -> str:
    if not hasattr(layer, "built"):
        return _number(0)
    if not layer.built:
        return f"{_number(0)} (unbuilt)"
    return _number(f"{layer.count_params():,}")


def _trainable_cell(layer) -> str:
    if len(getattr(layer, "weights", None) or ()) == 0:
        return _bold("-")
    return _bold("Y", colour=34) if layer.trainable else _bold("N", colour=9)


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


def _extra_width(title: str) -> int:
    return max(_EXTRA_COLUMN_MIN_WIDTH, len(title) + _EXTRA_COLUMN_MARGIN)


def _layout(
    line_length: int | None,
    positions: Sequence[float] | None,
    show_trainable: bool,
    extra_titles: Sequence[str],
    graph: bool = False,
) -> tuple[int, list[int]]:
    """Table width and the width of every column.

    Without extra columns this is Keras's rule: 88 characters (100 with the Trainable
    column, whose positions are Keras's scaled by 0.9), capped at the terminal width
    minus 4. Each extra column is a fixed number of characters, added to the default
    width; Keras's columns share what is left by Keras's positions, unless ``positions``
    names the end of every column itself.
    """
    default_length = _GRAPH_LINE_LENGTH if graph else _BASE_LINE_LENGTH
    base_positions = _GRAPH_POSITIONS if graph else _BASE_POSITIONS
    keras_ends = list(positions) if positions else list(base_positions)
    if show_trainable:
        default_length += _TRAINABLE_EXTRA_LENGTH
        if keras_ends[-1] <= 1:
            keras_ends = [p * _TRAINABLE_SHRINK for p in keras_ends] + [1.0]
        else:  # absolute positions: the Trainable column gets its own characters
            keras_ends = keras_ends + [keras_ends[-1] + _TRAINABLE_EXTRA_LENGTH]
    keras_column_count = len(base_positions) + int(show_trainable)

    extra_widths = [_extra_width(title) for title in extra_titles]
    column_count = keras_column_count + len(extra_widths)
    terminal = shutil.get_terminal_size().columns - 4
    if extra_widths:
        # Extra columns are convlens's own: they may widen the table past a narrow terminal
        # (Keras's columns keep at least 60 characters) rather than fail.
        default_length = max(min(default_length + sum(extra_widths), terminal),
                             60 + sum(extra_widths))
    else:
        default_length = min(default_length, terminal)

    if extra_widths and positions and len(positions) == column_count:
        ends, extra_widths = list(positions), []
    elif extra_widths:
        ends = keras_ends[:keras_column_count]
    else:
        ends = keras_ends  # Keras computes (and checks) a width even for unused positions
    if len(ends) < keras_column_count:
        raise ValueError(
            f"`positions` must give the end of each of the {keras_column_count} columns "
            f"(or of all {column_count} with the extra columns); received: {list(positions)}."
        )
    relative = ends[-1] <= 1
    if line_length:
        length = line_length
    elif relative:
        length = default_length
    else:  # absolute positions say how wide the table is
        length = int(ends[-1]) + sum(extra_widths)
    own_length = length - sum(extra_widths) if relative else length
    return length, _widths_from_ends(own_length, ends) + extra_widths


def _widths_from_ends(length: int, ends: Sequence[float]) -> list[int]:
    """Column widths from where each column ends: fractions of ``length`` or characters."""
    relative = ends[-1] <= 1
    widths, used = [], 0
    for end in ends:
        width = (int(end * length) if relative else int(end)) - used
        if width < _MIN_COLUMN_WIDTH:
            raise ValueError(
                "Insufficient console width to print summary: a column would be "
                f"{width} characters wide (line_length={length}, positions={list(ends)}). "
                "Pass a larger `line_length` or widen the terminal."
            )
        widths.append(width)
        used += width
    return widths


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def _validate_columns(columns) -> list[ExtraColumn]:
    if columns is None:
        return []
    checked = []
    for item in columns:
        if (
            not isinstance(item, (tuple, list))
            or len(item) != 2
            or not isinstance(item[0], str)
            or not callable(item[1])
        ):
            raise TypeError(
                "Each entry of `columns` must be a (title, fn) pair with a str title and a "
                f"callable fn(layer) -> str; received: {item!r}."
            )
        checked.append((item[0], item[1]))
    return checked


def _select_layers(layers: list, layer_range) -> list:
    if layer_range is None:
        return layers
    if len(layer_range) != 2 or not all(isinstance(part, str) for part in layer_range):
        raise ValueError(
            "`layer_range` must be two layer names (or regexes), the first and the last "
            f"layer to list; received: {layer_range!r}."
        )
    first, last = (
        [i for i, layer in enumerate(layers) if re.match(pattern, layer.name)]
        for pattern in layer_range
    )
    if not first or not last:
        names = [layer.name for layer in layers]
        raise ValueError(
            f"`layer_range` {list(layer_range)} matches no layer of the model; "
            f"its layers are {names}."
        )
    start, stop = min(first), max(last)
    if start > stop:  # the range was given backwards
        start, stop = min(last), max(first)
    return layers[start : stop + 1]


def _footer_line(label: str, count: int, num_bytes: float) -> str:
    return _bold(f" {label}: ") + _number(f"{count:,}") + f" ({readable_memory_size(num_bytes)})"


def summary_text(model) -> str:
    """What ``model.summary()`` prints, as one string (the HTML report and the web page show it)."""
    chunks: list[str] = []
    model.summary(print_fn=lambda text, *args, **kwargs: chunks.append(text))
    return "".join(chunks)


def print_summary(
    model,
    line_length: int | None = None,
    positions: Sequence[float] | None = None,
    print_fn: Callable[..., object] | None = None,
    show_trainable: bool = False,
    columns: Sequence[ExtraColumn] | None = None,
    *,
    layer_range: Sequence[str] | None = None,
    expand_nested: bool = False,
) -> None:
    """Print the Keras 3 summary table of a sequential ``model``.

    Args:
        model: an object with ``name``, ``layers`` (no InputLayer), ``trainable_weights``,
            ``non_trainable_weights``, ``optimizer`` and ``compiled`` (see the module
            docstring); a graph also has ``sequential_like = False`` and
            ``connections(layer)``.
        line_length: total width of the table. Defaults to 88 (100 with
            ``show_trainable``, wider with extra ``columns``), capped at the terminal
            width minus 4 (``COLUMNS`` in the environment counts).
        positions: where each column ends: fractions of ``line_length`` if the last is
            <= 1, else absolute character positions. Defaults to ``[0.45, 0.80, 1.0]``.
            With ``show_trainable`` they are scaled by 0.9 and the Trainable column ends
            at 1.0, as in Keras.
        print_fn: called once with the whole rendered text (ending in a newline), as
            Keras does. By default the text goes to stdout through ``rich``, styled when
            stdout is a terminal.
        show_trainable: add Keras's Trainable column (Y, N, or - for layers without
            weights).
        columns: extra ``(title, fn)`` pairs; ``fn(layer)`` returns the cell text (plain
            text, not rich markup). They come after Param # (and Trainable).
        layer_range: ``(first, last)`` layer-name regexes; only the layers from the first
            layer matching ``first`` to the last matching ``last`` are listed (the totals
            still cover the whole model), as in Keras.
        expand_nested: also list the layers of each nested model under its row, indented
            with Keras's ``└`` marks.

    Raises:
        ValueError: if a column would be narrower than 4 characters, ``positions`` has
            too few entries, or ``layer_range`` is not two strings or matches no layer.
        TypeError: if an entry of ``columns`` is not a ``(str, callable)`` pair.
    """
    extras = _validate_columns(columns)
    # A graph (``sequential_like`` False) adds Keras's Connected to column.
    graph = not getattr(model, "sequential_like", True)
    length, widths = _layout(line_length, positions, show_trainable, [t for t, _ in extras],
                             graph)

    headers = ["Layer (type)", "Output Shape", "Param #"]
    justify = ["left", "left", "right"]
    if graph:
        headers.append("Connected to")
        justify.append("left")
    if show_trainable:
        headers.append("Trainable")
        justify.append("center")
    for title, _ in extras:
        headers.append(rich.markup.escape(title))
        justify.append("left")

    table = rich.table.Table(
        *[
            rich.table.Column(header, justify=how, width=width)
            for header, how, width in zip(headers, justify, widths[: len(headers)], strict=True)
        ],
        width=length,
        show_lines=True,
    )
    for layer in _select_layers(list(model.layers), layer_range):
        for nested_level, row_layer in _rows(layer, expand_nested):
            # Keras's prefix for a nested model's layers; their connections are not the model's
            prefix = "   " * nested_level + "└ " if nested_level else ""
            row = [_name_cell(row_layer, prefix), _shape_cell(row_layer), _params_cell(row_layer)]
            if graph:
                row.append(rich.markup.escape(model.connections(row_layer))
                           if not nested_level else "-")
            if show_trainable:
                row.append(_trainable_cell(row_layer))
            row.extend(rich.markup.escape(str(fn(row_layer))) for _, fn in extras)
            table.add_row(*row)

    trainable = list(model.trainable_weights)
    non_trainable = list(model.non_trainable_weights)
    counts = {
        "Trainable params": (count_params(trainable), weight_memory_size(trainable)),
        "Non-trainable params": (count_params(non_trainable), weight_memory_size(non_trainable)),
    }
    optimizer = model.optimizer
    if model.compiled and optimizer is not None and optimizer.built:
        slots = list(optimizer.variables)
        counts["Optimizer params"] = (count_params(slots), weight_memory_size(slots))
    total = (
        sum(count for count, _ in counts.values()),
        sum(size for _, size in counts.values()),
    )

    # Keras's table always fits the terminal; convlens's extra columns may be wider.
    width = max(length, shutil.get_terminal_size().columns) if extras else None
    if print_fn is None:
        console = rich.console.Console(highlight=False, width=width)
    else:
        # Plain text for the callback, whatever stdout is.
        console = rich.console.Console(highlight=False, force_terminal=False, color_system=None,
                                       width=width)
        console.begin_capture()

    console.print(_bold(f'Model: "{rich.markup.escape(str(model.name))}"'))
    console.print(table)
    console.print(_footer_line("Total params", *total))
    for label, (count, size) in counts.items():
        console.print(_footer_line(label, count, size))

    if print_fn is not None:
        print_fn(console.end_capture())
