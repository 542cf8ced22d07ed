"""Model specs: a one-line text form of a Sequential model, for the CLI, the web page and tests.

The seed's network, then the classic MNIST head::

    input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu | maxpool 2 | flatten | dense 10 softmax

Grammar
-------
::

    spec     := segment ( "|" segment )*
    segment  := LAYER argument*
    argument := VALUE                      positional, in the layer's order (below)
              | KEY "=" VALUE              option; positional arguments may be named too

Words are separated by spaces; ``|`` separates layers. An optional ``input SHAPE`` segment
comes first and fixes the shape of one sample (no batch axis); without it the model is
built on first use. Values:

- ``N``: a positive integer (``32``); ``F``: a number (``0.5``, ``1e-3``);
- ``K``: a size, one integer for every axis or one per axis joined by ``x``
  (``3`` = ``3x3`` for 2D layers; ``3x5``; ``3x3x3`` for 3D);
- ``SHAPE``: sizes joined by ``x`` (``28x28x1``, ``784``; ``reshape`` allows one ``-1``);
- ``ACT``: an activation name (``relu``, ``softmax``, ``tanh``, ``sigmoid``, ...);
- ``BOOL``: ``true`` or ``false``.

Layers (positional arguments in order, ``[...]`` optional), the Keras layer each builds,
and its options with their defaults::

    input SHAPE           Input
    conv2d N K [ACT]      Conv2D              strides=1 padding=valid dilation=1 groups=1
                                              bias=true
    conv1d N K [ACT]      Conv1D              as conv2d; padding may also be causal
    conv3d N K [ACT]      Conv3D              as conv2d
    depthwise K [ACT]     DepthwiseConv2D     multiplier=1 strides=1 padding=valid
                                              dilation=1 bias=true
    separable N K [ACT]   SeparableConv2D     as depthwise
    deconv N K [ACT]      Conv2DTranspose     strides=1 padding=valid dilation=1
                                              output_padding=none bias=true
    dense N [ACT]         Dense               bias=true
    flatten               Flatten
    reshape SHAPE         Reshape
    activation ACT        Activation
    relu                  ReLU                max_value=none negative_slope=0.0 threshold=0.0
    dropout F             Dropout
    maxpool [K]           MaxPooling2D        strides=K padding=valid       (K defaults to 2)
    avgpool [K]           AveragePooling2D    strides=K padding=valid
    maxpool1d, maxpool3d, avgpool1d, avgpool3d: the 1D and 3D pooling layers, as above
    globalavgpool         GlobalAveragePooling2D    keepdims=false
    globalmaxpool         GlobalMaxPooling2D        keepdims=false
    globalavgpool1d, globalmaxpool1d: GlobalAveragePooling1D, GlobalMaxPooling1D
    zeropad [P]           ZeroPadding2D       P = 1 (default), 1x2 (rows x cols) or
                                              1x1x2x2 (top x bottom x left x right)
    batchnorm             BatchNormalization  momentum=0.99 epsilon=0.001 axis=-1
                                              center=true scale=true

Every layer also takes ``name=NAME``, and conv/pool/flatten layers take
``data_format=channels_first``. Options may also be spelled with the Keras argument name
(``dilation_rate=2``, ``depth_multiplier=2``, ``use_bias=false``, ``kernel_size=3``,
``activation=relu``). Aliases: ``maxpool2d``, ``avgpool2d``, ``globalavgpool2d``,
``globalmaxpool2d``, ``conv2dtranspose``.

More examples::

    input 32x32x3 | conv2d 64 3 strides=2 padding=same | batchnorm | relu | globalavgpool
    input 28x28x32 | depthwise 3 multiplier=2 | separable 64 3 relu | deconv 32 3 strides=2
    input 64x8 | conv1d 16 5 relu padding=causal dilation=2 | globalmaxpool1d | dense 1
    input 784 | reshape 28x28x1 | zeropad 1 | conv2d 8 3 tanh | avgpool 2 | dropout 0.5

``format_spec(model)`` writes the canonical spec of a model: layer words as above, every
positional argument except a linear activation, options only where they differ from the
default, sizes collapsed to one number when equal on every axis. It describes the
architecture only (no weights, initializers, seeds, or auto-generated names), and
``parse_spec(format_spec(model))`` builds layers of the same classes with the same configs.

Errors: a malformed spec raises :class:`SpecError` (a ``ValueError``) with a one-line
message giving the 1-based column and what was expected::

    spec error at column 24 ('conv2x'): unknown layer 'conv2x'; expected one of: ...
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from convlens import layers as L
from convlens.models import Sequential
from convlens.ops.activations import NAMES as ACTIVATIONS

__all__ = ["SpecError", "parse_spec", "format_spec", "LAYER_WORDS", "GRAMMAR"]


class SpecError(ValueError):
    """A malformed spec. ``column`` is 1-based; ``token`` is the text at that column."""

    def __init__(self, column: int, token: str, message: str):
        self.column = column
        self.token = token
        self.message = " ".join(str(message).split())
        super().__init__(f"spec error at column {column} ({token!r}): {self.message}")


# ---------------------------------------------------------------------------------------------
# The table of layers
# ---------------------------------------------------------------------------------------------

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One argument of a segment: its spec key, value kind, Keras keyword and default text."""

    key: str
    kind: str
    kwarg: str
    default: object = REQUIRED  # spec text of the default, None for "absent", or REQUIRED
    positional: bool = False


@dataclass(frozen=True)
class LayerForm:
    word: str
    cls: type
    params: tuple[Param, ...]
    rank: int = 2
    aliases: tuple[str, ...] = ()

    @property
    def positionals(self) -> list[Param]:
        return [p for p in self.params if p.positional]

    def usage(self) -> str:
        parts = [self.word]
        for p in self.positionals:
            parts.append(p.key.upper() if p.default is REQUIRED else f"[{p.key.upper()}]")
        return " ".join(parts)


def _conv_options(causal: bool = False) -> tuple[Param, ...]:
    return (
        Param("strides", "size", "strides", "1"),
        Param("padding", "padding1d" if causal else "padding", "padding", "valid"),
        Param("dilation", "size", "dilation_rate", "1"),
    )


_NAME = Param("name", "name", "name", None)
_FORMAT = Param("data_format", "format", "data_format", "channels_last")
_BIAS = Param("bias", "bool", "use_bias", "true")
_ACT = Param("activation", "activation", "activation", "linear", positional=True)


def _conv(word: str, cls: type, rank: int) -> LayerForm:
    return LayerForm(
        word,
        cls,
        (
            Param("filters", "count", "filters", positional=True),
            Param("kernel", "size", "kernel_size", positional=True),
            _ACT,
            *_conv_options(causal=rank == 1),
            Param("groups", "count", "groups", "1"),
            _BIAS,
            _FORMAT,
            _NAME,
        ),
        rank,
    )


def _pool(word: str, cls: type, rank: int, aliases=()) -> LayerForm:
    return LayerForm(
        word,
        cls,
        (
            Param("pool", "size", "pool_size", "2", positional=True),
            Param("strides", "size", "strides", "pool"),  # "pool": defaults to the pool size
            Param("padding", "padding", "padding", "valid"),
            _FORMAT,
            _NAME,
        ),
        rank,
        aliases,
    )


def _global(word: str, cls: type, rank: int, aliases=()) -> LayerForm:
    return LayerForm(
        word, cls, (Param("keepdims", "bool", "keepdims", "false"), _FORMAT, _NAME), rank, aliases
    )


FORMS: tuple[LayerForm, ...] = (
    LayerForm("input", L.InputLayer, (Param("shape", "dims", "shape", positional=True), _NAME)),
    _conv("conv1d", L.Conv1D, 1),
    _conv("conv2d", L.Conv2D, 2),
    _conv("conv3d", L.Conv3D, 3),
    LayerForm(
        "depthwise",
        L.DepthwiseConv2D,
        (
            Param("kernel", "size", "kernel_size", positional=True),
            _ACT,
            Param("multiplier", "count", "depth_multiplier", "1"),
            *_conv_options(),
            _BIAS,
            _FORMAT,
            _NAME,
        ),
    ),
    LayerForm(
        "separable",
        L.SeparableConv2D,
        (
            Param("filters", "count", "filters", positional=True),
            Param("kernel", "size", "kernel_size", positional=True),
            _ACT,
            Param("multiplier", "count", "depth_multiplier", "1"),
            *_conv_options(),
            _BIAS,
            _FORMAT,
            _NAME,
        ),
    ),
    LayerForm(
        "deconv",
        L.Conv2DTranspose,
        (
            Param("filters", "count", "filters", positional=True),
            Param("kernel", "size", "kernel_size", positional=True),
            _ACT,
            *_conv_options(),
            Param("output_padding", "size0", "output_padding", None),
            _BIAS,
            _FORMAT,
            _NAME,
        ),
        aliases=("conv2dtranspose",),
    ),
    LayerForm(
        "dense", L.Dense, (Param("units", "count", "units", positional=True), _ACT, _BIAS, _NAME)
    ),
    LayerForm("flatten", L.Flatten, (_FORMAT, _NAME)),
    LayerForm(
        "reshape", L.Reshape, (Param("shape", "dims-1", "target_shape", positional=True), _NAME)
    ),
    LayerForm(
        "activation",
        L.Activation,
        (Param("activation", "activation", "activation", positional=True), _NAME),
    ),
    LayerForm(
        "relu",
        L.ReLU,
        (
            Param("max_value", "float?", "max_value", "none"),
            Param("negative_slope", "float", "negative_slope", "0.0"),
            Param("threshold", "float", "threshold", "0.0"),
            _NAME,
        ),
    ),
    LayerForm("dropout", L.Dropout, (Param("rate", "rate", "rate", positional=True), _NAME)),
    _pool("maxpool1d", L.MaxPooling1D, 1),
    _pool("maxpool", L.MaxPooling2D, 2, ("maxpool2d",)),
    _pool("maxpool3d", L.MaxPooling3D, 3),
    _pool("avgpool1d", L.AveragePooling1D, 1),
    _pool("avgpool", L.AveragePooling2D, 2, ("avgpool2d",)),
    _pool("avgpool3d", L.AveragePooling3D, 3),
    _global("globalavgpool1d", L.GlobalAveragePooling1D, 1),
    _global("globalavgpool", L.GlobalAveragePooling2D, 2, ("globalavgpool2d",)),
    _global("globalmaxpool1d", L.GlobalMaxPooling1D, 1),
    _global("globalmaxpool", L.GlobalMaxPooling2D, 2, ("globalmaxpool2d",)),
    LayerForm(
        "zeropad",
        L.ZeroPadding2D,
        (Param("padding", "pad", "padding", "1", positional=True), _FORMAT, _NAME),
    ),
    LayerForm(
        "batchnorm",
        L.BatchNormalization,
        (
            Param("momentum", "float", "momentum", "0.99"),
            Param("epsilon", "float", "epsilon", "0.001"),
            Param("axis", "int", "axis", "-1"),
            Param("center", "bool", "center", "true"),
            Param("scale", "bool", "scale", "true"),
            _NAME,
        ),
    ),
)

_BY_WORD = {word: form for form in FORMS for word in (form.word, *form.aliases)}
_BY_CLASS = {form.cls: form for form in FORMS}
LAYER_WORDS: tuple[str, ...] = tuple(form.word for form in FORMS)
GRAMMAR = __doc__


# ---------------------------------------------------------------------------------------------
# Values: text <-> Python
# ---------------------------------------------------------------------------------------------

_INT = re.compile(r"[+-]?\d+\Z")
_EXPECTED = {
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


def _ints(text: str) -> list[int] | None:
    parts = text.lower().split("x")
    if not all(_INT.match(p) for p in parts):
        return None
    return [int(p) for p in parts]


def _parse_value(kind: str, text: str, rank: int):
    """The Python value for ``text``, or raise ``ValueError`` with what was expected."""
    lower = text.lower()
    if kind == "count":
        if _INT.match(text) and int(text) > 0:
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
            return int(text)
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
            f"unknown activation {text!r}{_did_you_mean(lower, ACTIVATIONS)}; expected one of: "
            + ", ".join(ACTIVATIONS)
        )
    elif kind == "format":
        if lower in ("channels_last", "channels_first"):
            return lower
    elif kind == "name":
        if re.match(r"[A-Za-z_][\w.-]*\Z", text):
            return text
    raise ValueError(f"expected {_EXPECTED[kind]}")


def _size_text(values) -> str:
    if values is None:
        return "none"
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return str(int(values))
    values = [int(v) for v in values]
    if len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


def _format_value(kind: str, value) -> str:
    if kind in ("size", "size0"):
        return _size_text(value)
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


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@dataclass
class _Token:
    text: str
    column: int  # 1-based


@dataclass
class _Segment:
    tokens: list[_Token]
    column: int
    text: str


def _segments(text: str) -> list[_Segment]:
    segments = []
    start = 0
    for position in [m.start() for m in re.finditer(r"\|", text)] + [len(text)]:
        raw = text[start:position]
        tokens = [_Token(m.group(), start + m.start() + 1) for m in re.finditer(r"\S+", raw)]
        if not tokens:
            if position < len(text):
                token = "|"
                column = position + 1
            else:
                token = text[start - 1 :] if start else ""
                column = max(start, 1)
            raise SpecError(
                column,
                token,
                "empty layer; expected a layer such as 'conv2d 32 3'"
                if len(text.strip())
                else "empty spec; expected layers such as 'input 28x28x1 | conv2d 32 3'",
            )
        segments.append(_Segment(tokens, tokens[0].column, raw.strip()))
        start = position + 1
    return segments


def _segment_kwargs(segment: _Segment) -> tuple[LayerForm, dict]:
    head = segment.tokens[0]
    form = _BY_WORD.get(head.text.lower())
    if form is None:
        raise SpecError(
            head.column,
            head.text,
            f"unknown layer {head.text!r}{_did_you_mean(head.text.lower(), _BY_WORD)}; "
            f"expected one of: {', '.join(LAYER_WORDS)}",
        )
    by_key = {}
    for p in form.params:
        by_key[p.key] = p
        by_key.setdefault(p.kwarg, p)
    given: dict[str, object] = {}
    positionals = form.positionals
    next_positional = 0
    for token in segment.tokens[1:]:
        if "=" in token.text:
            key, _, value = token.text.partition("=")
            param = by_key.get(key.lower())
            if param is None:
                keys = [p.key for p in form.params]
                raise SpecError(
                    token.column,
                    token.text,
                    f"unknown option {key!r} for {form.word}{_did_you_mean(key.lower(), keys)}; "
                    f"expected one of: {', '.join(keys)}",
                )
            if not value:
                expected = _EXPECTED.get(param.kind, "an activation name")
                raise SpecError(
                    token.column, token.text, f"missing value after '{key}='; expected {expected}"
                )
        else:
            if next_positional >= len(positionals):
                raise SpecError(
                    token.column,
                    token.text,
                    f"unexpected argument {token.text!r}; {form.word} takes "
                    f"{_count_words(len(positionals))} ({form.usage()}), options as key=value",
                )
            param, value = positionals[next_positional], token.text
            next_positional += 1
            if param.kind == "activation" and param.default is not REQUIRED:
                hint = _misplaced_option_hint(form, token.text)
                if hint and value.lower() not in ACTIVATIONS:
                    raise SpecError(token.column, token.text, hint)
        if param.key in given:
            raise SpecError(token.column, token.text, f"{param.key} given twice")
        value_column = token.column + (token.text.index("=") + 1 if "=" in token.text else 0)
        try:
            given[param.key] = _parse_value(param.kind, value, form.rank)
        except ValueError as error:
            raise SpecError(value_column, value, f"{form.word} {param.key}: {error}") from None
    missing = [p.key.upper() for p in positionals if p.default is REQUIRED and p.key not in given]
    if missing:
        raise SpecError(
            head.column,
            segment.text,
            f"{form.word} needs {' '.join(missing)}; expected {form.usage()}"
            + (f", e.g. '{_EXAMPLES[form.word]}'" if form.word in _EXAMPLES else ""),
        )
    kwargs = {}
    for param in form.params:
        if param.key in given:
            kwargs[param.kwarg] = given[param.key]
        elif param.default is not REQUIRED and param.positional and param.kind != "activation":
            kwargs[param.kwarg] = _parse_value(param.kind, param.default, form.rank)
    return form, kwargs


_EXAMPLES = {
    "input": "input 28x28x1",
    "conv1d": "conv1d 16 5 relu",
    "conv2d": "conv2d 32 3 relu",
    "conv3d": "conv3d 8 3 relu",
    "depthwise": "depthwise 3 multiplier=2",
    "separable": "separable 64 3",
    "deconv": "deconv 32 3 strides=2",
    "dense": "dense 128 relu",
    "reshape": "reshape 7x7x16",
    "activation": "activation tanh",
    "dropout": "dropout 0.5",
}


def _count_words(n: int) -> str:
    return {0: "no positional arguments", 1: "1 positional argument"}.get(
        n, f"{n} positional arguments"
    )


def _misplaced_option_hint(form: LayerForm, text: str) -> str | None:
    """A hint for a bare value that belongs to an option, e.g. ``conv2d 32 3 same``."""
    lower = text.lower()
    for param in form.params:
        if param.positional:
            continue
        try:
            _parse_value(param.kind, lower, form.rank)
        except ValueError:
            continue
        if param.kind in ("padding", "padding1d", "format"):
            return (
                f"expected an activation name for ACTIVATION, got {text!r}; "
                f"did you mean {param.key}={lower}?"
            )
    if _INT.match(text) or _ints(text):
        return (
            f"unexpected argument {text!r}; {form.word} takes {form.usage()}; give other "
            f"sizes as options, e.g. strides={lower}"
        )
    return None


def parse_spec(text: str) -> Sequential:
    """Build the :class:`~convlens.models.Sequential` that ``text`` describes.

    Raises:
        SpecError: the spec is malformed, or a layer cannot be built on its input (the
            message names the segment and its column).
        TypeError: ``text`` is not a string.

    Example:
        >>> model = parse_spec("input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu")
        >>> model.output_shape
        (None, 24, 24, 64)
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_spec expects a string; received {type(text).__name__}.")
    segments = _segments(text)
    parsed = [(segment, *_segment_kwargs(segment)) for segment in segments]
    model = Sequential()
    for index, (segment, form, kwargs) in enumerate(parsed):
        if form.cls is L.InputLayer and index > 0:
            raise SpecError(
                segment.column, segment.text, "'input' can only be the first layer of a spec"
            )
        try:
            if form.cls is L.InputLayer:
                layer = L.InputLayer(**kwargs)
            else:
                layer = form.cls(**kwargs)
            model.add(layer)
        except (ValueError, TypeError) as error:
            raise SpecError(
                segment.column,
                segment.text,
                f"cannot build {form.word} (segment {index + 1}): {error}",
            ) from None
    return model


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def _layer_segment(layer, names: bool) -> str:
    form = _BY_CLASS.get(type(layer))
    if form is None:
        raise ValueError(
            f"format_spec: layer {layer.name!r} of type {type(layer).__name__} has no spec form; "
            f"spec layers are: {', '.join(LAYER_WORDS[1:])}."
        )
    config = layer.get_config()
    words = [form.word]
    for param in form.params:
        if param.kind == "name":
            if names:
                words.append(f"name={layer.name}")
            continue
        value = config.get(param.kwarg)
        text = _format_value(param.kind, value)
        if param.kind == "activation" and text not in ACTIVATIONS:
            raise ValueError(
                f"format_spec: layer {layer.name!r} uses the custom activation {text!r}; a spec "
                f"can only name built-in activations ({', '.join(ACTIVATIONS)})."
            )
        if param.kind == "activation" and param.default is not REQUIRED:
            if text == "linear":
                continue
            words.append(text if param.positional else f"{param.key}={text}")
            continue
        if param.positional:
            words.append(text)
            continue
        default = param.default
        if default == "pool":
            default = _size_text(config["pool_size"])
        if default is None and value is None:
            continue
        if text != default:
            words.append(f"{param.key}={text}")
    return " ".join(words)


def format_spec(model: Sequential, names: bool = False) -> str:
    """The canonical spec of ``model`` (``names=True`` adds ``name=...`` to every layer).

    Example:
        >>> format_spec(parse_spec("input 28x28x1|conv2d 32 3x3 activation=relu"))
        'input 28x28x1 | conv2d 32 3 relu'
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"format_spec expects a Sequential; received {type(model).__name__}.")
    segments = []
    if model.input_shape is not None:
        shape = model.input_shape[1:]
        if any(d is None for d in shape):
            raise ValueError(
                f"format_spec: the input shape {model.input_shape} has unknown sizes; a spec "
                "input needs every size, e.g. input 28x28x1."
            )
        segment = "input " + "x".join(str(d) for d in shape)
        if names and model._input_layer is not None:
            segment += f" name={model._input_layer.name}"
        segments.append(segment)
    segments += [_layer_segment(layer, names) for layer in model.layers]
    return " | ".join(segments)
