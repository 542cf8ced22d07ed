"""PyTorch modules with their own ``forward()`` -> a convlens Functional ``Model``, by tracing.

``from_torch`` hands a module that is not a plain chain of layers to :func:`from_traced`,
which runs ``torch.fx.symbolic_trace`` (the module's ``forward`` is called once on proxy
tensors; no data, no file) and reads the traced graph node by node:

* a call of a submodule (``self.conv1(x)``, ``self.layer3[0].downsample(x)``): the layers
  ``from_torch`` makes of that module, called on the node's input;
* ``x + y`` / ``torch.add``, ``x - y``, ``x * y``, ``torch.cat([...], dim)``: ``Add``,
  ``Subtract``, ``Multiply``, ``Concatenate``;
* ``torch.flatten(x, 1)``, ``x.view(x.size(0), -1)`` / ``reshape`` to a constant shape;
* ``F.relu`` and the other activation functions, ``F.max_pool2d`` / ``F.avg_pool2d`` /
  ``F.adaptive_avg_pool2d`` and friends (read as the module of the same name and arguments),
  ``F.dropout`` (nothing at inference).

The model takes torch's input (channels first) and returns what the module returns. What
convlens can't express is a one-line ``ValueError`` naming the module's path in the model
(``layer3.0.downsample.1``) or the function, its type and the reason.
"""

from __future__ import annotations

import operator

from convlens import layers as cl

__all__ = ["from_graph", "from_traced"]

# to_torch's Merge operations -> convlens merge layers
_MERGE_LAYERS = {"add": cl.Add, "subtract": cl.Subtract, "multiply": cl.Multiply,
                 "average": cl.Average, "maximum": cl.Maximum, "minimum": cl.Minimum}


class _Refused(ValueError):
    pass


def _functional_modules(torch) -> dict:
    """torch functions that compute what a torch.nn module of the same arguments computes."""
    F, nn = torch.nn.functional, torch.nn
    table = {
        F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.sigmoid: nn.Sigmoid,
        torch.sigmoid: nn.Sigmoid, F.tanh: nn.Tanh, torch.tanh: nn.Tanh, F.silu: nn.SiLU,
        F.gelu: nn.GELU, F.elu: nn.ELU, F.selu: nn.SELU, F.softplus: nn.Softplus,
        F.leaky_relu: nn.LeakyReLU, F.hardswish: nn.Hardswish, F.hardsigmoid: nn.Hardsigmoid,
        F.mish: nn.Mish, F.softmax: nn.Softmax, F.log_softmax: nn.LogSoftmax,
        torch.softmax: nn.Softmax, torch.log_softmax: nn.LogSoftmax,
        F.max_pool1d: nn.MaxPool1d, F.max_pool2d: nn.MaxPool2d, F.max_pool3d: nn.MaxPool3d,
        F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d, F.avg_pool3d: nn.AvgPool3d,
        F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d, F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
        F.adaptive_max_pool1d: nn.AdaptiveMaxPool1d, F.adaptive_max_pool2d: nn.AdaptiveMaxPool2d,
    }
    # x.relu(), x.sigmoid(), ... as Tensor methods
    methods = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
               "softmax": nn.Softmax, "log_softmax": nn.LogSoftmax}
    return table, methods


_MERGES = {"add": cl.Add, "sub": cl.Subtract, "mul": cl.Multiply}


class _Tracer:
    def __init__(self, torch, root, input_shape, converter_class, convert_module):
        self.torch, self.root = torch, root
        self.converter_class, self.convert_module = converter_class, convert_module
        self.functions, self.methods = _functional_modules(torch)
        self.values: dict = {}  # fx node -> KerasTensor, or "batch" for x.size(0)
        self.input_shape = input_shape
        self.non_negative: dict[int, bool] = {}  # id(KerasTensor) -> every value >= 0

    def tensor(self, argument, what: str):
        value = self.values.get(argument) if hasattr(argument, "op") else None
        if value is None or isinstance(value, str):
            raise _Refused(f"its {what} ({argument!r}) is not a tensor computed from the input.")
        return value

    def layers(self, module, tensor):
        """``module`` converted for ``tensor``'s shape, its layers called on ``tensor``."""
        converter = self.converter_class(tensor.shape[1:])
        converter.non_negative = self.non_negative.get(id(tensor), False)
        self.convert_module(converter, module)
        for layer in converter.layers:
            tensor = layer(tensor)
        self.non_negative[id(tensor)] = converter.non_negative
        return tensor

    def call_module(self, node):
        module = self.root.get_submodule(node.target)
        if node.kwargs or len(node.args) != 1:
            raise _Refused("it is called with more than one argument.")
        return self.layers(module, self.tensor(node.args[0], "input"))

    def merge(self, kind: str, node):
        left, right = node.args[:2]
        if not (hasattr(left, "op") and hasattr(right, "op")):
            raise _Refused(f"{kind} with a constant: convlens's merge layers combine two "
                           "computed tensors.")
        return _MERGES[kind]()([self.tensor(left, "left operand"),
                                self.tensor(right, "right operand")])

    def concatenate(self, node):
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        inputs = [self.tensor(t, "input") for t in tensors]
        if dim % len(inputs[0].shape) == 0:
            raise _Refused("concatenating along the batch axis.")
        return cl.Concatenate(axis=dim)(inputs)

    def flatten(self, node):
        tensor = self.tensor(node.args[0], "input")
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return self.layers(self.torch.nn.Flatten(start, end), tensor)

    def reshape(self, node):
        tensor = self.tensor(node.args[0], "input")
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        first, rest = shape[0], list(shape[1:])
        batch = first == -1 or (hasattr(first, "op") and self.values.get(first) == "batch")
        if not batch or not all(isinstance(d, int) for d in rest) or rest.count(-1) > 1:
            raise _Refused(f"shape {shape}: only (x.size(0) or -1, constant sizes...) keeps the "
                           "batch axis as convlens's Reshape does.")
        if len(rest) == 1 and len(tensor.shape) > 2:
            return self.layers(self.torch.nn.Flatten(), tensor)
        return cl.Reshape(tuple(rest))(tensor)

    def size(self, node):
        self.tensor(node.args[0], "input")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if dim != 0:
            raise _Refused("only x.size(0), the batch size, is read (in a view/reshape).")
        return "batch"

    def function(self, node):
        target = node.target
        name = getattr(target, "__name__", str(target))
        if target in (operator.add, operator.iadd, self.torch.add):
            return self.merge("add", node)
        if target in (operator.sub, operator.isub, self.torch.sub):
            return self.merge("sub", node)
        if target in (operator.mul, operator.imul, self.torch.mul):
            return self.merge("mul", node)
        if target in (self.torch.cat, self.torch.concat):
            return self.concatenate(node)
        if target is self.torch.flatten:
            return self.flatten(node)
        if target is self.torch.reshape:
            return self.reshape(node)
        if target is self.torch.nn.functional.dropout:
            return self.tensor(node.args[0], "input")
        module_class = self.functions.get(target)
        if module_class is None:
            raise _Refused(f"convlens has no layer for the function {name}.")
        return self.module_for_function(module_class, node)

    def module_for_function(self, module_class, node):
        tensor = self.tensor(node.args[0], "input")
        kwargs = {key: value for key, value in node.kwargs.items() if key not in ("inplace",)}
        try:
            module = module_class(*node.args[1:], **kwargs)
        except TypeError as error:
            raise _Refused(f"its arguments don't make a {module_class.__name__}: {error}") from None
        return self.layers(module, tensor)

    def method(self, node):
        name = node.target
        if name in ("add", "add_", "sub", "mul"):
            return self.merge(name.rstrip("_"), node)
        if name in ("view", "reshape"):
            return self.reshape(node)
        if name == "size":
            return self.size(node)
        if name == "flatten":
            return self.flatten(node)
        if name in ("contiguous",):
            return self.tensor(node.args[0], "input")
        if name in self.methods:
            return self.module_for_function(self.methods[name], node)
        raise _Refused(f"convlens has no layer for the tensor method .{name}().")


def _describe(node, root) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' ({type(root.get_submodule(node.target)).__name__})"
    target = node.target if node.op == "call_method" else getattr(
        node.target, "__name__", str(node.target))
    return f"node '{node.name}' ({node.op} {target})"


def from_traced(torch, module, input_shape: tuple, name, converter_class, convert_module):
    """A convlens ``Model`` for a torch module traced with ``torch.fx``; see the module doc.

    ``converter_class`` and ``convert_module`` are ``from_torch``'s chain converter and its
    one-module conversion, applied to each submodule the traced graph calls.
    """
    from convlens.models import Model

    try:
        graph_module = torch.fx.symbolic_trace(module)
    except Exception as error:  # any failure of tracing the user's forward()
        text = " ".join(str(error).split())[:300]
        raise ValueError(
            f"from_torch: {type(module).__name__}.forward() can't be traced by torch.fx "
            f"({type(error).__name__}: {text}); convlens reads modules whose forward() has no "
            "data-dependent control flow."
        ) from None
    tracer = _Tracer(torch, module, input_shape, converter_class, convert_module)
    inputs, outputs = [], None
    for node in graph_module.graph.nodes:
        try:
            if node.op == "placeholder":
                if inputs:
                    raise _Refused("convlens reads modules with one input tensor.")
                inputs.append(cl.Input(input_shape))
                tracer.values[node] = inputs[0]
            elif node.op == "call_module":
                tracer.values[node] = tracer.call_module(node)
            elif node.op == "call_function":
                tracer.values[node] = tracer.function(node)
            elif node.op == "call_method":
                tracer.values[node] = tracer.method(node)
            elif node.op == "output":
                result = node.args[0]
                outputs = ([tracer.tensor(r, "output") for r in result]
                           if isinstance(result, (tuple, list))
                           else tracer.tensor(result, "output"))
            else:
                raise _Refused(f"fx node kind {node.op!r} (a parameter or attribute read "
                               "directly) has no convlens layer.")
        except ValueError as error:
            text = " ".join(str(error).split())
            raise ValueError(
                f"from_torch: cannot convert {_describe(node, module)}: {text[:400]}"
            ) from None
    return Model(inputs, outputs, name=name)


def from_graph(graph_module, input_shape: tuple, name, chain_layers):
    """A convlens ``Model`` from the :class:`convlens.io.torch_modules.Graph` that ``to_torch``
    writes for a Functional model: each layer's chain through ``chain_layers`` (from_torch's),
    each ``Merge`` as its merge layer. One input only (``input_shape``)."""
    from convlens.io.torch_modules import Merge
    from convlens.models import Model

    if graph_module.input_count != 1:
        raise ValueError(f"from_torch: this Graph takes {graph_module.input_count} inputs; "
                         "from_torch reads modules with one input.")
    values = {0: cl.Input(input_shape)}
    for layer_name, reads, write in graph_module.steps:
        child = graph_module.layers[layer_name]
        inputs = [values[index] for index in reads]
        if isinstance(child, Merge):
            if child.operation == "concatenate":
                values[write] = cl.Concatenate(axis=child.axis)(inputs)
            else:
                values[write] = _MERGE_LAYERS[child.operation]()(inputs)
            continue
        tensor = inputs[0]
        for layer in chain_layers(child, tensor.shape[1:], f"layers.{layer_name}."):
            tensor = layer(tensor)
        values[write] = tensor
    outputs = [values[index] for index in graph_module.outputs]
    return Model(values[0], outputs[0] if len(outputs) == 1 else outputs, name=name)
