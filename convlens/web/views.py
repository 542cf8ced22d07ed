"""The page's questions about one model and one input, as plain data.

Each function takes the decoded JSON of its ``POST /api/...`` call (``spec``, ``seed`` and
``input`` as in :func:`convlens.web.api.model_input`; ``session`` for a model the page
trained or uploaded, kept in ``state``) and returns a JSON-ready dict. They
only call the library: ``model.summary``, ``explain.maps`` (every layer's output, one
filter's per-channel maps), ``explain.trace`` and the contrast with ``DepthwiseConv2D``.

- :func:`summary_request`: the summary text and each layer's shapes and parameter count;
- :func:`feature_maps_request`: every layer's output for the input, channels last, with its
  value range, each conv layer's kernel (every filter's channel slices) and the prediction;
- :func:`trace_request`: one output value traced, and for a Conv1D/2D/3D layer the traced
  filter's per-channel maps (whose sum plus bias is the layer's pre-activation) and the
  contrast with the layer that keeps those maps apart.
"""

from __future__ import annotations

import numpy as np

from convlens.web.api import (
    ApiError,
    check_trace_cost,
    graph_entry,
    jsonable,
    model_input,
    model_session,
    read_int,
    read_position,
    seeded_model,
    shape_list,
    trace_entry,
)

__all__ = ["MAX_MAP_VALUES", "feature_maps_request", "summary_request", "trace_request"]

# Past this many output values the remaining layers' maps are left out of the answer (the
# seed's model has 58,496 output values, the classic MNIST network 86,410).
MAX_MAP_VALUES = 400_000
MAX_KERNEL_VALUES = 100_000
_DECIMALS = 6


def _numbers(array) -> list:
    return np.round(np.asarray(array, dtype=np.float64), _DECIMALS).tolist()


def _total_macs(model) -> int | None:
    from convlens.explain.cost import layer_cost

    costs = [layer_cost(layer).macs for layer in model.layers]
    return None if any(c is None for c in costs) else sum(costs)


def _store(state):
    return None if state is None else state.store


def summary_request(data, state=None) -> dict:
    """The summary text Keras prints and each layer's name, class, shapes and parameters."""
    from convlens.summary import summary_text

    model, seed = seeded_model(data, _store(state))
    return {
        "model_name": model.name,
        "seed": seed,
        "summary": summary_text(model),
        "input_shape": shape_list(model.input_shape),
        "output_shape": shape_list(model.output_shape),
        "total_params": int(model.count_params()),
        "layers": [{"index": i, "name": layer.name, "class_name": type(layer).__name__,
                    "input_shape": shape_list(layer.input_shape),
                    "output_shape": shape_list(layer.output_shape),
                    "params": int(layer.count_params())}
                   for i, layer in enumerate(model.layers)],
        "graph": graph_entry(model),
    }


def _channels_last(layer, output: np.ndarray) -> np.ndarray:
    if getattr(layer, "data_format", "channels_last") == "channels_first" and output.ndim > 1:
        return np.moveaxis(output, 0, -1)
    return output


def _prediction(model, output: np.ndarray) -> dict | None:
    if isinstance(model.output_shape, list):  # several outputs: no one prediction
        return None
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "name", None)
    if output.ndim != 1 or activation != "softmax":
        return None
    return {"class": int(np.argmax(output)), "probabilities": _numbers(output)}


def feature_maps_request(data, state=None) -> dict:
    """Every layer's output for the request's input (see the module docstring)."""
    from convlens.explain.maps import layer_outputs

    model, seed = seeded_model(data, _store(state))
    check_trace_cost(_total_macs(model))
    x = model_input(model, data, seed)
    graph = graph_entry(model)
    chosen, wanted = _wanted_layers(model, data, graph["edges"])
    outputs = layer_outputs(model, x)
    layers, budget = [], MAX_MAP_VALUES
    for index, (layer, output) in enumerate(zip(model.layers, outputs)):
        if wanted is not None and index not in wanted:
            layers.append({"index": index, "name": layer.name,
                           "class_name": type(layer).__name__,
                           "output_shape": shape_list(layer.output_shape),
                           "shape": list(_channels_last(layer, output[0]).shape),
                           "low": None, "high": None, "maps": None, "kernel": None})
            continue
        values = _channels_last(layer, output[0])
        entry = {"index": index, "name": layer.name, "class_name": type(layer).__name__,
                 "output_shape": shape_list(layer.output_shape), "shape": list(values.shape),
                 "low": float(values.min()) if values.size else 0.0,
                 "high": float(values.max()) if values.size else 0.0,
                 "maps": None, "kernel": None}
        budget -= values.size
        if budget >= 0:
            entry["maps"] = _numbers(values)
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and getattr(layer, "rank", None) == 2 and \
                kernel.value.size <= MAX_KERNEL_VALUES and type(layer).__name__ == "Conv2D":
            entry["kernel"] = _numbers(kernel.value)  # (kh, kw, C_in / groups, filters)
        layers.append(entry)
    return {
        "seed": seed,
        "input": {"shape": list(x.shape[1:]), "values": _numbers(x[0])},
        "layers": layers,
        "prediction": _prediction(model, outputs[-1][0]),
        "omitted": budget < 0,
        "graph": graph,
        "layer": chosen,
    }


def _wanted_layers(model, data: dict, edges) -> tuple[int | None, set | None]:
    """With ``layer`` in the request: its index, and it with the layers it reads (the maps a
    click on one of its cells needs); without: ``(None, None)`` (every layer)."""
    if data.get("layer") in (None, ""):
        return None, None
    from convlens.explain.derivation import resolve_layer_index

    layer = data["layer"]
    if not (isinstance(layer, str) and not layer.strip().lstrip("-").isdigit()):
        layer = read_int(layer, "layer")
    try:
        position = resolve_layer_index(model, layer)
    except (ValueError, TypeError) as error:
        raise ApiError(" ".join(str(error).split()), field="layer") from None
    return position, {position, *(source for source, target in edges if target == position)}


def trace_request(data, state=None) -> dict:
    """One output value traced for the request's input (see the module docstring)."""
    from convlens.explain import trace
    from convlens.explain.contrast import build_contrast
    from convlens.explain.maps import filter_maps
    from convlens.layers import Conv
    from convlens.viz import model_edges

    with model_session(data, _store(state)) as (model, seed):
        check_trace_cost(_total_macs(model))
        x = model_input(model, data, seed)
        try:
            position, index = read_position(model, data)
            result = trace(model, position, index, x)
        except (ValueError, TypeError) as error:
            raise ApiError(" ".join(str(error).split()), field="index") from None
        target = model.layers[position]
        answer = {"seed": seed, "trace": trace_entry(result), "terms": jsonable(result.to_dict()),
                  "reads": [source for source, target in model_edges(model)
                            if target == position],
                  "filter_maps": None, "contrast": None}
        if isinstance(target, Conv):
            channel = index[-1] if target.data_format == "channels_last" else index[0]
            split = filter_maps(model, position, channel, x)
            answer["filter_maps"] = {
                "filter": split.filter, "input_channels": split.input_channels,
                "kernel": _numbers(split.kernel), "channel_maps": _numbers(split.channel_maps),
                "bias": split.bias, "pre_activation": _numbers(split.pre_activation),
                "output": _numbers(split.output), "activation": split.activation,
                "max_abs_diff": split.max_abs_diff, "matches": split.matches,
                "positions": split.positions,
            }
            answer["contrast"] = jsonable(build_contrast(target).to_dict())
        return answer
