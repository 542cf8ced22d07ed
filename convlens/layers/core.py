"""Core layers: Input, Dense, Flatten, Reshape, Activation, ReLU, Dropout, ZeroPadding2D."""

from __future__ import annotations

import math

import numpy as np

from convlens import activations, initializers
from convlens.graph import Node
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve, set_weight_rules, weight_rules_config
from convlens.layers.conv import add_kernel_and_bias, positive_int
from convlens.ops import activations as activation_ops
from convlens.ops import dropout as dropout_ops
from convlens.ops.dense import dense_backward, dense_forward
from convlens.ops.layout import zero_pad_backward, zero_pad_forward
from convlens.shapes import dense_macs, format_shape, normalize_data_format
from convlens.utils import rng


def _sample_shape(shape, where: str) -> tuple:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(
            f"{where}: `shape` must be a tuple of ints (one sample, no batch axis), e.g. "
            f"(28, 28, 1); received: {shape!r}."
        )
    for dim in shape:
        if dim is not None and (
            isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0
        ):
            raise ValueError(
                f"{where}: every entry of `shape` must be a positive int or None; "
                f"received shape={tuple(shape)!r}."
            )
    return tuple(None if d is None else int(d) for d in shape)


class InputLayer(Layer):
    """The model's entry point: fixes the shape of one sample (batch axis excluded)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None,
                 **kwargs):
        if "input_shape" in kwargs and shape is None:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs and batch_shape is None:
            batch_shape = kwargs.pop("batch_input_shape")
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is not None:
            batch_shape = tuple(batch_shape)
            shape = _sample_shape(batch_shape[1:], "InputLayer")
            batch_size = batch_shape[0]
        elif shape is None:
            raise ValueError("InputLayer needs `shape` (one sample, e.g. (28, 28, 1)).")
        else:
            shape = _sample_shape(shape, "InputLayer")
        self.batch_shape = (batch_size, *shape)
        self.build_from_shape(self.batch_shape)
        # The node with no inputs whose output is what Input(...) returns.
        self.output_tensor = Node(self, [], [self.batch_shape], False).outputs[0]

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": "float32", "sparse": False,
                "ragged": False, "name": self.name}


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, **kwargs):  # noqa: N802
    """``Input((28, 28, 1))``: a symbolic tensor to build a ``Model`` from, or the first entry
    of a ``Sequential`` (Keras 3 style)."""
    return InputLayer(shape, batch_size, dtype, batch_shape, name, **kwargs).output_tensor


class Dense(Layer):
    """``y = activation(x @ kernel + bias)`` on the last axis; kernel ``(in, units)``."""

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = self.where
        self.units = positive_int(units, "units", where)
        self.activation = resolve(activations.get, activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = resolve(initializers.get, kernel_initializer, where)
        self.bias_initializer = resolve(initializers.get, bias_initializer, where)
        set_weight_rules(self, kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint)
        self.kernel = None
        self.bias = None
        self.needs_input_grad = True

    def build(self, input_shape):
        add_kernel_and_bias(self, input_shape, self.kernel_initializer, self.kernel_regularizer,
                            self.kernel_constraint)
        self._fixed_axes = {-1: input_shape[-1]}

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def multiply_adds(self, input_shape) -> int | None:
        self.compute_output_shape(input_shape)
        positions = input_shape[1:-1]
        if None in positions:
            return None
        return dense_macs(math.prod(positions), input_shape[-1], self.units)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"Layer '{self.name}' (Dense) needs an input of rank >= 2 with a known last "
                f"axis; received shape {format_shape(input_shape)}."
            )
        return (*input_shape[:-1], self.units)

    def call(self, x, training=False):
        bias = self.bias.value if self.use_bias else None
        z, cache = dense_forward(x, self.kernel.value, bias)
        self._cache = cache if training else None
        return self.activate(z, training)

    def backward(self, grad_output):
        grad_z = self.activation_grad(grad_output)
        grad_x, self.kernel.grad, grad_bias = dense_backward(
            grad_z, self.require_cache(), need_input_grad=self.needs_input_grad
        )
        if self.use_bias:
            self.bias.grad = grad_bias
        return grad_x

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            # Keras's Dense writes activity_regularizer only when set (its base Layer does).
            **weight_rules_config(self, "kernel_regularizer", "bias_regularizer",
                                  "kernel_constraint", "bias_constraint"),
        }


class Flatten(Layer):
    """``(batch, *dims)`` -> ``(batch, prod(dims))``, in channels_last order."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format, self.where)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)

    def call(self, x, training=False):
        if self.data_format == "channels_first" and x.ndim > 2:
            x = np.moveaxis(x, 1, -1)
        self._cache = x.shape if training else None
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output):
        shape = self.require_cache()
        grad = grad_output.reshape(shape)
        if self.data_format == "channels_first" and len(shape) > 2:
            grad = np.moveaxis(grad, -1, 1)
        return grad

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshape one sample to ``target_shape`` (may hold one -1)."""

    built_at_init = True

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(target_shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and (d > 0 or d == -1) for d in target_shape
        ) or list(target_shape).count(-1) > 1:
            raise ValueError(
                f"{self.where}: `target_shape` must be a tuple of positive ints with at most "
                f"one -1; received: target_shape={target_shape!r}."
            )
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        if any(d is None for d in rest):
            return (input_shape[0], *(None if d == -1 else d for d in self.target_shape))
        size = math.prod(rest)
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 in self.target_shape and size % known) or (
            -1 not in self.target_shape and size != known
        ):
            raise ValueError(
                f"Layer '{self.name}' cannot reshape an input of shape {format_shape(input_shape)}"
                f" ({size} values per sample) to target_shape={self.target_shape}."
            )
        return (input_shape[0], *(size // known if d == -1 else d for d in self.target_shape))

    def call(self, x, training=False):
        self._cache = x.shape if training else None
        return x.reshape(x.shape[0], *self.target_shape)

    def backward(self, grad_output):
        return grad_output.reshape(self.require_cache())

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Activation(Layer):
    """Applies an activation function by name or callable."""

    built_at_init = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = resolve(activations.get, activation, self.where)

    def call(self, x, training=False):
        return self.activate(x, training)

    def backward(self, grad_output):
        return self.activation_grad(grad_output)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class ReLU(Layer):
    """``max(x, 0)`` with Keras's options: ``max_value``, ``negative_slope``, ``threshold``."""

    built_at_init = True

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise ValueError(
                f"{self.where}: `max_value` must be >= 0; received max_value={max_value}."
            )
        if negative_slope is None or negative_slope < 0:
            raise ValueError(
                f"{self.where}: `negative_slope` must be >= 0; received "
                f"negative_slope={negative_slope}."
            )
        if threshold is None or threshold < 0:
            raise ValueError(
                f"{self.where}: `threshold` must be a number >= 0 (as in Keras's ReLU layer); "
                f"received threshold={threshold}."
            )
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    def _options(self) -> dict:
        return {"negative_slope": self.negative_slope, "max_value": self.max_value,
                "threshold": self.threshold}

    def call(self, x, training=False):
        y = activation_ops.relu(x, **self._options())
        self._cache = (x, y) if training else None
        return y

    def backward(self, grad_output):
        x, y = self.require_cache()
        return activation_ops.relu_grad(x, y, grad_output, **self._options())

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class Dropout(Layer):
    """Training: zero each value with probability ``rate`` and scale the rest by 1/(1-rate)."""

    built_at_init = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(
                f"{self.where}: invalid value received for argument `rate`. Expected a float "
                f"value between 0 and 1. Received: rate={rate!r}."
            )
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._generator = None if seed is None else np.random.default_rng(seed)

    def call(self, x, training=False):
        if not training or self.rate == 0:
            self._cache = np.float32(1.0)
            return x
        shape = dropout_ops.resolve_noise_shape(x.shape, self.noise_shape)
        mask = dropout_ops.dropout_mask(self._generator or rng(), shape, self.rate)
        self._cache = mask
        return dropout_ops.dropout_forward(x, mask)

    def backward(self, grad_output):
        return dropout_ops.dropout_backward(grad_output, self.require_cache())

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros: ``padding`` int, (rows, cols) or ((top, bottom), (l, r))."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format, self.where)
        self.padding = _normalize_pad_pairs(padding, self.where)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"Layer '{self.name}' (ZeroPadding2D) needs a rank-4 input; received shape "
                f"{format_shape(input_shape)}."
            )
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        shape = list(input_shape)
        for axis, (before, after) in zip(axes, self.padding):
            if shape[axis] is not None:
                shape[axis] += before + after
        return tuple(shape)

    def pad_width(self) -> list[tuple[int, int]]:
        """``np.pad``'s widths for a batch: zero on the batch and channel axes."""
        spatial = [tuple(p) for p in self.padding]
        if self.data_format == "channels_last":
            return [(0, 0), *spatial, (0, 0)]
        return [(0, 0), (0, 0), *spatial]

    def call(self, x, training=False):
        y, cache = zero_pad_forward(x, self.pad_width())
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return zero_pad_backward(grad_output, self.require_cache())

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


def _normalize_pad_pairs(padding, where: str) -> tuple:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(
                f"{where}: `padding` must be an int, a tuple of 2 ints, or a tuple of 2 "
                f"tuples of 2 ints, all >= 0; received padding={padding!r}."
            )
        return int(value)

    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        return ((check(padding),) * 2,) * 2
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        pairs = []
        for item in padding:
            if isinstance(item, (tuple, list)) and len(item) == 2:
                pairs.append((check(item[0]), check(item[1])))
            else:
                pairs.append((check(item), check(item)))
        return tuple(pairs)
    check(None)


register(InputLayer, Kind(words="input", field="pointwise"))
register(Dense, Kind(words="dense", cost="dense", field="dense", trace="dense", onnx="dense",
                     torch="dense",
                     builds_from_shape=True, keras_only_keys={"quantization_config": None}))
register(Flatten, Kind(words="flatten", field="mix", trace="copy", onnx="flatten",
                       torch="flatten", builds_from_shape=True))
register(Reshape, Kind(words="reshape", field="mix", trace="copy", onnx="reshape",
                       torch="reshape"))
register(Activation, Kind(words="elementwise", field="pointwise", trace="elementwise",
                          onnx="activation", torch="activation"))
register(ReLU, Kind(words="relu", field="pointwise", trace="relu", onnx="relu",
                    torch="relu"))
register(Dropout, Kind(words="dropout", field="pointwise", trace="copy", onnx="dropout",
                       torch="dropout"))
register(ZeroPadding2D, Kind(words="zero_padding", field="shift", trace="copy",
                             onnx="zero_padding", torch="zero_padding",
                             builds_from_shape=True))
