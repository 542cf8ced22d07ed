"""Output-size arithmetic: the one place where a shape is derived.

Every other part of convlens (layers, the summary, explanations, the CLI) calls
these functions; nobody re-derives a formula. The formulas are those of
Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
(arXiv:1603.07285), with Keras's conventions:

* ``valid``: ``out = floor((in - dilation*(kernel-1) - 1) / stride) + 1``
* ``same``:  ``out = ceil(in / stride)``; the total padding is split with the
  odd pixel at the end (bottom/right), as TensorFlow and Keras do.
* ``causal`` (1D only): ``dilation*(kernel-1)`` zeros on the left, then ``valid``.

>>> conv_output_length(26, 3, "valid", 1)
24
>>> conv_output_length(28, 3, "same", 2)
14
>>> padding_amounts(28, 3, "same", 2)
(0, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PADDINGS = ("valid", "same")
PADDINGS_1D = ("valid", "same", "causal")
DATA_FORMATS = ("channels_last", "channels_first")


def _prefix(where: str | None) -> str:
    """How a message names the layer it is about: ``"Conv2D 'conv2d': "``."""
    return f"{where}: " if where else ""


def normalize_tuple(
    value, n: int, name: str, allow_zero: bool = False, where: str | None = None
) -> tuple[int, ...]:
    """Turn an int or a sequence of ``n`` ints into a tuple of ``n`` positive ints.

    ``where`` names the layer in the error message.

    >>> normalize_tuple(3, 2, "kernel_size")
    (3, 3)
    """
    prefix = _prefix(where)
    if isinstance(value, bool) or value is None:
        raise TypeError(
            f"{prefix}`{name}` must be an int or a tuple of {n} ints; received: {value!r}."
        )
    if isinstance(value, int) or _is_integer(value):
        values = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(
                f"{prefix}`{name}` must be an int or a tuple of {n} ints; received {value!r} "
                f"with {len(value)} element(s)."
            )
        if not all(_is_integer(v) and not isinstance(v, bool) for v in value):
            raise TypeError(
                f"{prefix}`{name}` must contain only integers; received: {value!r}. "
                "Pass whole numbers such as 3 or (3, 3)."
            )
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"{prefix}`{name}` must be an int or a tuple of {n} ints; received: {value!r} "
            f"of type {type(value).__name__}."
        )
    lowest = 0 if allow_zero else 1
    if any(v < lowest for v in values):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{prefix}`{name}` values must be {bound}; received: {value!r}.")
    return values


def _is_integer(value) -> bool:
    if isinstance(value, int):
        return True
    try:
        import numpy as np

        return isinstance(value, np.integer)
    except ImportError:  # pragma: no cover
        return False


def normalize_padding(value, allow_causal: bool = False, where: str | None = None) -> str:
    """Lower-case and check a padding name.

    >>> normalize_padding("SAME")
    'same'
    """
    allowed = PADDINGS_1D if allow_causal else PADDINGS
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(
            f"{_prefix(where)}`padding` must be one of {', '.join(repr(a) for a in allowed)}; "
            f"received: padding={value!r}."
        )
    return value.lower()


def normalize_data_format(value, where: str | None = None) -> str:
    if value is None:
        return "channels_last"
    if not isinstance(value, str) or value.lower() not in DATA_FORMATS:
        raise ValueError(
            f"{_prefix(where)}`data_format` must be 'channels_last' or 'channels_first'; "
            f"received: data_format={value!r}."
        )
    return value.lower()


def effective_kernel_size(kernel: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: ``(kernel - 1) * dilation + 1``."""
    return (kernel - 1) * dilation + 1


def conv_output_length(
    length: int | None, kernel: int, padding: str, stride: int, dilation: int = 1
) -> int | None:
    """Output length of a convolution or pooling along one axis (``None`` stays ``None``)."""
    if length is None:
        return None
    span = effective_kernel_size(kernel, dilation)
    if padding == "same":
        return -(-length // stride)
    if padding == "causal":
        length = length + span - 1
    return (length - span) // stride + 1


def padding_amounts(
    length: int, kernel: int, padding: str, stride: int, dilation: int = 1
) -> tuple[int, int]:
    """Zeros added (before, after) along one axis for ``padding``."""
    span = effective_kernel_size(kernel, dilation)
    if padding == "valid":
        return (0, 0)
    if padding == "causal":
        return (span - 1, 0)
    out = -(-length // stride)
    total = max((out - 1) * stride + span - length, 0)
    return (total // 2, total - total // 2)


def conv_output_formula(
    length: int, kernel: int, padding: str, stride: int, dilation: int = 1
) -> str:
    """The size arithmetic written out with these numbers, for messages and explanations.

    >>> conv_output_formula(26, 3, "valid", 1)
    '26 - 3 + 1 = 24'
    >>> conv_output_formula(26, 3, "valid", 2, dilation=2)
    'floor((26 + 2*0 - 2*(3-1) - 1) / 2) + 1 = 11'
    >>> conv_output_formula(26, 3, "same", 2)
    'ceil(26 / 2) = 13'
    >>> conv_output_formula(10, 3, "causal", 1)
    'floor((10 + 2 + 0 - 1*(3-1) - 1) / 1) + 1 = 10'
    """
    out = conv_output_length(length, kernel, padding, stride, dilation)
    if padding == "same":
        return f"ceil({length} / {stride}) = {out}"
    before, after = padding_amounts(length, kernel, padding, stride, dilation)
    if stride == 1 and dilation == 1 and before == after == 0:
        return f"{length} - {kernel} + 1 = {out}"
    # The textbook form n + 2p - d(k-1) - 1; causal padding is one-sided, so it is spelt out.
    pad = f"2*{before}" if before == after else f"{before} + {after}"
    return f"floor(({length} + {pad} - {dilation}*({kernel}-1) - 1) / {stride}) + 1 = {out}"


def conv_output_shape(
    spatial: Sequence[int | None],
    kernel_size: Sequence[int],
    padding: str,
    strides: Sequence[int],
    dilation_rate: Sequence[int],
) -> tuple[int | None, ...]:
    return tuple(
        conv_output_length(n, k, padding, s, d)
        for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate)
    )


def check_conv_fits(
    layer_name: str,
    spatial: Sequence[int | None],
    kernel_size: Sequence[int],
    padding: str,
    strides: Sequence[int],
    dilation_rate: Sequence[int],
    what: str = "kernel",
) -> None:
    """Raise a ValueError with the formula when an output size would be <= 0."""
    for axis, (n, k, s, d) in enumerate(zip(spatial, kernel_size, strides, dilation_rate)):
        if n is None:
            continue
        out = conv_output_length(n, k, padding, s, d)
        if out <= 0:
            span = effective_kernel_size(k, d)
            raise ValueError(
                f"Layer '{layer_name}': the {what} is larger than its input along spatial "
                f"axis {axis}: output size = {conv_output_formula(n, k, padding, s, d)}, "
                f"which must be >= 1. The input size {n} must be at least the {what} span "
                f"{span}; use a smaller {what}, padding='same', or a larger input."
            )


def deconv_output_length(
    length: int | None,
    kernel: int,
    padding: str,
    stride: int,
    dilation: int = 1,
    output_padding: int | None = None,
) -> int | None:
    """Output length of a transposed convolution (Keras semantics).

    >>> deconv_output_length(14, 3, "same", 2)
    28
    >>> deconv_output_length(13, 3, "valid", 2)
    27
    """
    if length is None:
        return None
    span = effective_kernel_size(kernel, dilation)
    if output_padding is None:
        if padding == "valid":
            return length * stride + max(span - stride, 0)
        return length * stride
    pad = span // 2 if padding == "same" else 0
    return (length - 1) * stride + span - 2 * pad + output_padding


def transposed_full_length(length: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """Length of a transposed convolution's output before any crop: ``(in-1)*stride + span``.

    >>> transposed_full_length(14, 3, 2)
    29
    """
    return (length - 1) * stride + effective_kernel_size(kernel, dilation)


def deconv_padding_amounts(
    length: int,
    kernel: int,
    padding: str,
    stride: int,
    dilation: int = 1,
    output_padding: int | None = None,
) -> tuple[int, int]:
    """Cropping (before, after) applied to the full transposed-convolution output.

    The full output of a transposed convolution has ``(length-1)*stride + span``
    entries; Keras's output keeps ``deconv_output_length`` of them. For ``same`` the
    crop is TensorFlow's: half of ``full - out`` before (rounded down), the rest after,
    with or without ``output_padding`` (a negative "after" appends zeros).

    >>> deconv_padding_amounts(2, 3, "same", 2, output_padding=1)
    (0, 1)
    """
    full = transposed_full_length(length, kernel, stride, dilation)
    out = deconv_output_length(length, kernel, padding, stride, dilation, output_padding)
    before = 0 if padding == "valid" else max(full - out, 0) // 2
    return before, full - out - before


def deconv_output_formula(
    length: int,
    kernel: int,
    padding: str,
    stride: int,
    dilation: int = 1,
    output_padding: int | None = None,
) -> str:
    """The transposed-convolution size arithmetic written out with these numbers.

    >>> deconv_output_formula(14, 3, "same", 2)
    '14*2 = 28'
    >>> deconv_output_formula(13, 3, "valid", 2)
    '13*2 + max(3 - 2, 0) = 27'
    >>> deconv_output_formula(14, 3, "same", 2, output_padding=1)
    '(14 - 1)*2 + 3 - 2*1 + 1 = 28'
    """
    out = deconv_output_length(length, kernel, padding, stride, dilation, output_padding)
    span = effective_kernel_size(kernel, dilation)
    if output_padding is None:
        if padding == "valid":
            return f"{length}*{stride} + max({span} - {stride}, 0) = {out}"
        return f"{length}*{stride} = {out}"
    pad = span // 2 if padding == "same" else 0
    return f"({length} - 1)*{stride} + {span} - 2*{pad} + {output_padding} = {out}"


# ----- multiply-adds of one sample (the counting rules of convlens.explain.cost) -------
def conv_macs(
    out_spatial: Sequence[int], kernel_size: Sequence[int], in_channels_per_group: int,
    filters: int,
) -> int:
    """Multiply-adds of a (grouped) convolution for one sample."""
    return math.prod(out_spatial) * filters * math.prod(kernel_size) * in_channels_per_group


def depthwise_macs(
    out_spatial: Sequence[int], kernel_size: Sequence[int], in_channels: int, multiplier: int
) -> int:
    """Multiply-adds of a depthwise convolution: one 2D filter per (channel, multiplier)."""
    return math.prod(out_spatial) * in_channels * multiplier * math.prod(kernel_size)


def transpose_macs(
    in_spatial: Sequence[int], kernel_size: Sequence[int], in_channels: int, filters: int
) -> int:
    """Multiply-adds of a transposed convolution: each input value scatters a kernel block."""
    return math.prod(in_spatial) * math.prod(kernel_size) * in_channels * filters


def dense_macs(positions: int, in_features: int, units: int) -> int:
    """Multiply-adds of ``x @ kernel`` for ``positions`` vectors of ``in_features`` values."""
    return positions * in_features * units


def pool_output_length(length: int | None, pool: int, padding: str, stride: int) -> int | None:
    return conv_output_length(length, pool, padding, stride, 1)


def receptive_field_step(
    rf: int, jump: int, start: float, kernel: int, stride: int, dilation: int, pad_before: int
) -> tuple[int, int, float]:
    """One layer of the receptive-field recurrence (Araujo et al., Distill 2019).

    ``rf``: field size in input pixels; ``jump``: input pixels between adjacent
    outputs; ``start``: input coordinate of the centre of output 0.
    """
    span = effective_kernel_size(kernel, dilation)
    new_rf = rf + (span - 1) * jump
    new_start = start + ((span - 1) / 2 - pad_before) * jump
    return new_rf, jump * stride, new_start


@dataclass(frozen=True)
class Window:
    """The frozen window record of one sliding-window layer, computed once at build.

    Convolutions, depthwise/separable/transposed convolutions and pooling all read their
    input through a window of ``kernel`` taps moved by ``strides`` with ``dilation``.
    Ops, explanations, the receptive field, traces and the ONNX exporter read this record;
    nobody recomputes the padding.

    Attributes:
        kernel, strides, dilation: one int per spatial axis.
        padding_mode: ``'valid'``, ``'same'`` or ``'causal'``.
        padding: per spatial axis, the zeros ``(before, after)`` added to the input; for a
            transposed convolution, the ``(before, after)`` cropped from its full output (a
            negative ``after`` appends zeros). ``None`` on an axis whose size is not fixed
            when ``'same'`` needs it (``pads_for`` then computes it for each input).
        spatial_axes, channel_axis: where they are in the layer's input (batch axis 0).
        input_spatial, output_spatial: the spatial sizes (``None`` when not fixed).
        transposed: whether this is a transposed convolution's window.
        output_padding: the transposed convolution's ``output_padding``, or None.

    >>> w = sliding_window((None, 28, 28, 1), (3, 3), (2, 2), (1, 1), "same")
    >>> w.padding, w.output_spatial, w.spatial_axes, w.channel_axis
    (((0, 1), (0, 1)), (14, 14), (1, 2), 3)
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding_mode: str
    padding: tuple[tuple[int, int] | None, ...]
    spatial_axes: tuple[int, ...]
    channel_axis: int
    input_spatial: tuple[int | None, ...]
    output_spatial: tuple[int | None, ...]
    transposed: bool = False
    output_padding: tuple[int, ...] | None = None

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def channels_last(self) -> bool:
        return self.channel_axis == self.rank + 1

    @property
    def span(self) -> tuple[int, ...]:
        """Input pixels one window covers per axis: ``dilation*(kernel-1) + 1``."""
        return tuple(effective_kernel_size(k, d) for k, d in zip(self.kernel, self.dilation))

    def pads_for(self, spatial: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """The padding (or crop) pairs for an input of ``spatial`` sizes.

        The record's own pairs when the sizes are the built ones; a model built for variable
        sizes (``None``) gets the pairs of each input it meets.
        """
        spatial = tuple(spatial)
        if spatial == self.input_spatial:
            return self.padding
        return _window_padding(spatial, self.kernel, self.strides, self.dilation,
                               self.padding_mode, self.transposed, self.output_padding)


def _window_padding(spatial, kernel, strides, dilation, padding, transposed, output_padding):
    pairs = []
    for axis, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilation)):
        if transposed:
            extra = None if output_padding is None else output_padding[axis]
            # The crop of a transposed convolution does not depend on the input length.
            pairs.append(deconv_padding_amounts(n or 1, k, padding, s, d, extra))
        elif n is None and padding == "same":
            pairs.append(None)
        else:
            pairs.append(padding_amounts(n or 0, k, padding, s, d))
    return tuple(pairs)


def sliding_window(
    input_shape: Sequence[int | None],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str,
    data_format: str = "channels_last",
    transposed: bool = False,
    output_padding: Sequence[int] | None = None,
) -> Window:
    """The :class:`Window` of a layer with these arguments for ``input_shape`` (batch first)."""
    rank = len(kernel)
    if data_format == "channels_last":
        spatial_axes, channel_axis = tuple(range(1, rank + 1)), rank + 1
    else:
        spatial_axes, channel_axis = tuple(range(2, rank + 2)), 1
    spatial = tuple(input_shape[a] for a in spatial_axes)
    kernel, strides, dilation = tuple(kernel), tuple(strides), tuple(dilation)
    output_padding = None if output_padding is None else tuple(output_padding)
    if transposed:
        out = tuple(
            deconv_output_length(n, k, padding, s, d,
                                 None if output_padding is None else output_padding[axis])
            for axis, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilation))
        )
    else:
        out = conv_output_shape(spatial, kernel, padding, strides, dilation)
    pairs = _window_padding(spatial, kernel, strides, dilation, padding, transposed,
                            output_padding)
    return Window(kernel, strides, dilation, padding, pairs, spatial_axes, channel_axis,
                  spatial, out, transposed, output_padding)


def format_shape(shape: Sequence[int | None] | None) -> str:
    """Keras's spelling of a shape: ``(None, 26, 26, 32)``."""
    if shape is None:
        return "?"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
