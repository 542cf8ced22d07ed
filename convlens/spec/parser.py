"""Parsing: spec text -> segments -> Keras keyword arguments -> a Sequential model."""

from __future__ import annotations

import re
from dataclasses import dataclass

from convlens import layers as L
from convlens.budget import DEFAULT_LIMITS, Budget, BudgetError, check_budget
from convlens.models import Sequential
from convlens.ops.activations import NAMES as ACTIVATIONS
from convlens.spec.forms import _BY_WORD, LAYER_WORDS, REQUIRED, LayerForm
from convlens.spec.values import EXPECTED, SIZES, did_you_mean, parse_value


class SpecError(ValueError):
    """A malformed spec. ``column`` is 1-based; ``token`` is the text at that column."""

    def __init__(self, column: int, token: str, message: str):
        self.column = column
        self.token = token
        self.message = " ".join(str(message).split())
        shown = token if len(token) <= 40 else f"{token[:30]}...{token[-6:]}"
        super().__init__(f"spec error at column {column} ({shown!r}): {self.message}")


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
            f"unknown layer {head.text!r}{did_you_mean(head.text.lower(), _BY_WORD)}; "
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
                    f"unknown option {key!r} for {form.word}{did_you_mean(key.lower(), keys)}; "
                    f"expected one of: {', '.join(keys)}",
                )
            if not value:
                expected = EXPECTED.get(param.kind, "an activation name")
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
            given[param.key] = parse_value(param.kind, value, form.rank)
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
            kwargs[param.kwarg] = parse_value(param.kind, param.default, form.rank)
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
            parse_value(param.kind, lower, form.rank)
        except ValueError:
            continue
        if param.kind in ("padding", "padding1d", "format"):
            return (
                f"expected an activation name for ACTIVATION, got {text!r}; "
                f"did you mean {param.key}={lower}?"
            )
    if SIZES.match(text):
        return (
            f"unexpected argument {text!r}; {form.word} takes {form.usage()}; give other "
            f"sizes as options, e.g. strides={lower}"
        )
    return None


def parse_spec(text: str, budget: Budget | None = None) -> Sequential:
    """Build the :class:`~convlens.models.Sequential` that ``text`` describes.

    The model's figures are checked against ``budget`` (by default the library's generous
    :data:`convlens.budget.DEFAULT_LIMITS`) before any weight is created, and the layers are
    built in one pass.

    Raises:
        SpecError: the spec is malformed, a layer cannot be built on its input, or the model
            is over its budget (the message names the segment and its column).
        TypeError: ``text`` is not a string.

    Example:
        >>> model = parse_spec("input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu")
        >>> model.output_shape
        (None, 24, 24, 64)
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_spec expects a string; received {type(text).__name__}.")
    budget = budget or DEFAULT_LIMITS
    segments = _segments(text)
    if len(segments) > budget.max_layers + 1:
        raise SpecError(1, text[:20], f"the spec has {len(segments):,} layers; the budget "
                        f"allows {budget.max_layers:,} (max_layers)")
    parsed = [(segment, *_segment_kwargs(segment)) for segment in segments]
    layers = [_layer(index, *entry) for index, entry in enumerate(parsed)]
    _check_names(parsed, layers)
    first = 1 if layers and isinstance(layers[0], L.InputLayer) else 0
    if first:
        _check_budget(parsed, layers, budget)
    return _assemble(parsed, layers)


def _fail(segment: _Segment, index: int, word: str, error: BaseException) -> SpecError:
    return SpecError(segment.column, segment.text,
                     f"cannot build {word} (segment {index + 1}): {error}")


def _layer(index: int, segment: _Segment, form: LayerForm, kwargs: dict):
    if form.cls is L.InputLayer and index > 0:
        raise SpecError(
            segment.column, segment.text, "'input' can only be the first layer of a spec"
        )
    try:
        return form.cls(**kwargs)
    except (ValueError, TypeError, ArithmeticError) as error:
        raise _fail(segment, index, form.word, error) from None


def _check_names(parsed: list, layers: list) -> None:
    seen = set()
    for index, ((segment, form, _), layer) in enumerate(zip(parsed, layers)):
        if layer.name in seen:
            raise SpecError(segment.column, segment.text,
                            f"{form.word} (segment {index + 1}): the name {layer.name!r} is "
                            "already used by an earlier layer; layer names must be unique")
        seen.add(layer.name)


def _check_budget(parsed: list, layers: list, budget: Budget) -> None:
    try:
        check_budget(layers[1:], layers[0].batch_shape, **budget.limits())
    except BudgetError as error:
        index = 0 if error.index is None else error.index + 1
        segment = parsed[index][0]
        raise SpecError(segment.column, segment.text, f"over budget: {error}") from None
    except (ValueError, TypeError, ArithmeticError) as error:
        index = getattr(error, "layer_index", None)
        index = len(layers) - 1 if index is None else index + 1
        segment, form, _ = parsed[index]
        raise _fail(segment, index, form.word, error) from None


def _assemble(parsed: list, layers: list) -> Sequential:
    try:
        return Sequential(layers)
    except (ValueError, TypeError, ArithmeticError, MemoryError) as error:
        # The shapes and the budget were checked layer by layer: what is left is the
        # machine running out of memory for weights within the budget.
        message = "not enough memory for its weights" if isinstance(error, MemoryError) else error
        segment = parsed[-1][0]
        raise SpecError(segment.column, segment.text,
                        f"cannot build the model: {message}") from None
