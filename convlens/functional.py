"""The graph of a functional model: its layers in Keras's order, run forward and backward.

``Graph(inputs, outputs)`` walks the nodes recorded by calling layers on symbolic tensors
(``convlens.graph``) from the outputs back to the inputs, as Keras 3's ``map_graph`` does:
a depth-first search orders the nodes from inputs to outputs, a node's depth is the longest
path from it to an output, and the layers are listed deepest first (ties in the order the
search met them). That order is ``model.layers`` and the rows of the summary.

Forward runs the nodes in that order on arrays; backward runs them in reverse, summing the
gradients of a tensor that feeds several layers. A layer called at several nodes (shared
weights) keeps one cache per call and adds up its weight gradients over its calls.
"""

from __future__ import annotations

import numpy as np

from convlens.graph import KerasTensor, Node
from convlens.layers.base import as_float32
from convlens.shapes import format_shape


def _flatten(structure, what: str, model_name: str) -> tuple[list, object]:
    """The tensors of ``inputs``/``outputs`` (one, a list or a dict) and the structure's keys."""
    if isinstance(structure, dict):
        keys, tensors = list(structure), list(structure.values())
    elif isinstance(structure, (list, tuple)):
        keys, tensors = None, list(structure)
    else:
        keys, tensors = "single", [structure]
    if not tensors:
        raise ValueError(f"Model '{model_name}': `{what}` is empty; pass at least one tensor.")
    for tensor in tensors:
        if not isinstance(tensor, KerasTensor):
            raise TypeError(
                f"Model '{model_name}': every entry of `{what}` must be a symbolic tensor (from "
                f"Input(...) or a layer called on one); received {tensor!r} of type "
                f"{type(tensor).__name__}."
            )
    return tensors, keys


def _build_map(outputs: list[KerasTensor], inputs: list[KerasTensor]):
    """Nodes from inputs to outputs (depth-first from the outputs) and each layer's first visit."""
    finished: set[int] = set()
    in_progress: set[int] = set()
    ordered: list[Node] = []
    layer_index: dict[int, int] = {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor: KerasTensor) -> None:
        # Depth-first, each node after the nodes it reads (in their order), with a stack of
        # (tensor, next input to visit) rather than recursion: a chain of 20,000 layers is fine.
        stack = [(tensor, 0)]
        while stack:
            current, position = stack[-1]
            node = current.node
            if position == 0:
                if id(node) in finished:
                    stack.pop()
                    continue
                if not node.is_input and id(current) in input_ids:
                    finished.add(id(node))  # an intermediate tensor given as an input: stop
                    stack.pop()
                    continue
                if id(node) in in_progress:
                    raise ValueError(f"Tensor {current.name} from layer '{node.layer.name}' is "
                                     "part of a cycle.")
                layer_index.setdefault(id(node.layer), len(layer_index))
                in_progress.add(id(node))
            if position < len(node.inputs):
                stack[-1] = (current, position + 1)
                stack.append((node.inputs[position], 0))
                continue
            finished.add(id(node))
            in_progress.discard(id(node))
            ordered.append(node)
            stack.pop()

    for output in outputs:
        visit(output)
    return ordered, layer_index


class Graph:
    """The layers and nodes between ``inputs`` and ``outputs``, in Keras's order."""

    def __init__(self, inputs, outputs, model_name: str):
        self.inputs, self.input_keys = _flatten(inputs, "inputs", model_name)
        self.outputs, self.output_keys = _flatten(outputs, "outputs", model_name)
        for tensor in self.inputs:
            if not tensor.node.is_input:
                raise ValueError(
                    f"Model '{model_name}': input {tensor.name} {format_shape(tensor.shape)} "
                    f"is the output of layer '{tensor.layer.name}' "
                    f"({type(tensor.layer).__name__}), not a convlens.Input; a model's "
                    "inputs must be tensors returned by Input(...)."
                )
        ordered, layer_index = _build_map(self.outputs, self.inputs)
        depths: dict[int, int] = {}
        layer_depths: dict[int, int] = {}
        layers_by_id = {}
        for node in reversed(ordered):
            depth = max(depths.setdefault(id(node), 0), layer_depths.get(id(node.layer), 0))
            layer_depths[id(node.layer)] = depth
            layers_by_id[id(node.layer)] = node.layer
            depths[id(node)] = depth
            for parent in node.parents:
                depths[id(parent)] = max(depth + 1, depths.get(id(parent), 0))
        for tensor in self.inputs:  # an input no output depends on is still a model input
            if id(tensor.layer) not in layer_depths:
                layer_depths[id(tensor.layer)] = 0
                layer_index[id(tensor.layer)] = -1
                layers_by_id[id(tensor.layer)] = tensor.layer
                depths[id(tensor.node)] = 0
                ordered.insert(0, tensor.node)
        self.layers = sorted(layers_by_id.values(),
                             key=lambda lay: (-layer_depths[id(lay)], layer_index[id(lay)]))
        self.node_ids = {id(node) for node in ordered}
        self.nodes_by_depth: dict[int, list[Node]] = {}
        for node in ordered:
            self.nodes_by_depth.setdefault(depths[id(node)], []).append(node)
        self._check_connected(model_name)
        names = [layer.name for layer in self.layers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(
                    f'Model \'{model_name}\': the name "{name}" is used {names.count(name)} '
                    "times; every layer of a model needs its own name."
                )
        # Run order: inputs to outputs; a node after every node it reads from.
        self.nodes = [node for node in ordered if not node.is_input]
        # The last node that reads each tensor: a run lets go of an array after it, so a deep
        # model holds the arrays still to be read, not every layer's output.
        kept = {id(t) for t in self.outputs}
        self._last_reads: list[list[int]] = [[] for _ in self.nodes]
        last: dict[int, int] = {}
        for position, node in enumerate(self.nodes):
            for tensor in node.inputs:
                last[id(tensor)] = position
        for key, position in last.items():
            if key not in kept:
                self._last_reads[position].append(key)
        self._caches: dict[int, object] = {}  # a shared layer's cache per node (training)
        self.shared = {id(lay) for lay in self.layers
                       if sum(id(n) in self.node_ids for n in lay.inbound_nodes) > 1}
        for layer in self.layers:
            if id(layer) in self.shared and layer.has_activity_penalty():
                raise ValueError(
                    f"Model '{model_name}': layer '{layer.name}' ({type(layer).__name__}) has "
                    "an activity_regularizer and is called more than once in the model: "
                    "convlens does not share a layer with an activity_regularizer yet. Use two "
                    "layers, or move the regularizer to the layers around it."
                )
        self.set_input_grad(False)

    def set_input_grad(self, wanted: bool) -> None:
        """Tell each layer whether a gradient wrt its input is wanted: always when it reads
        another layer's output, and for a layer reading the model's inputs only when the model
        itself must pass a gradient back (a model nested in another)."""
        input_ids = {id(t) for t in self.inputs}
        for layer in self.layers:
            if hasattr(layer, "needs_input_grad"):
                layer.needs_input_grad = wanted or any(
                    id(t) not in input_ids
                    for n in layer.inbound_nodes if id(n) in self.node_ids for t in n.inputs
                )

    def cache_state(self) -> dict:
        """The per-call caches of shared layers (a nested model called twice keeps both)."""
        return dict(self._caches)

    def restore_cache(self, state: dict) -> None:
        self._caches = dict(state)

    def _check_connected(self, model_name: str) -> None:
        computable = {id(t) for t in self.inputs}
        for depth in sorted(self.nodes_by_depth, reverse=True):
            for node in self.nodes_by_depth[depth]:
                for tensor in node.inputs:
                    if id(tensor) not in computable:
                        raise ValueError(
                            f"Model '{model_name}': graph disconnected: tensor {tensor.name} "
                            f"{format_shape(tensor.shape)}, produced by layer "
                            f"'{tensor.layer.name}' ({type(tensor.layer).__name__}) and read "
                            f"by layer '{node.layer.name}', cannot be computed from the "
                            f"model's inputs ({', '.join(t.name for t in self.inputs)}). "
                            "Pass every Input the outputs depend on in `inputs`."
                        )
                if not node.is_input:  # an Input that is not a model input stays unknown
                    computable.update(id(t) for t in node.outputs)

    # ----- what the summary shows -----------------------------------------------------------
    @property
    def sequential_like(self) -> bool:
        """Keras's test: one node per depth, each with one input, and no shared layer."""
        for nodes in self.nodes_by_depth.values():
            if len(nodes) > 1 or (len(nodes) == 1 and len(nodes[0].inputs) > 1):
                return False
        return not self.shared

    def connections(self, layer) -> str:
        parts = [f"{t.history.layer.name}[{t.history.node_index}][{t.history.tensor_index}]"
                 for node in layer.inbound_nodes if id(node) in self.node_ids
                 for t in node.inputs]
        return ", ".join(parts) or "-"

    def nodes_of(self, layer) -> list[Node]:
        """The calls of ``layer`` that belong to this graph."""
        return [node for node in layer.inbound_nodes if id(node) in self.node_ids]

    # ----- running ------------------------------------------------------------------------
    def check_inputs(self, x, model_name: str) -> list[np.ndarray]:
        """The model's input arrays, in ``inputs`` order, each float32 and shape-checked."""
        count = len(self.inputs)
        if isinstance(x, dict):
            names = [t.name if self.input_keys in (None, "single") else key
                     for t, key in zip(self.inputs, self.input_keys
                                       if isinstance(self.input_keys, list) else self.inputs)]
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"Model '{model_name}': the input dict lacks {missing}; it "
                                 f"needs the keys {names}.")
            arrays = [x[n] for n in names]
        elif isinstance(x, (list, tuple)) and count > 1:
            arrays = list(x)
        else:
            arrays = [x]
        if len(arrays) != count:
            raise ValueError(f"Model '{model_name}' has {count} inputs "
                             f"({', '.join(t.name for t in self.inputs)}); received "
                             f"{len(arrays)} array(s).")
        checked = []
        for tensor, array in zip(self.inputs, arrays):
            array = as_float32(array, f"Model '{model_name}' input '{tensor.name}'")
            expected = tensor.shape
            if array.ndim != len(expected) or any(
                e is not None and e != r for e, r in zip(expected[1:], array.shape[1:])
            ):
                hint = (" Add a batch axis, e.g. x[None]."
                        if array.ndim == len(expected) - 1 else "")
                raise ValueError(
                    f"Input '{tensor.name}' of model '{model_name}' is incompatible: expected "
                    f"shape={format_shape(expected)}, found shape="
                    f"{format_shape(array.shape)}.{hint}"
                )
            checked.append(array)
        batches = {a.shape[0] for a in checked}
        if len(batches) > 1:
            raise ValueError(f"Model '{model_name}': the inputs have different batch sizes "
                             f"{sorted(batches)}; every input needs the same number of samples.")
        return checked

    def layer_inputs(self, layer, arrays: list[np.ndarray]):
        """What ``layer``'s first call in this graph reads, for the model inputs ``arrays``
        (inference): one array, or a list for a merge."""
        nodes = self.nodes_of(layer)
        if not nodes:
            raise ValueError(f"Layer '{layer.name}' is not in this model.")
        node = nodes[0]
        if node.is_input:
            return arrays[self.inputs.index(node.outputs[0])]
        values = self._run(arrays, False, stop=node)
        found = [values[id(t)] for t in node.inputs]
        return found if node.list_input else found[0]

    def forward(self, arrays: list[np.ndarray], training: bool = False) -> list[np.ndarray]:
        values = self._run(arrays, training)
        return [values[id(t)] for t in self.outputs]

    def _run(self, arrays, training: bool, stop: Node | None = None) -> dict:
        values = {id(t): a for t, a in zip(self.inputs, arrays)}
        self._caches.clear()
        for node, done in zip(self.nodes, self._last_reads):
            if node is stop:
                break
            args = [values[id(t)] for t in node.inputs]
            layer = node.layer
            values[id(node.outputs[0])] = layer.call(args if node.list_input else args[0],
                                                     training=training)
            if training and id(layer) in self.shared:
                self._caches[id(node)] = layer.cache_state()
            for key in done:
                del values[key]
        return values

    def backward(self, grads: list[np.ndarray], pre_activation: bool | list = False) -> list:
        """Fill the weights' gradients; return the gradient wrt each input (None where no
        layer computed one). ``pre_activation``: the first output's gradient (or, given a list
        of flags, each flagged output's) is wrt its layer's input to its activation (the
        trainer's fused softmax + cross-entropy)."""
        if not isinstance(pre_activation, list):
            pre_activation = [pre_activation] + [False] * (len(self.outputs) - 1)
        fused = {id(t) for t, flag in zip(self.outputs, pre_activation) if flag}
        pending: dict[int, np.ndarray] = {}
        for tensor, grad in zip(self.outputs, grads):
            _accumulate(pending, tensor, grad)
        for layer in self.layers:
            for variable in layer.weights:
                variable.grad = None
        for node in reversed(self.nodes):
            grad = pending.pop(id(node.outputs[0]), None)
            if grad is None:
                continue  # nothing the loss depends on comes out of this node
            layer = node.layer
            shared = id(layer) in self.shared
            if shared:
                layer.restore_cache(self._caches[id(node)])
                before = [v.grad for v in layer.weights]
            if id(node.outputs[0]) in fused:
                grad_input = layer.backward_from_pre_activation(grad)
            else:
                grad_input = layer.backward(grad)
            if shared:
                for variable, earlier in zip(layer.weights, before):
                    if earlier is not None and variable.grad is not None:
                        variable.grad = variable.grad + earlier
            if grad_input is None:
                continue
            if node.list_input:
                for tensor, part in zip(node.inputs, grad_input):
                    _accumulate(pending, tensor, part)
            else:
                _accumulate(pending, node.inputs[0], grad_input)
        for layer in self.layers:  # weights the loss does not reach get a zero gradient
            for variable in layer.weights:
                if variable.grad is None:
                    variable.grad = np.zeros(variable.shape, np.float32)
        return [pending.get(id(tensor)) for tensor in self.inputs]


def _accumulate(pending: dict, tensor: KerasTensor, grad) -> None:
    if grad is None:
        return
    key = id(tensor)
    pending[key] = grad if key not in pending else pending[key] + grad
