"""Layer: the one base class. State and validation live here; maths lives in ``convlens.ops``.

A layer is built on first use from the input shape (``build``), is callable on
NumPy arrays like a Keras layer, and after a ``training=True`` call can run
``backward(grad_output)``, which returns the input gradient and fills
``variable.grad`` for each of its weights.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from convlens import constraints, initializers, regularizers, session
from convlens.graph import Node, symbolic_inputs
from convlens.shapes import format_shape
from convlens.variables import Variable


@functools.lru_cache(maxsize=256)  # a few class names, asked once per layer made
def to_snake_case(name: str) -> str:
    """Keras's auto-name stem: ``Conv2D`` -> ``conv2d``, ``MaxPooling2D`` -> ``max_pooling2d``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(stem: str) -> str:
    """``conv2d``, then ``conv2d_1``, ``conv2d_2``... counted per session, as Keras does."""
    return session.current().unique_name(stem)


def as_float32(x, where: str) -> np.ndarray:
    """The array a layer computes on, or a TypeError naming the layer."""
    if isinstance(x, Variable):
        x = x.value
    if x is None:
        raise TypeError(f"{where} expects a numeric array; received None.")
    try:
        array = np.asarray(x)
    except Exception as error:  # ragged lists and the like
        raise TypeError(
            f"{where} expects a numeric array; could not convert the input: {error}"
        ) from None
    if array.dtype == object or np.iscomplexobj(array) or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(
            f"{where} expects a real numeric array; received dtype {array.dtype}. "
            "Pass a NumPy array of numbers, e.g. np.asarray(x, dtype='float32')."
        )
    return array if array.dtype == np.float32 else array.astype(np.float32)


def weight_list(weights, where: str) -> list:
    """``weights`` as the list of arrays ``set_weights`` takes, or a TypeError that says so (a
    single array would otherwise be read as a list of its rows)."""
    if isinstance(weights, (np.ndarray, Variable)) or not isinstance(weights, (list, tuple)):
        shape = getattr(weights, "shape", None)
        shown = f"a single array of shape {tuple(shape)}" if shape is not None else repr(weights)
        raise TypeError(
            f"{where}: set_weights expects a list of arrays, one per weight (as get_weights "
            f"returns); received {shown}. Wrap one array in a list: set_weights([kernel, bias])."
        )
    return list(weights)


def resolve(getter, value, where: str):
    """``getter(value)``, e.g. ``activations.get``, with the layer ``where`` named in its error."""
    try:
        return getter(value)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where}: {error}") from None


def set_weight_rules(layer, **arguments) -> None:
    """Set each ``*_regularizer`` / ``*_constraint`` argument on ``layer`` as the object it names
    (None, a name like ``"l2"``, a Keras config dict or an instance), or raise a ValueError
    naming the layer and the argument."""
    for key, value in arguments.items():
        getter = regularizers.get if key.endswith("_regularizer") else constraints.get
        try:
            rule = getter(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{layer.where}: invalid `{key}`: {error}") from None
        setattr(layer, key, rule)


def weight_rules_config(layer, *keys: str) -> dict:
    """The config entries of the ``*_regularizer`` / ``*_constraint`` attributes ``keys``, as
    Keras writes them (None, or the object's module/class_name/config dict)."""
    return {
        key: (regularizers.serialize if key.endswith("_regularizer") else constraints.serialize)(
            getattr(layer, key))
        for key in keys
    }


def normalize_shape(shape):
    """A batch shape as a tuple of ints/None; a merge layer's list of shapes as a list of them."""
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return [normalize_shape(s) for s in shape]
    return tuple(None if d is None else int(d) for d in shape)


def _built_once(build):
    """Wrap a layer's ``build`` as Keras does: record the shapes and mark the layer built.

    A second call checks the shape instead of creating the weights again.
    """

    @functools.wraps(build)
    def wrapper(self, input_shape):
        input_shape = normalize_shape(input_shape)
        # A layer built at construction (``built_at_init``) still records its first shape.
        if self.built and self.input_shape is not None:
            self.check_input_shape(input_shape)
            return
        build(self, input_shape)
        self.built = True
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)

    wrapper.records_shapes = True
    return wrapper


def _penalised_call(call):
    """Wrap a layer's ``call`` as Keras's ``__call__`` does: a layer with an
    ``activity_regularizer`` records the penalty of its output (divided by the batch size)."""

    @functools.wraps(call)
    def wrapper(self, x, training=False):
        y = call(self, x, training)
        if self.activity_regularizer is not None:
            self.record_activity(y, training)
        return y

    wrapper.penalised = True
    return wrapper


def _penalised_backward(backward):
    """Wrap a layer's ``backward``: the gradient of the activity penalty joins the gradient
    that arrives at the layer's output."""

    @functools.wraps(backward)
    def wrapper(self, grad_output):
        if self._activity_output is not None:
            grad_output = grad_output + self.activity_gradient()
        return backward(self, grad_output)

    wrapper.penalised = True
    return wrapper


class Layer:
    """Base class of all convlens layers (Keras 3 ``keras.layers.Layer`` semantics).

    Args:
        name: unique name; by default the snake-cased class name, numbered per session.
        trainable: whether the layer's weights are updated by ``fit``.
        dtype: only ``"float32"`` (or None) is supported.
        input_shape: Keras-2 style shape of one sample for the first layer of a Sequential.
    """

    # Keras 3 marks a layer built at construction when its class has no ``build`` method of its
    # own (weightless layers: Activation, Dropout, pooling...); Flatten and ZeroPadding2D have
    # one in Keras, so they start unbuilt. The summary prints "0", not "0 (unbuilt)", for them.
    built_at_init = False
    # A model sets False on its first layer: nothing upstream wants the gradient wrt the data.
    needs_input_grad = True
    # Merge layers (Add, Concatenate, ...) are called on a list of inputs.
    takes_list = False

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype=None,
        input_shape=None,
        batch_input_shape=None,
        input_dim=None,
        batch_size=None,
        activity_regularizer=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(
                f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}"
            )
        if dtype not in (None, "float32", np.float32) and str(dtype) != "float32":
            raise ValueError(
                f"{type(self).__name__}: convlens computes in float32 only; received "
                f"dtype={dtype!r}. Omit `dtype` or pass 'float32'."
            )
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(
                "`name` must be a non-empty string without '/' (it separates a weight's path, "
                f"as in Keras); received: name={name!r}."
            )
        self._init_bookkeeping(name or unique_name(to_snake_case(type(self).__name__)),
                               trainable)
        self.built = self.built_at_init
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        set_weight_rules(self, activity_regularizer=activity_regularizer)
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        if batch_input_shape is not None:
            self._batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            input_shape = (input_shape,) if isinstance(input_shape, int) else input_shape
            self._batch_input_shape = (batch_size,) + tuple(input_shape)

    def _init_bookkeeping(self, name: str, trainable: bool) -> None:
        """What every layer (a model too) keeps besides its shapes and arguments."""
        self.name = name
        self._trainable = True
        self.trainable = trainable
        self._variables: list[Variable] = []
        self._fixed_axes: dict[int, int] = {}
        self._cache = None
        self.inbound_nodes: list = []  # one Node per call on symbolic tensors
        self._batch_input_shape = None
        self._activation_cache = None  # (z, y) of the last training call, for backward
        self._grad_is_pre_activation = False
        self.activity_regularizer = None
        # The activity penalty of the last call (a float32 scalar), and the output it was
        # computed from when that call was a training one (its gradient joins backward's).
        self.activity_loss: np.ndarray | None = None
        self._activity_output: np.ndarray | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is not None and not getattr(build, "records_shapes", False):
            cls.build = _built_once(build)
        for method, wrap in (("call", _penalised_call), ("backward", _penalised_backward)):
            own = cls.__dict__.get(method)
            if own is not None and not getattr(own, "penalised", False):
                setattr(cls, method, wrap(own))

    @property
    def where(self) -> str:
        """How error messages name this layer: ``Conv2D 'conv2d_1'``."""
        return f"{type(self).__name__} '{self.name}'"

    # ----- weights -------------------------------------------------------------------------
    def add_weight(self, name: str, shape, initializer="zeros", trainable: bool = True,
                   regularizer=None, constraint=None):
        value = initializers.get(initializer)(tuple(shape))
        variable = Variable(value, name=name, path=f"{self.name}/{name}", trainable=trainable,
                            regularizer=regularizers.get(regularizer),
                            constraint=constraints.get(constraint))
        self._variables.append(variable)
        return variable

    @property
    def batch_input_shape(self) -> tuple | None:
        """The shape declared with ``input_shape``/``batch_input_shape`` (batch axis first)."""
        return self._batch_input_shape

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                f"{type(self).__name__} '{getattr(self, 'name', '?')}': `trainable` must be "
                f"True or False; received trainable={value!r} of type {type(value).__name__}."
            )
        self._trainable = bool(value)

    @property
    def weights(self) -> list[Variable]:
        return list(self._variables)

    @property
    def variables(self) -> list[Variable]:
        return list(self._variables)

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self._trainable:
            return []
        return [v for v in self._variables if v.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self._trainable:
            return list(self._variables)
        return [v for v in self._variables if not v.trainable]

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._variables]

    def set_weights(self, weights) -> None:
        """Replace every weight; checks the count and each shape before changing anything."""
        weights = weight_list(weights, f"Layer '{self.name}'")
        if not self.built and weights:
            raise ValueError(
                f"Layer '{self.name}' isn't built yet, so it has no weights to set; received "
                f"{len(weights)} array(s). Build it first: `layer.build(input_shape)` or call "
                "it on data."
            )
        if len(weights) != len(self._variables):
            names = ", ".join(f"{v.name} {v.shape}" for v in self._variables) or "none"
            raise ValueError(
                f"Layer '{self.name}' expects {len(self._variables)} weight array(s) "
                f"({names}); received {len(weights)}."
            )
        arrays = []
        for variable, value in zip(self._variables, weights):
            array = as_float32(value, f"Layer '{self.name}' weight '{variable.name}'")
            if array.shape != variable.shape:
                raise ValueError(
                    f"Layer '{self.name}' weight '{variable.name}' has shape {variable.shape}; "
                    f"received an array of shape {array.shape}."
                )
            arrays.append(array)
        for variable, array in zip(self._variables, arrays):
            variable.assign(array)

    @property
    def losses(self) -> list[np.ndarray]:
        """Keras's ``layer.losses``: the activity penalty of the last call (divided by its batch
        size), then the penalty of each trainable weight that has a regularizer."""
        activity = [] if self.activity_regularizer is None or self.activity_loss is None else [
            self.activity_loss]
        return activity + regularizers.weight_penalties(self.trainable_weights)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on layer '{self.name}', but the layer isn't "
                "built. Build it first: `layer.build(input_shape)` or call it on data."
            )
        return int(sum(v.size for v in self._variables))

    # ----- building and calling ------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create the weights for ``input_shape`` (batch axis first); subclasses override."""

    def compute_output_shape(self, input_shape) -> tuple:
        return tuple(input_shape)

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        """The shape of each weight ``build(input_shape)`` creates, without creating any."""
        return {}

    def multiply_adds(self, input_shape) -> int | None:
        """Multiply-adds of one sample through this layer; None when a size is unknown."""
        return 0

    def build_from_shape(self, input_shape) -> tuple:
        """Build (once) for ``input_shape`` (batch axis first, may be None); return output shape."""
        input_shape = normalize_shape(input_shape)
        self.build(input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        return self.output_shape

    def check_input_shape(self, input_shape) -> None:
        """Rank and the fixed axes recorded at build time (e.g. the channel axis) must match."""
        if self.input_shape is None:
            return
        expected = self.input_shape
        if isinstance(expected, list) or isinstance(input_shape, list):
            self._check_input_shapes(input_shape)
            return
        if len(input_shape) != len(expected):
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible: expected "
                f"ndim={len(expected)} (shape {format_shape(expected)}, batch axis first), "
                f"found ndim={len(input_shape)} (shape {format_shape(input_shape)})."
                + _batch_hint(input_shape, expected)
            )
        for axis, size in self._fixed_axes.items():
            if input_shape[axis] is not None and input_shape[axis] != size:
                raise ValueError(
                    f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible: "
                    f"axis {axis % len(expected)} must have size {size} (the layer was built "
                    f"for input shape {format_shape(expected)}), but the input has shape "
                    f"{format_shape(input_shape)}."
                )

    def _check_input_shapes(self, input_shapes) -> None:
        """A layer called on a list (a merge) takes the same number of inputs of each rank."""
        expected = self.input_shape
        if not (isinstance(expected, list) and isinstance(input_shapes, list)
                and len(expected) == len(input_shapes)
                and all(len(a) == len(b) for a, b in zip(expected, input_shapes))):
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible: it was "
                f"built for {_shapes_text(expected)} and received {_shapes_text(input_shapes)}."
            )

    def __call__(self, x, training: bool = False):
        where = f"Layer '{self.name}' ({type(self).__name__})"
        tensors = symbolic_inputs(x, where)
        if tensors is not None:
            return self.call_symbolic(tensors, isinstance(x, (list, tuple)))
        if self.takes_list and isinstance(x, (list, tuple)):
            arrays = [as_float32(a, where) for a in x]
            shapes = [(None,) + a.shape[1:] for a in arrays]
            if self.built:
                self.check_input_shape(shapes)
            self.build_from_shape(shapes)
            return self.call(arrays, training=training)
        x = as_float32(x, f"Layer '{self.name}'")
        if self.built:
            self.check_input_shape(x.shape)
        self.build_from_shape((None,) + x.shape[1:])
        return self.call(x, training=training)

    def call_symbolic(self, tensors: list, list_input: bool):
        """Record a call on symbolic tensors: build for their shapes, add a node, return its
        output tensor."""
        shapes = [t.shape for t in tensors]
        if list_input and not self.takes_list:
            raise TypeError(
                f"Layer '{self.name}' ({type(self).__name__}) takes one input tensor; received "
                f"a list of {len(tensors)}. Merge them first, e.g. with Concatenate or Add."
            )
        input_shape = normalize_shape(shapes if list_input else shapes[0])
        if self.built and self.input_shape is not None:
            self.check_input_shape(input_shape)
        self.build_from_shape(input_shape)
        node = Node(self, tensors, [self.compute_output_shape(input_shape)], list_input)
        return node.outputs[0]

    @property
    def input(self):
        """The symbolic input of this layer's first call (a list for a merge layer)."""
        return self._node_tensors("input", lambda node: node.inputs)

    @property
    def output(self):
        """The symbolic output of this layer's first call."""
        return self._node_tensors("output", lambda node: node.outputs)

    def _node_tensors(self, what: str, pick):
        if not self.inbound_nodes:
            raise AttributeError(
                f"Layer '{self.name}' has never been called on symbolic tensors, so it has no "
                f"{what}. Call it on Input(...) tensors first."
            )
        node = self.inbound_nodes[0]
        tensors = pick(node)
        return list(tensors) if (what == "input" and node.list_input) else tensors[0]

    def cache_state(self):
        """What a training call kept for ``backward``; a graph that calls this layer twice
        keeps one per call and puts it back with ``restore_cache`` before each backward."""
        return (self._cache, self._activation_cache)

    def restore_cache(self, state) -> None:
        self._cache, self._activation_cache = state

    def has_activity_penalty(self) -> bool:
        """Whether calling this layer records an activity penalty (a model: one of its layers)."""
        return self.activity_regularizer is not None

    def record_activity(self, y: np.ndarray, training: bool) -> None:
        """Keep the activity penalty of the output ``y`` (Keras: divided by the batch size, so
        the strength does not depend on it), and ``y`` for backward when training."""
        penalty = self.activity_regularizer(y)
        batch = y.shape[0] if y.ndim else 1
        self.activity_loss = (penalty / penalty.dtype.type(batch) if batch else
                              np.zeros_like(penalty))
        self._activity_output = y if training else None

    def activity_gradient(self) -> np.ndarray:
        """d(activity penalty)/d(output) of the last training call, once (or d/d(the input to
        the activation) while ``backward_from_pre_activation`` runs)."""
        y, self._activity_output = self._activity_output, None
        grad = self.activity_regularizer.gradient(y)
        grad = grad / grad.dtype.type(max(y.shape[0] if y.ndim else 1, 1))
        if self._grad_is_pre_activation:
            z, activated = self._activation_cache
            grad = self.activation.backward(z, activated, grad)
        return grad

    def call(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient of the loss wrt this layer's input; fills ``variable.grad`` for its weights."""
        return grad_output

    def activate(self, z: np.ndarray, training: bool) -> np.ndarray:
        """Apply ``self.activation``, keeping (z, y) for backward when training."""
        if self.activation.is_linear:
            return z
        y = self.activation(z)
        self._activation_cache = (z, y) if training else None
        return y

    def activation_grad(self, grad_y: np.ndarray) -> np.ndarray:
        if self.activation.is_linear or self._grad_is_pre_activation:
            return grad_y
        z, y = self._activation_cache or (None, None)
        if z is None:
            raise RuntimeError(
                f"Layer '{self.name}': backward() needs a preceding call with training=True."
            )
        return self.activation.backward(z, y, grad_y)

    def pre_activation(self) -> np.ndarray | None:
        """What the last ``training=True`` call fed its activation (the logits before a
        softmax), or None for a linear activation or no training call."""
        return None if self._activation_cache is None else self._activation_cache[0]

    def backward_from_pre_activation(self, grad_z: np.ndarray) -> np.ndarray:
        """``backward`` given the gradient wrt the activation's input instead of the output
        (what the trainer holds when it fuses softmax with cross-entropy)."""
        self._grad_is_pre_activation = True
        try:
            return self.backward(grad_z)
        finally:
            self._grad_is_pre_activation = False

    def require_cache(self):
        if self._cache is None:
            raise RuntimeError(
                f"Layer '{self.name}': backward() needs a preceding call with training=True."
            )
        return self._cache

    def explain(self, **kwargs):
        """Words and numbers for how this layer maps its input to its output (built layers)."""
        from convlens.explain import explain_layer  # doorway

        return explain_layer(self, **kwargs)

    # ----- config --------------------------------------------------------------------------
    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        if self.activity_regularizer is not None:  # Keras's base Layer writes it when set
            config.update(weight_rules_config(self, "activity_regularizer"))
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = list(self._batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config.pop("dtype", None)
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


Layer.build = _built_once(Layer.build)
Layer.call = _penalised_call(Layer.call)
Layer.backward = _penalised_backward(Layer.backward)


def _shapes_text(shapes) -> str:
    if isinstance(shapes, list):
        return "[" + ", ".join(format_shape(s) for s in shapes) + "]"
    return format_shape(shapes)


def _batch_hint(received, expected) -> str:
    if len(received) == len(expected) - 1:
        return " Add a batch axis, e.g. x[None] for a single sample."
    return ""
