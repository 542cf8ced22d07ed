"""Formatting: a Sequential model -> its canonical spec text."""

from __future__ import annotations

from convlens.models import Sequential
from convlens.ops.activations import NAMES as ACTIVATIONS
from convlens.spec.forms import _BY_CLASS, LAYER_WORDS, REQUIRED
from convlens.spec.values import format_value, size_text


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
        text = format_value(param.kind, value)
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
            default = size_text(config["pool_size"])
        if default is None and value is None:
            continue
        if text != default:
            words.append(f"{param.key}={text}")
    return " ".join(words)


def format_spec(model: Sequential, names: bool = False) -> str:
    """The canonical spec of ``model`` (``names=True`` adds ``name=...`` to every layer).

    Example:
        >>> from convlens.spec import parse_spec
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
        if names and model.input_layer is not None:
            segment += f" name={model.input_layer.name}"
        segments.append(segment)
    segments += [_layer_segment(layer, names) for layer in model.layers]
    return " | ".join(segments)
