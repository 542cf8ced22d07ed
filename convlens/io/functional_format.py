"""Functional models in ``.keras`` files, as Keras 3 writes them (``class_name: Functional``).

Each layer's entry is the one a Sequential's has (``keras_entries.layer_entry``) plus its
``name`` and ``inbound_nodes``: one ``{"args": [...], "kwargs": {}}`` per call, whose tensors
are ``{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history":
[layer name, node index, tensor index]}}``. ``input_layers`` and ``output_layers`` name the
model's inputs and outputs the same way. Reading parses these as data: layers come from the
registered kinds, calls are replayed on symbolic tensors once their inputs exist, and the
model's size is checked against the budget before any weight is created.
"""

from __future__ import annotations

from dataclasses import replace

from convlens.budget import DEFAULT_LIMITS, Budget, check_graph_budget
from convlens.io import keras_entries
from convlens.kinds import kind_of
from convlens.layers.base import normalize_shape
from convlens.layers.operations import is_constant
from convlens.models import Model

TENSOR = "__keras_tensor__"


# ----- saving ------------------------------------------------------------------------------
def _history(tensor) -> list:
    return [tensor.history.layer.name, tensor.history.node_index, tensor.history.tensor_index]


def _tensor_record(tensor) -> dict:
    return {"class_name": TENSOR, "config": {"shape": list(tensor.shape), "dtype": "float32",
                                             "keras_history": _history(tensor)}}


def _ends(tensors) -> list:
    histories = [_history(t) for t in tensors]
    return histories[0] if len(histories) == 1 else histories


def _arguments(layer, node) -> list:
    """A call's ``args``: the input tensor (a list for a merge); for an operation, its
    arguments in order, tensors and constants (``[tensor, 3.0]``)."""
    if kind_of(layer).operation:
        tensors = iter(node.inputs)
        return [_tensor_record(next(tensors)) if a is None else a for a in layer.arguments]
    return [[_tensor_record(t) for t in node.inputs] if node.list_input
            else _tensor_record(node.inputs[0])]


def functional_to_config(model, model_entry) -> dict:
    """The ``config.json`` dict Keras 3 writes for a functional ``Model``; a model nested as
    a layer is written by ``model_entry(model)`` (Keras writes its whole config there)."""
    layers = []
    for layer in model.layers:
        nodes = model.graph.nodes_of(layer)
        if nodes and nodes[0].is_input:
            config = {**layer.get_config(), **keras_entries.INPUT_LAYER_DEFAULTS}
            record = keras_entries.layer_record("InputLayer", config)
            record.update(name=layer.name, inbound_nodes=[])
        else:
            record = (model_entry(layer) if isinstance(layer, Model)
                      else keras_entries.layer_entry(layer))
            record["name"] = layer.name
            record["inbound_nodes"] = [{"args": _arguments(layer, node), "kwargs": {}}
                                       for node in nodes]
        layers.append(record)
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {"name": model.name, "trainable": model.trainable, "layers": layers,
                   "input_layers": _ends(model.inputs), "output_layers": _ends(model.outputs)},
        "registered_name": "Functional",
        "build_config": {"input_shape": None},
        "compile_config": keras_entries.compile_config(model),
    }


# ----- loading -----------------------------------------------------------------------------
def _reference(value, where: str) -> tuple[str, int, int]:
    """``[name, node, tensor]`` from a keras tensor record or a bare history list."""
    if isinstance(value, dict) and value.get("class_name") == TENSOR:
        value = (value.get("config") or {}).get("keras_history")
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])):
        raise ValueError(f"{where}: expected a tensor reference [layer name, node index, "
                         f"tensor index]; received {keras_entries.short(value)}.")
    return value[0], value[1], value[2]


def _references(value, where: str) -> tuple[list, bool]:
    """The tensor references of a node's first argument, and whether it is a list."""
    if isinstance(value, list) and value and not isinstance(value[0], (str, int)):
        return [_reference(v, where) for v in value], True
    return [_reference(value, where)], False


def _operation_references(layer, args: list, first: bool, where: str) -> tuple[list, bool]:
    """An operation's tensor references; its constants become its arguments (the same at
    every call)."""
    refs, arguments = [], []
    for value in args:
        if is_constant(value):
            arguments.append(value)
        else:
            refs.append(_reference(value, where))
            arguments.append(None)
    if not first and tuple(arguments) != layer.arguments:
        raise ValueError(f"{where}: its calls have different constants, "
                         f"{list(layer.arguments)} and {arguments}; an operation has one set.")
    try:
        layer.set_arguments(arguments)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return refs, True


def _ends_from(value, where: str) -> list:
    if isinstance(value, list) and value and isinstance(value[0], list):
        return [_reference(v, where) for v in value]
    return [_reference(value, where)]


MODEL_CLASSES = ("Sequential", "Functional")  # models Keras nests as layers


def nested_model(entry: dict, where: str, budget: Budget, used: list, read_model):
    """A model nested as a layer, read by ``read_model`` within what is left of ``budget``
    after the nested models read before it (``used``: their parameter count, updated), so
    that many nested models can't together allocate past the budget before the whole model's
    figures are checked."""
    name = (entry.get("config") or {}).get("name")
    left = replace(budget, max_params=max(budget.max_params - used[0], 0))
    model = read_model(entry, f"{where}: nested model '{name}'", left)
    used[0] += model.count_params()
    return model


def functional_from_config(config: dict, where: str, budget: Budget = DEFAULT_LIMITS,
                           read_model=None):
    """A functional ``Model`` from a ``.keras`` file's config dict (see the module doc);
    ``read_model(entry, where, budget)`` reads a model nested as a layer."""
    body = config.get("config")
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise ValueError(f"{where}: the Functional config has no 'layers' list.")
    layers: dict[str, object] = {}
    pending = []  # (layer, node records) in file order
    used = [0]
    for index, entry in enumerate(body["layers"]):
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: layer {index} must be a JSON object.")
        if entry.get("class_name") == "InputLayer":
            layer = keras_entries.input_layer_from_entry(entry, where)
        elif entry.get("class_name") in MODEL_CLASSES and read_model is not None:
            layer = nested_model(entry, where, budget, used, read_model)
        else:
            layer = keras_entries.layer_from_entry(entry, index, where)
        if layer.name in layers:
            raise ValueError(f"{where}: two layers are named {layer.name!r}.")
        layers[layer.name] = layer
        nodes = entry.get("inbound_nodes") or []
        if not isinstance(nodes, list):
            raise ValueError(f"{where}: layer '{layer.name}' has a malformed inbound_nodes.")
        pending.append((layer, list(nodes)))

    plan = _call_order(layers, pending, where)
    input_shapes = [layer.batch_shape for layer in layers.values()
                    if type(layer).__name__ == "InputLayer"]
    try:  # the whole model's figures, from shapes alone, before any weight exists
        check_graph_budget([(layer, shape) for layer, _, _, shape in plan], input_shapes,
                           **budget.limits())
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: {error}") from None
    outputs = {(name, 0, 0): layer.output_tensor for name, layer in layers.items()
               if type(layer).__name__ == "InputLayer"}
    for layer, refs, list_input, _ in plan:
        tensors = [outputs[ref] for ref in refs]
        try:
            output = layer(tensors if list_input else tensors[0])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: layer '{layer.name}': {error}") from None
        outputs[(layer.name, len(layer.inbound_nodes) - 1, 0)] = output
    ends = {}
    for key in ("input_layers", "output_layers"):
        refs = _ends_from(body.get(key), f"{where}: {key}")
        missing = [ref for ref in refs if ref not in outputs]
        if missing:
            raise ValueError(f"{where}: {key} names tensors no layer makes: {missing}.")
        ends[key] = [outputs[ref] for ref in refs]
    single = {key: len(value) == 1 for key, value in ends.items()}
    trainable = body.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ValueError(f"{where}: Functional trainable={keras_entries.short(trainable)} must "
                         "be true or false.")
    try:
        return Model(ends["input_layers"][0] if single["input_layers"] else ends["input_layers"],
                     ends["output_layers"][0] if single["output_layers"]
                     else ends["output_layers"], name=body.get("name"), trainable=trainable)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def _call_order(layers: dict, pending: list, where: str) -> list:
    """Every call ``(layer, input references, list input?, input shape)`` in an order where
    each call comes after the calls that make its inputs; shapes from the layers' own
    ``compute_output_shape``, nothing built."""
    shapes = {(name, 0, 0): layer.batch_shape for name, layer in layers.items()
              if type(layer).__name__ == "InputLayer"}
    counts: dict[str, int] = {}
    plan = []
    progress = True
    while progress and any(nodes for _, nodes in pending):
        progress = False
        for layer, nodes in pending:
            while nodes:
                record = nodes[0]
                args = record.get("args") if isinstance(record, dict) else None
                if not isinstance(args, list) or not args:
                    raise ValueError(f"{where}: layer '{layer.name}' has a call with no "
                                     "arguments.")
                here = f"{where}: layer '{layer.name}'"
                if kind_of(layer).operation:
                    first = layer.name not in counts
                    refs, list_input = _operation_references(layer, args, first, here)
                else:
                    refs, list_input = _references(args[0], here)
                if not all(ref in shapes for ref in refs):
                    break  # its inputs come from a call not planned yet
                given = [shapes[ref] for ref in refs]
                shape = normalize_shape(given if list_input else given[0])
                try:
                    output_shape = layer.compute_output_shape(shape)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"{where}: layer '{layer.name}': {error}") from None
                index = counts.get(layer.name, 0)
                counts[layer.name] = index + 1
                shapes[(layer.name, index, 0)] = tuple(output_shape)
                plan.append((layer, refs, list_input, shape))
                nodes.pop(0)
                progress = True
    stuck = [layer.name for layer, nodes in pending if nodes]
    if stuck:
        raise ValueError(f"{where}: the calls of layers {stuck} read tensors no layer makes.")
    return plan
