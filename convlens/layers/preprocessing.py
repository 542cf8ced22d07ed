"""Input preprocessing layers: ``Rescaling`` and ``Normalization`` (with ``adapt``).

Both are fixed affine maps (nothing trains): ``Rescaling`` multiplies and shifts,
``Normalization`` standardises with a mean and variance that are given, or measured from
data by ``adapt``. The maths is in :mod:`convlens.ops.normalization`.

>>> import numpy as np
>>> Rescaling(1 / 255)(np.array([[0.0, 255.0]]))
array([[0., 1.]], dtype=float32)
>>> layer = Normalization()
>>> layer.adapt(np.array([[1.0], [3.0]]))
>>> layer(np.array([[5.0]]))
array([[3.]], dtype=float32)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from convlens.kinds import Kind, register
from convlens.layers.base import Layer, as_float32
from convlens.ops import normalization as ops
from convlens.shapes import format_shape

__all__ = ["Rescaling", "Normalization"]


def _numbers(value, name: str, where: str):
    """A number, or a list of numbers (per channel), as Keras accepts for scale and offset."""
    array = np.asarray(value, dtype=object)
    if array.ndim > 1 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in array.ravel()
    ):
        raise ValueError(
            f"{where}: `{name}` must be a number or a list of numbers; received {name}={value!r}."
        )
    return value


def per_value(input_shape) -> int | None:
    """One multiply-add per value of one sample (a scale and a shift); None if a size is unknown."""
    rest = tuple(input_shape[1:])
    return None if None in rest else math.prod(rest)


class Rescaling(Layer):
    """``y = x * scale + offset``, e.g. ``Rescaling(1 / 255)`` maps pixels to [0, 1]."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _numbers(scale, "scale", self.where)
        self.offset = _numbers(offset, "offset", self.where)

    def multiply_adds(self, input_shape) -> int | None:
        return per_value(input_shape)

    def call(self, x, training=False):
        y, cache = ops.rescale_forward(x, self.scale, self.offset)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return ops.rescale_backward(grad_output, self.require_cache())

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Normalization(Layer):
    """``(x - mean) / sqrt(variance)`` per feature on ``axis`` (``invert=True``: the inverse).

    The statistics are either given (``mean``, ``variance``) or measured by ``adapt(data)``,
    which stores them as non-trainable weights ``mean``, ``variance`` and ``count`` as Keras
    does. ``axis`` names the axes that keep their own statistics (default: the last);
    ``axis=None`` uses one mean and variance for everything.
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            axis = (int(axis),)
        elif isinstance(axis, (list, tuple)) and all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis
        ):
            axis = tuple(int(a) for a in axis)
        else:
            raise TypeError(
                f"{self.where}: `axis` must be an int, a tuple of ints or None; received "
                f"axis={axis!r}."
            )
        if (mean is None) != (variance is None):
            raise ValueError(
                f"{self.where}: pass both `mean` and `variance`, or neither (and call adapt); "
                f"received mean={mean!r}, variance={variance!r}."
            )
        self.axis = axis
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        self.adapt_mean = self.adapt_variance = self.count = None

    def _axes(self, input_shape):
        """``(keep, reduce, broadcast shape)`` for an input of ``input_shape``."""
        rank = len(input_shape)
        if any(not -rank <= a < rank for a in self.axis):
            raise ValueError(
                f"{self.where}: axis={self.axis} is out of range for an input of shape "
                f"{format_shape(input_shape)}."
            )
        keep = tuple(sorted(a % rank for a in self.axis))
        unknown = [a for a in keep if input_shape[a] is None]
        if unknown:
            raise ValueError(
                f"{self.where}: every kept axis needs a known size; axis {unknown[0]} of the "
                f"input shape {format_shape(input_shape)} is unknown."
            )
        reduce = tuple(a for a in range(rank) if a not in keep)
        broadcast = tuple(input_shape[a] if a in keep else 1 for a in range(rank))
        return keep, reduce, broadcast

    def weight_shapes(self, input_shape):
        if self.input_mean is not None:
            return {}
        keep, _, _ = self._axes(input_shape)
        shape = tuple(input_shape[a] for a in keep)
        return {"mean": shape, "variance": shape, "count": ()}

    def build(self, input_shape):
        shapes = self.weight_shapes(input_shape)
        keep, _, _ = self._axes(input_shape)
        if shapes:
            self.adapt_mean = self.add_weight("mean", shapes["mean"], "zeros", trainable=False)
            self.adapt_variance = self.add_weight("variance", shapes["variance"], "ones",
                                                  trainable=False)
            self.count = self.add_weight("count", (), "zeros", trainable=False)
        self._fixed_axes = {a: input_shape[a] for a in keep}

    def statistics(self, input_shape):
        """Mean and variance in the broadcast shape of an input of ``input_shape``."""
        keep, _, broadcast = self._axes(input_shape)
        if self.input_mean is None:
            return (self.adapt_mean.value.reshape(broadcast),
                    self.adapt_variance.value.reshape(broadcast))
        mean, variance = (np.asarray(v, np.float32) for v in (self.input_mean,
                                                               self.input_variance))
        if mean.ndim == 0:
            return np.broadcast_to(mean, broadcast), np.broadcast_to(variance, broadcast)
        # Keras aligns given statistics with the kept axes from the right.
        expanded = [1] * len(input_shape)
        for i in range(1, mean.ndim + 1):
            expanded[keep[-i]] = mean.shape[-i]
        return mean.reshape(expanded), variance.reshape(expanded)

    def multiply_adds(self, input_shape) -> int | None:
        return per_value(input_shape)

    def call(self, x, training=False):
        mean, variance = self.statistics(x.shape)
        y, cache = ops.standardize_forward(x, mean, variance, self.invert)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return ops.standardize_backward(grad_output, self.require_cache())

    def adapt(self, data) -> None:
        """Measure the mean and variance of ``data`` (an array, or an iterable of batches)."""
        if self.input_mean is not None:
            raise ValueError(
                f"{self.where}: adapt() measures the statistics, but this layer was given "
                "`mean` and `variance`; create it without them to adapt."
            )
        batches = [data] if isinstance(data, np.ndarray) or np.isscalar(data) else data
        total_mean = total_variance = None
        total_count = 0
        for batch in batches:
            batch = as_float32(batch, f"{self.where} adapt()").astype(np.float64)
            if not self.built:
                self.build_from_shape((None, *batch.shape[1:]))
            _, reduce, _ = self._axes(batch.shape)
            keep = [a for a in range(batch.ndim) if a not in reduce]
            expected = [self.input_shape[a] for a in keep]
            if [batch.shape[a] for a in keep] != expected:
                raise ValueError(
                    f"{self.where}: adapt() received a batch of shape {batch.shape}; the kept "
                    f"axes {tuple(keep)} must have sizes {tuple(expected)}."
                )
            mean, variance = ops.moments(batch, reduce) if reduce else (batch, 0 * batch)
            count = math.prod(batch.shape[a] for a in reduce)
            if total_mean is None:
                total_mean, total_variance, total_count = mean, variance, count
                continue
            # Merge two groups' statistics (the lack-of-fit sum of squares, as Keras)
            total_count += count
            weight = count / total_count
            merged = total_mean * (1 - weight) + mean * weight
            total_variance = ((total_variance + (total_mean - merged) ** 2) * (1 - weight)
                              + (variance + (mean - merged) ** 2) * weight)
            total_mean = merged
        if total_mean is None:
            raise ValueError(f"{self.where}: adapt() received no data.")
        self.adapt_mean.assign(np.asarray(total_mean, np.float32))
        self.adapt_variance.assign(np.asarray(total_variance, np.float32))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "invert": self.invert,
                "mean": _listed(self.input_mean), "variance": _listed(self.input_variance)}


def _listed(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


# One fixed multiply-add per value.
register(Rescaling, Kind(words="rescaling", cost="per_value", field="pointwise",
                         trace="rescaling", onnx="rescaling", builds_from_shape=True))
register(Normalization, Kind(words="normalization", cost="per_value", field="pointwise",
                             trace="normalization", onnx="normalization", builds_from_shape=True))
