"""The compiled path of :mod:`convlens.ops.conv`: depthwise convolutions in 1-d and 2-d.

That is ``groups == C_in > 1``, any channel multiplier, stride, dilation and padding. (One
input channel has its own forward loops, in :mod:`~convlens.ops.conv_single_channel`; its
gradients stay on the GEMM, which measured faster than these loops there.) The loops are
:mod:`convlens.ops.compiled`'s; this module lays the arrays out for them, splits the batch
across the worker threads and sums the kernel gradient's parts. The input is not padded: the
loops skip the taps that fall in the border. :mod:`convlens.ops.conv` calls :func:`applies`
and otherwise takes the NumPy paths.
"""

from __future__ import annotations

import math

import numpy as np

from convlens.ops import compiled
from convlens.ops.workers import batch_parts, run_parts


def applies(geo) -> bool:
    """True when the compiled loops are on and ``geo`` is a 1-d or 2-d depthwise convolution."""
    return geo.cg == 1 and geo.groups > 1 and len(geo.k) <= 2 and compiled.available()


def _params(geo, padding) -> tuple[int, ...]:
    """The loops' ``(sh, sw, dh, dw, ph, pw)``: strides, dilations, padding before."""
    before = [a for a, _ in padding]
    return (*compiled.as_plane(geo.strides, 1), *compiled.as_plane(geo.dilation, 1),
            *compiled.as_plane(before, 0))


def _parts(geo) -> list[slice]:
    return batch_parts(geo.batch, geo.batch * math.prod(geo.out) * geo.taps * geo.c_out)


def _plain_kernel(kernel: np.ndarray, geo) -> np.ndarray:
    """Keras kernel ``(*k, 1, C_out)`` as ``(kh, kw, C_out)``."""
    return kernel.reshape(*compiled.as_plane(geo.k, 1), geo.c_out)


def forward(x, kernel, bias, geo, padding):
    """``y`` ``(N, *out, C_out)`` of the unpadded, contiguous ``x``."""
    params = _params(geo, padding)
    loops = compiled.kernels()
    w = _plain_kernel(kernel, geo)
    b = np.zeros(geo.c_out, x.dtype) if bias is None else np.ascontiguousarray(bias)
    y = np.empty(geo.out_shape, x.dtype)
    x_rows, y_rows = compiled.as_image_rows(x), compiled.as_image_rows(y)

    def part(samples: slice) -> None:
        loops.forward(x_rows, w, b, y_rows, geo.groups, samples.start, samples.stop, *params)

    run_parts(part, _parts(geo))
    return y


def backward(x, grad_y, kernel, geo, padding, need_input_grad):
    """``(grad_x or None, grad_kernel, grad_bias)`` from one pass over ``grad_y``: the unpadded
    input's gradient, the kernel's shaped like the Keras kernel ``(*k, 1, C_out)``, and the
    bias's."""
    params = _params(geo, padding)
    loops = compiled.kernels()
    w = _plain_kernel(kernel, geo)
    grad_x = np.empty(x.shape if need_input_grad else (0, *x.shape[1:]), grad_y.dtype)
    x_rows, g_rows, gx_rows = (compiled.as_image_rows(a) for a in (x, grad_y, grad_x))

    # Parts own whole samples, so no two threads add into the same input value; each part
    # sums its own kernel gradient.
    def part(samples: slice) -> tuple[np.ndarray, np.ndarray]:
        total, bias_total = np.zeros(w.shape, np.float64), np.zeros(geo.c_out, np.float64)
        loops.backward(x_rows, g_rows, w, gx_rows, total, bias_total, geo.groups,
                       samples.start, samples.stop, *params)
        return total, bias_total

    sums = run_parts(part, _parts(geo))  # added in batch order
    total, bias_total = sums[0]
    for other, other_bias in sums[1:]:
        total += other
        bias_total += other_bias
    grad_kernel = total.astype(x.dtype).reshape(*geo.k, 1, geo.c_out)
    return (grad_x if need_input_grad else None), grad_kernel, bias_total.astype(x.dtype)
