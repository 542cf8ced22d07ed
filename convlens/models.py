"""Model and Sequential: layers built, run, trained and summarised as in Keras 3."""

from __future__ import annotations

import numpy as np

from convlens import regularizers
from convlens.functional import Graph
from convlens.graph import KerasTensor, symbolic_inputs
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, as_float32, normalize_shape, unique_name, weight_list
from convlens.layers.core import InputLayer
from convlens.shapes import format_shape


class Model(Layer):
    """A model: layers connected into a graph from ``inputs`` to ``outputs`` (Keras 3).

    ``Model(inputs, outputs)`` takes the symbolic tensors of ``Input(...)`` and of the layers
    called on them (and, as in Keras, makes a :class:`Functional`); ``Sequential`` is the same
    model as a chain. Both build, run, train, save and explain alike, and both are layers: a
    model called on symbolic tensors is one layer of a bigger model (its weights shared
    between its calls), as Keras nests them.

    Example:
        >>> from convlens.layers import Conv2D, Input
        >>> x = Input((28, 28, 1))
        >>> model = Model(x, Conv2D(64, 3)(Conv2D(32, 3)(x)))
        >>> model.output_shape
        (None, 24, 24, 64)
    """

    def __new__(cls, *args, **kwargs):
        # ``Model(inputs, outputs)`` is a Functional, as in Keras (its summary and files say so)
        return super().__new__(Functional if cls is Model else cls)

    def __init__(self, inputs=None, outputs=None, name: str | None = None,
                 trainable: bool = True, **kwargs):
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to Model: {kwargs}")
        if inputs is None or outputs is None:
            raise TypeError(
                "Model(inputs, outputs) builds a model from the symbolic tensors of "
                "Input(...) and the layers called on them; convlens does not run subclassed "
                "models. For a plain stack of layers use Sequential([...])."
            )
        self._init_state(name or unique_name("functional"), trainable)
        self.graph = Graph(inputs, outputs, self.name)
        self.built = True

    def _init_state(self, name: str, trainable: bool) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string; received: name={name!r}.")
        # A layer's bookkeeping, but not its shapes and weights: a model reads those from its
        # layers (and its penalties are its layers', model.losses).
        self._init_bookkeeping(name, trainable)
        self.built = False
        self._needs_input_grad = False  # True once nested where a gradient flows into it
        # what compile() sets; training, the summary and callbacks read them
        self.optimizer = None
        self.loss = None  # a Loss; a list of them (or None) for several outputs
        self.loss_weight: float | None = None  # a list for several outputs
        self.heads: list = []  # one convlens.outputs.Head per output
        self.metrics_list: list = []  # [(display name, function)]
        self.weighted_metrics_list: list = []
        self.compiled = False
        self.stop_training = False
        self.history = None

    # ----- structure -----------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """Every layer, InputLayers first, in Keras's order (by depth from the outputs)."""
        return list(self.graph.layers)

    @property
    def inputs(self) -> list:
        return list(self._built_graph().inputs)

    @property
    def outputs(self) -> list:
        return list(self._built_graph().outputs)

    def _built_graph(self) -> Graph:
        if self.graph is None:
            raise ValueError(
                f"Model '{self.name}' has no input yet, so no graph: build it first, e.g. "
                "model.build((None, 28, 28, 1)), or start it with Input((28, 28, 1))."
            )
        return self.graph

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.graph.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.graph.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def sequential_like(self) -> bool:
        """Whether Keras prints this model's summary without the Connected to column."""
        return self.graph.sequential_like

    def connections(self, layer) -> str:
        """The summary's Connected to cell: ``name[node][tensor]`` of every input."""
        return self.graph.connections(layer)

    # ----- a model used as a layer of another model -----------------------------------------
    @property
    def takes_list(self) -> bool:
        return len(self.graph.inputs) > 1

    @property
    def needs_input_grad(self) -> bool:
        return self._needs_input_grad

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        self._needs_input_grad = bool(value)
        self._pass_input_grad(self._needs_input_grad)

    def _pass_input_grad(self, wanted: bool) -> None:
        """Tell the layers that read the model's inputs whether to compute their gradient."""
        self.graph.set_input_grad(wanted)

    def _input_shapes(self):
        shapes = [t.shape for t in self.graph.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def build(self, input_shape=None) -> None:
        """A functional model is built by its layers; ``input_shape`` is checked only."""
        if input_shape is not None:
            self.check_input_shape(normalize_shape(input_shape))

    build.records_shapes = True  # not Layer's build wrapper: a model's shapes are its layers'

    @property
    def input(self):
        """The model's input tensor (a list for several), as in Keras."""
        return self.inputs[0] if len(self.inputs) == 1 else self.inputs

    @property
    def output(self):
        return self.outputs[0] if len(self.outputs) == 1 else self.outputs

    def check_input_shape(self, input_shape) -> None:
        """A nested model takes what its own inputs take (None matches any size)."""
        expected = self._input_shapes()
        given, wanted = (input_shape, expected) if isinstance(expected, list) else (
            [input_shape], [expected])
        if not isinstance(given, list) or len(given) != len(wanted) or any(
            len(g) != len(w) or any(a is not None and b is not None and a != b
                                    for a, b in zip(g[1:], w[1:]))
            for g, w in zip(given, wanted)
        ):
            raise ValueError(
                f"Input of model '{self.name}' ({type(self).__name__}) is incompatible: it "
                f"takes {_shapes(expected)} and received {_shapes(input_shape)}."
            )

    def compute_output_shape(self, input_shape):
        self.check_input_shape(normalize_shape(input_shape))
        return self.output_shape

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        return {variable.path: variable.shape for variable in self.weights}

    def multiply_adds(self, input_shape) -> int | None:
        counts = []
        for layer in self.layers:
            shape = layer.input_shape
            counts.append(None if shape is None else layer.multiply_adds(shape))
        return None if None in counts else sum(counts)

    def build_from_shape(self, input_shape):
        input_shape = normalize_shape(input_shape)
        self.check_input_shape(input_shape)
        return self.output_shape

    def call(self, x, training: bool = False):
        return self.forward(x, training=training)

    call.penalised = True  # no activity penalty of its own: its layers record theirs

    def pre_activation(self):
        return self.graph.outputs[0].layer.pre_activation()

    def backward_from_pre_activation(self, grad_z):
        return self.backward(grad_z, pre_activation=True)

    def cache_state(self):
        """What a training call kept in every layer (a model called twice in a graph)."""
        return ([layer.cache_state() for layer in self.layers], self.graph.cache_state())

    def restore_cache(self, state) -> None:
        layer_states, graph_state = state
        for layer, layer_state in zip(self.layers, layer_states):
            layer.restore_cache(layer_state)
        self.graph.restore_cache(graph_state)

    def has_activity_penalty(self) -> bool:
        return any(layer.has_activity_penalty() for layer in self.layers)

    def __call__(self, x, training: bool = False):
        tensors = symbolic_inputs(x, f"Model '{self.name}' ({type(self).__name__})")
        if tensors is not None:
            if isinstance(self.output_shape, list):
                raise ValueError(
                    f"Model '{self.name}' has {len(self.output_shape)} outputs; convlens "
                    "nests models with one output. Call the model's output layers' parts "
                    "directly, or build one model with all the layers."
                )
            return self.call_symbolic(tensors, isinstance(x, (list, tuple)))
        return self.forward(self.check_input(x), training=training)

    # ----- running -------------------------------------------------------------------------
    def check_input(self, x):
        """The input(s) as float32 arrays, checked against the model's inputs."""
        arrays = self.graph.check_inputs(x, self.name)
        return arrays[0] if len(arrays) == 1 else arrays

    def forward(self, x, training: bool = False):
        outputs = self.graph.forward(x if isinstance(x, list) else [x], training)
        return outputs[0] if len(outputs) == 1 else outputs

    def layer_input(self, layer, x):
        """What ``layer`` reads when the model runs on ``x`` (inference): an array, or a list
        of arrays for a merge layer."""
        return self.graph.layer_inputs(layer, self.graph.check_inputs(x, self.name))

    def backward(self, grad, pre_activation: bool | list = False):
        """Back-propagate the gradient(s) wrt the output(s); fills weight grads and returns the
        gradient wrt the input(s) (None where no layer computes it).

        ``pre_activation=True`` (or a list with a flag per output): the gradient is wrt the
        output layer's input to its activation (the trainer's fused softmax + cross-entropy)."""
        grads = self.graph.backward(grad if isinstance(grad, list) else [grad], pre_activation)
        return grads[0] if len(grads) == 1 else grads

    backward.penalised = True

    def get_config(self) -> dict:
        """The model's config as Keras 3 writes it: layers with their inbound nodes."""
        from convlens.io import keras_format  # doorway

        return keras_format.model_to_config(self)["config"]

    def __repr__(self) -> str:
        return f"<Functional name={self.name}, built={self.built}>"

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model only has "
                    f"{len(self.layers)} layers."
                )
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        names = ", ".join(layer.name for layer in self.layers)
        raise ValueError(f"No such layer: {name}. Existing layers are: [{names}].")

    # ----- weights -------------------------------------------------------------------------
    @property
    def weights(self):
        return [v for layer in self.layers for v in layer.weights]

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [v for layer in self.layers for v in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [v for layer in self.layers for v in layer.non_trainable_weights]

    @property
    def losses(self) -> list[np.ndarray]:
        """The penalties Keras adds to the loss: each layer's ``activity_regularizer`` on its
        last call's output (divided by the batch size), then each trainable weight's
        regularizer (float32 scalars)."""
        return regularizers.model_losses(self)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on model '{self.name}', but the model isn't "
                "built. Build it first: model.build((None, ...)) or start it with Input(...)."
            )
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Set all weights in ``model.weights`` order; every shape is checked first."""
        weights = weight_list(weights, f"Model '{self.name}'")
        variables = self.weights
        if not self.built and weights:
            raise ValueError(
                f"Model '{self.name}' isn't built yet, so it has no weights to set; received "
                f"{len(weights)} array(s). Build it first: model.build((None, ...)) or start it "
                "with Input(...)."
            )
        if len(weights) != len(variables):
            raise ValueError(
                f"Model '{self.name}' has {len(variables)} weight arrays; received "
                f"{len(weights)}. Expected, in order: "
                + ", ".join(f"{v.path} {v.shape}" for v in variables)
            )
        arrays = [as_float32(value, f"Weight '{variable.path}'")
                  for variable, value in zip(variables, weights)]
        for variable, array in zip(variables, arrays):
            if array.shape != variable.shape:
                raise ValueError(
                    f"Weight '{variable.path}' has shape {variable.shape}; received an array "
                    f"of shape {array.shape}."
                )
        for variable, array in zip(variables, arrays):
            variable.assign(array)

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps=None,
                callbacks=None) -> np.ndarray:
        from convlens import training  # doorway

        return training.predict(self, x, batch_size=batch_size, verbose=verbose, steps=steps,
                                callbacks=callbacks)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None, columns=None) -> None:
        """Print the Keras table; ``columns=[...]`` adds convlens's optional columns."""
        from convlens.summary import print_summary  # doorway

        extra = None
        if columns:
            from convlens.explain.columns import summary_columns  # doorway

            extra = summary_columns(self, columns)
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                      show_trainable=show_trainable, columns=extra, layer_range=layer_range,
                      expand_nested=expand_nested)

    # ----- training ------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, **kwargs) -> None:
        from convlens import training  # doorway

        training.compile_model(self, optimizer, loss, metrics, loss_weights=loss_weights,
                               weighted_metrics=weighted_metrics, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, **kwargs):
        from convlens import training  # doorway

        return training.fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                            callbacks=callbacks, validation_split=validation_split,
                            validation_data=validation_data, shuffle=shuffle,
                            class_weight=class_weight, sample_weight=sample_weight,
                            initial_epoch=initial_epoch, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        from convlens import training  # doorway

        return training.evaluate(self, x, y, batch_size=batch_size, verbose=verbose,
                                 sample_weight=sample_weight, steps=steps, callbacks=callbacks,
                                 return_dict=return_dict, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        from convlens import training  # doorway

        return training.train_on_batch(self, x, y, sample_weight=sample_weight,
                                       class_weight=class_weight, return_dict=return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        from convlens import training  # doorway

        return training.test_on_batch(self, x, y, sample_weight=sample_weight,
                                      return_dict=return_dict)

    def predict_on_batch(self, x):
        from convlens import training  # doorway

        return training.predict_on_batch(self, x)

    # ----- files ---------------------------------------------------------------------------
    def save_weights(self, filepath, overwrite: bool = True) -> None:
        from convlens.io import weights_file  # doorway

        weights_file.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath) -> None:
        from convlens.io import weights_file  # doorway

        weights_file.load_weights(self, filepath)

    def save(self, filepath, overwrite: bool = True) -> None:
        from convlens.io import keras_format  # doorway

        keras_format.save(self, filepath, overwrite=overwrite)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs) -> None:
        """As Keras 3's ``model.export``; convlens writes ``format="onnx"`` only."""
        from convlens.io import onnx_export  # doorway

        onnx_export.export(self, filepath, format=format, verbose=verbose,
                           input_signature=input_signature, **kwargs)

    # ----- explanations --------------------------------------------------------------------
    def explain(self, **kwargs):
        from convlens.explain import explain_model  # doorway

        return explain_model(self, **kwargs)


class Functional(Model):
    """What ``Model(inputs, outputs)`` makes (Keras 3's ``Functional``): a graph of layers."""


def _shapes(shapes) -> str:
    if isinstance(shapes, list):
        return "[" + ", ".join(format_shape(s) for s in shapes) + "]"
    return format_shape(shapes)


class Sequential(Model):
    """A linear stack of layers.

    Example:
        >>> from convlens.layers import Conv2D, Input
        >>> model = Sequential([Input((28, 28, 1)), Conv2D(32, 3), Conv2D(64, 3)])
        >>> model.output_shape
        (None, 24, 24, 64)
        >>> model.layers[1].kernel.shape
        (3, 3, 32, 64)
    """

    sequential_like = True  # its summary has no Connected to column
    graph = None  # until the input shape is known; then the chain of layers as a Graph

    def __init__(self, layers=None, trainable: bool = True, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"`name` must be a non-empty string; received: name={name!r}.")
        self._init_state(name or unique_name("sequential"), trainable)
        self._layers: list[Layer] = []
        self._layer_names: set[str] = set()  # so adding n layers takes n steps, not n**2
        self._input_layer: InputLayer | None = None
        if layers is not None:
            if not isinstance(layers, (list, tuple)):
                raise TypeError(
                    f"Sequential(layers=...) expects a list of layers; received "
                    f"{type(layers).__name__}."
                )
            for layer in layers:
                self.add(layer, rebuild=False)
            self._maybe_build()

    # ----- structure -----------------------------------------------------------------------
    def add(self, layer, rebuild: bool = True) -> None:
        """Append a layer (or an ``Input(...)`` as the first entry)."""
        if isinstance(layer, KerasTensor):
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(
                    f"Sequential '{self.name}': an Input/InputLayer can only be the first "
                    f"entry; received {layer.name!r} after {len(self._layers)} layer(s)."
                )
            self._input_layer = layer
        elif isinstance(layer, Layer):
            if layer.name in self._layer_names:
                raise ValueError(
                    f"All layers added to a Sequential model should have unique names. Name "
                    f"{layer.name!r} is already the name of a layer in '{self.name}'."
                )
            if not self._layers and self._input_layer is None and layer.batch_input_shape:
                self._input_layer = InputLayer(batch_shape=layer.batch_input_shape)
            self._layers.append(layer)
            self._layer_names.add(layer.name)
        else:
            raise TypeError(
                f"Sequential.add expects a convlens layer; received {layer!r} of type "
                f"{type(layer).__name__}. Import layers from convlens.layers."
            )
        if rebuild:
            self._maybe_build()

    def pop(self, rebuild: bool = True) -> Layer:
        """Remove and return the last layer (the model is rebuilt unless ``rebuild=False``)."""
        if not self._layers:
            raise ValueError(f"Sequential '{self.name}' has no layers to pop.")
        layer = self._layers.pop()
        self._layer_names.discard(layer.name)
        self.built = False
        self.graph = None
        if rebuild:
            self._maybe_build()
        return layer

    def _maybe_build(self) -> None:
        if self._input_layer is not None:
            self._propagate(self._input_layer.batch_shape)

    def _propagate(self, input_shape) -> None:
        """Call the layers in a chain on the input's symbolic tensor (building each), and
        keep that chain as the model's graph: a Sequential runs, trains and is read as the
        functional model it is (Keras 3 does the same)."""
        shape = tuple(input_shape)
        source = self._input_layer
        if source is None or tuple(source.batch_shape) != shape:
            source = InputLayer(batch_shape=shape)
        tensor = source.output_tensor
        for layer in self._layers:
            tensor = layer(tensor)
        self.graph = Graph(source.output_tensor, tensor, self.name)
        self.graph.set_input_grad(self._needs_input_grad)
        self.built = True

    def build(self, input_shape=None) -> None:
        """Build every layer for ``input_shape`` (batch axis first, e.g. ``(None, 28, 28, 1)``)."""
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError(
                    f"Sequential '{self.name}' has no input shape: pass one, e.g. "
                    "model.build((None, 28, 28, 1)), or start the model with Input((28, 28, 1))."
                )
            input_shape = self._input_layer.batch_shape
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2:
            raise ValueError(
                f"Sequential.build expects a batch shape such as (None, 28, 28, 1); received "
                f"{input_shape!r}."
            )
        if self._input_layer is None:
            self._input_layer = InputLayer(batch_shape=tuple(input_shape))
        self._propagate(tuple(input_shape))

    build.records_shapes = True

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    # ----- a Sequential used as a layer of another model -------------------------------------
    takes_list = False

    def _input_shapes(self):
        return self.input_shape

    def check_input_shape(self, input_shape) -> None:
        if self.input_shape is not None:
            super().check_input_shape(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = normalize_shape(input_shape)
        if self.built:
            return super().compute_output_shape(input_shape)
        shape = input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        if self.built:
            return super().weight_shapes(input_shape)
        shapes, shape = {}, normalize_shape(input_shape)
        for layer in self._layers:
            shapes.update({f"{layer.name}/{key}": value
                           for key, value in layer.weight_shapes(shape).items()})
            shape = layer.compute_output_shape(shape)
        return shapes

    def build_from_shape(self, input_shape):
        input_shape = normalize_shape(input_shape)
        if not self.built:
            self.build(input_shape)
        self.check_input_shape(input_shape)
        return self.output_shape

    @property
    def input_layer(self) -> InputLayer | None:
        """The ``Input``/``InputLayer`` the model starts with (None until it knows a shape)."""
        return self._input_layer

    @property
    def input_shape(self):
        return None if self._input_layer is None else self._input_layer.batch_shape

    @property
    def output_shape(self):
        if not self.built or not self._layers:
            return self.input_shape if self.built else None
        return self._layers[-1].output_shape

    # ----- running -------------------------------------------------------------------------
    def check_input(self, x) -> np.ndarray:
        """The input as float32, checked against the model's input shape (builds if needed)."""
        x = as_float32(x, f"Model '{self.name}'")
        if x.ndim == 0:
            raise ValueError(f"Model '{self.name}' expects a batch of samples; received a scalar.")
        if not self.built:
            self.build((None,) + x.shape[1:])
        expected = self.input_shape
        if len(expected) != x.ndim or any(
            e is not None and e != r for e, r in zip(expected[1:], x.shape[1:])
        ):
            hint = " Add a batch axis, e.g. x[None]." if x.ndim == len(expected) - 1 else ""
            if len(expected) == x.ndim + 1 and expected[-1] == 1:
                hint = " Add a channel axis, e.g. x[..., None]."
            raise ValueError(
                f"Input of model '{self.name}' is incompatible: expected shape="
                f"{format_shape(expected)}, found shape={format_shape(x.shape)}.{hint}"
            )
        return x

    def layer_input(self, layer, x):
        """What ``layer`` reads when the model runs on ``x`` (inference)."""
        h = self.check_input(x)
        if layer not in self._layers:
            raise ValueError(f"Layer '{layer.name}' is not in model '{self.name}'.")
        return self.graph.layer_inputs(layer, [h])

    def get_config(self) -> dict:
        layers = []
        if self._input_layer is not None:
            layers.append({"class_name": "InputLayer", "config":
                           self._input_layer.get_config()})
        layers += [{"class_name": type(layer).__name__, "config": layer.get_config()}
                   for layer in self._layers]
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    def __repr__(self) -> str:
        return f"<Sequential name={self.name}, built={self.built}>"


# A model nested in another is one layer to the readers: its words list its layers, its cost
# and receptive field are its layers' together, a value of it is traced in its output layer.
# Files write it whole (io/functional_format); ONNX inlines its layers.
MODEL_KIND = Kind(words="model", cost="model", field="model", trace="model", onnx="model")
register(Sequential, MODEL_KIND)
register(Functional, MODEL_KIND)


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True):
    """Read a Keras 3 ``.keras`` file (written by Keras or by convlens), or a legacy ``.h5``
    model file (Keras 2's ``model.save("m.h5")``), into a Sequential.

    The file's JSON config is parsed as data, never executed; layers come from an allow-list
    of convlens classes, and what convlens cannot represent is a ``ValueError`` naming it.
    """
    path = str(filepath)
    if path.endswith(".h5") and not path.endswith(".weights.h5"):
        from convlens.io import legacy_h5  # doorway

        return legacy_h5.load_model(path, compile=compile)
    from convlens.io import keras_format  # doorway

    return keras_format.load_model(
        filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
    )
