"""Layers that move values without weights: upsampling, cropping, zero padding, permuting.

``UpSampling1D/2D/3D``, ``Cropping1D/2D/3D``, ``ZeroPadding1D/3D`` (``ZeroPadding2D`` lives in
``core``), ``Permute`` and ``Identity``, with Keras 3's arguments, defaults and configs. The maths
is in :mod:`convlens.ops.upsampling` and :mod:`convlens.ops.layout`; a layer only turns its
arguments into per-axis pairs or factors for the input's ``data_format``.

>>> import numpy as np
>>> UpSampling2D(2)(np.ones((1, 2, 3, 4))).shape
(1, 4, 6, 4)
>>> Cropping1D((1, 2))(np.ones((1, 6, 3))).shape
(1, 3, 3)
"""

from __future__ import annotations

import numpy as np

from convlens.kinds import Kind, register
from convlens.layers.base import Layer
from convlens.ops import layout, upsampling
from convlens.shapes import format_shape, normalize_data_format, normalize_tuple

__all__ = [
    "UpSampling1D", "UpSampling2D", "UpSampling3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "ZeroPadding1D", "ZeroPadding3D", "Permute", "Identity", "normalize_pairs",
    "check_spatial_rank",
]  # fmt: skip


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def normalize_pairs(value, rank: int, name: str, where: str) -> tuple[tuple[int, int], ...]:
    """Keras's padding/cropping forms as one ``(before, after)`` pair per spatial axis.

    An int (the same on both sides of every axis), ``rank`` ints (symmetric per axis) or
    ``rank`` pairs; for one axis, a pair ``(before, after)``.
    """
    if _is_count(value):
        return ((int(value),) * 2,) * rank
    pairs = None
    if isinstance(value, (tuple, list)):
        if rank == 1 and len(value) == 2 and all(_is_count(v) for v in value):
            pairs = ((int(value[0]), int(value[1])),)
        elif len(value) == rank:
            pairs = tuple(
                (int(v), int(v)) if _is_count(v)
                else (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) and len(v) == 2
                and all(_is_count(w) for w in v) else None
                for v in value
            )
    if pairs is None or None in pairs:
        forms = "an int or a tuple of 2 ints" if rank == 1 else (
            f"an int, a tuple of {rank} ints, or a tuple of {rank} tuples of 2 ints")
        raise ValueError(
            f"{where}: `{name}` must be {forms}, all >= 0; received {name}={value!r}."
        )
    return pairs


def check_spatial_rank(layer: Layer, rank: int, input_shape) -> None:
    """A layer over ``rank`` spatial axes needs a ``(batch, *spatial, channels)`` input."""
    if len(input_shape) != rank + 2:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) needs a rank-{rank + 2} input "
            f"(batch, {rank} spatial axes, channels); received shape "
            f"{format_shape(input_shape)}."
        )


def _spatial_axes(rank: int, data_format: str) -> tuple[int, ...]:
    return tuple(range(1, rank + 1)) if data_format == "channels_last" else tuple(
        range(2, rank + 2))


class _SpatialLayer(Layer):
    """Shared by the layers here: the input's rank and which axes are spatial."""

    rank = 2

    def _set_data_format(self, data_format):
        self.data_format = normalize_data_format(data_format, self.where)
        self.spatial_axes = _spatial_axes(self.rank, self.data_format)

    def _check_rank(self, input_shape):
        check_spatial_rank(self, self.rank, input_shape)

    def _all_axes(self, pairs):
        """Spatial pairs -> one pair per input axis, (0, 0) for batch and channels."""
        full = [(0, 0)] * (self.rank + 2)
        for axis, pair in zip(self.spatial_axes, pairs):
            full[axis] = pair
        return full


# --------------------------------------------------------------------------------------------
# upsampling
# --------------------------------------------------------------------------------------------


class _UpSampling(_SpatialLayer):
    interpolation = "nearest"

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        shape = list(input_shape)
        for axis, factor in zip(self.spatial_axes, self.size):
            shape[axis] = None if shape[axis] is None else shape[axis] * factor
        return tuple(shape)

    def call(self, x, training=False):
        y, cache = upsampling.upsample_forward(x, self.size, self.spatial_axes,
                                               self.interpolation)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return upsampling.upsample_backward(grad_output, self.require_cache())


class UpSampling1D(_UpSampling):
    """Repeat each step ``size`` times: ``(N, steps, C)`` -> ``(N, steps * size, C)``."""

    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 1, "size", where=self.where)
        self._set_data_format(None)

    def get_config(self):
        return {**super().get_config(), "size": self.size[0]}


class UpSampling2D(_UpSampling):
    """Grow rows and columns by ``size``: ``"nearest"`` repeats, ``"bilinear"`` interpolates.

    Input ``(N, H, W, C)`` (channels_last) -> ``(N, H * size[0], W * size[1], C)``.
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 2, "size", where=self.where)
        self._set_data_format(data_format)
        if interpolation not in upsampling.INTERPOLATIONS:
            raise ValueError(
                f"{self.where}: `interpolation` must be one of "
                f"{', '.join(map(repr, upsampling.INTERPOLATIONS))} in convlens; received "
                f"interpolation={interpolation!r}."
            )
        self.interpolation = interpolation

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": self.data_format,
                "interpolation": self.interpolation}


class UpSampling3D(_UpSampling):
    """Repeat along depth, rows and columns: ``(N, D, H, W, C)`` -> ``(N, D*s0, H*s1, W*s2, C)``."""

    rank = 3

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 3, "size", where=self.where)
        self._set_data_format(data_format)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": self.data_format}


# --------------------------------------------------------------------------------------------
# cropping and zero padding
# --------------------------------------------------------------------------------------------


class _Cropping(_SpatialLayer):
    def crop_width(self) -> list[tuple[int, int]]:
        """What is cut (before, after) on each axis of a batch: zero on batch and channels."""
        return self._all_axes(self.cropping)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        shape = list(input_shape)
        for axis, (before, after) in zip(self.spatial_axes, self.cropping):
            if shape[axis] is None:
                continue
            if before + after >= shape[axis]:
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) can't crop "
                    f"{before} + {after} from an axis of size {shape[axis]} (input shape "
                    f"{format_shape(input_shape)}); `cropping` must leave at least one value."
                )
            shape[axis] -= before + after
        return tuple(shape)

    def call(self, x, training=False):
        y, cache = layout.crop_forward(x, self.crop_width())
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return layout.crop_backward(grad_output, self.require_cache())

    def get_config(self):
        config = {**super().get_config(), "cropping": self.cropping}
        if self.rank > 1:
            config["data_format"] = self.data_format
        return config


class Cropping1D(_Cropping):
    """Remove steps at the start and end: ``(N, steps, C)`` -> ``(N, steps - a - b, C)``."""

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self._set_data_format(None)
        self.cropping = normalize_pairs(cropping, 1, "cropping", self.where)

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping[0]}


class Cropping2D(_Cropping):
    """Remove rows and columns at the edges: ``((top, bottom), (left, right))``."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._set_data_format(data_format)
        self.cropping = normalize_pairs(cropping, 2, "cropping", self.where)


class Cropping3D(_Cropping):
    """Remove planes at the edges of depth, rows and columns: three (before, after) pairs."""

    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._set_data_format(data_format)
        self.cropping = normalize_pairs(cropping, 3, "cropping", self.where)


class _ZeroPadding(_SpatialLayer):
    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        shape = list(input_shape)
        for axis, (before, after) in zip(self.spatial_axes, self.padding):
            if shape[axis] is not None:
                shape[axis] += before + after
        return tuple(shape)

    def pad_width(self) -> list[tuple[int, int]]:
        """``np.pad``'s widths for a batch: zero on the batch and channel axes."""
        return self._all_axes(self.padding)

    def call(self, x, training=False):
        y, cache = layout.zero_pad_forward(x, self.pad_width())
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return layout.zero_pad_backward(grad_output, self.require_cache())


class ZeroPadding1D(_ZeroPadding):
    """Zeros at the start and end of the steps: ``padding`` int or ``(before, after)``."""

    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._set_data_format(data_format)
        self.padding = normalize_pairs(padding, 1, "padding", self.where)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding[0],
                "data_format": self.data_format}


class ZeroPadding3D(_ZeroPadding):
    """Zeros around depth, rows and columns: an int, 3 ints, or 3 (before, after) pairs."""

    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._set_data_format(data_format)
        self.padding = normalize_pairs(padding, 3, "padding", self.where)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding,
                "data_format": self.data_format}


# --------------------------------------------------------------------------------------------
# permute, identity
# --------------------------------------------------------------------------------------------


class Permute(Layer):
    """Reorder the axes of each sample: ``Permute((2, 1))`` turns ``(N, a, b)`` into ``(N, b, a)``.

    ``dims`` numbers the axes of one sample from 1 (the batch axis stays first).
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if sorted(dims) != list(range(1, len(dims) + 1)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims
        ):
            raise ValueError(
                f"{self.where}: `dims` must be a permutation of 1..{len(dims)} (the axes of one "
                f"sample, counted from 1); received dims={dims!r}."
            )
        self.dims = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(
                f"Layer '{self.name}' (Permute) with dims={self.dims} needs a rank-"
                f"{len(self.dims) + 1} input; received shape {format_shape(input_shape)}."
            )
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def call(self, x, training=False):
        y, cache = layout.permute_forward(x, self.dims)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return layout.permute_backward(grad_output, self.require_cache())

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


class Identity(Layer):
    """Returns its input unchanged (a placeholder in a graph)."""

    built_at_init = True

    def backward(self, grad_output):
        return grad_output


# Copies: a traced value is read from the one input position it was copied from.
for _cls in (UpSampling1D, UpSampling3D):  # always nearest
    register(_cls, Kind(words="upsampling", field="upsample", trace="copy", onnx="upsampling",
                        builds_from_shape=True))
# Its trace copies a 'nearest' value, or weighs the 'bilinear' neighbours.
register(UpSampling2D, Kind(words="upsampling", field="upsample", trace="upsampling",
                            onnx="upsampling", builds_from_shape=True))
for _cls in (Cropping1D, Cropping2D, Cropping3D):
    register(_cls, Kind(words="cropping", field="crop", trace="copy", onnx="crop",
                        builds_from_shape=True))
for _cls in (ZeroPadding1D, ZeroPadding3D):
    register(_cls, Kind(words="zero_padding", field="shift", trace="copy", onnx="zero_padding",
                        builds_from_shape=True))
register(Permute, Kind(words="permute", field="mix", trace="copy", onnx="permute",
                       builds_from_shape=True))
register(Identity, Kind(words="identity", field="pointwise", trace="copy", onnx="identity"))
