"""N-d convolution kernels (spatial rank 1, 2 or 3): forward and backward side by side.

Layout is channels_last only: ``x`` is ``(N, *spatial, C_in)`` and the kernel has the Keras
layout ``(*k, C_in // groups, C_out)``. Padding is explicit ``(before, after)`` zeros per
spatial axis, computed by the caller with :func:`convlens.shapes.padding_amounts`.

How the numbers are computed (all in the input's float dtype, float32 by default):

* **im2col + GEMM.** A read-only strided view of the padded input,
  ``(N, *out, *k, C_in)``, holds every input window without copying. One cache-sized chunk of
  the batch at a time is copied into a contiguous patch matrix ``(M, K*C_in)``
  (``K = prod(k)`` taps, ``M`` output pixels of the chunk) and multiplied by the kernel
  ``(K*C_in, C_out)`` through BLAS, straight into the preallocated output.
  ``groups > 1`` uses one batched matmul over the groups.
* **Gradients.** ``grad_kernel = patches^T @ grad_y`` (patches rebuilt chunk by chunk from the
  cached padded input instead of being stored), ``grad_x`` is col2im: ``grad_y @ kernel^T``
  gives one gradient column per tap, scattered back with one strided add per tap (in 2-d
  with one group: one wide GEMM per chunk and a compiled col2im; a 1x1 convolution with
  stride 1 writes ``grad_y @ kernel^T`` in place).
* **One input channel** (``C_in == 1``): the same GEMM with the patches built tap-major,
  ``(K, M)``, one contiguous copy per tap instead of a per-pixel gather; in 1-d and 2-d the
  forward pass runs a compiled loop instead (:mod:`~convlens.ops.compiled`).
* **One input channel per group** (depthwise, ``groups == C_in > 1``): a multiply-accumulate
  over the taps, because a matmul with ``K*C_in/groups = K`` rows wastes BLAS. In 1-d and 2-d
  it runs compiled loops (:mod:`~convlens.ops.conv_compiled`); the NumPy form, vectorised over
  batch, pixels and channels (with stride 1 each tap one contiguous slice of the flattened
  padded input), runs in 3-d and with ``CONVLENS_COMPILED=0``.
* **Transposed convolution** is the gradient of a convolution with respect to its input, so
  it reuses the same three kernels with the roles of input and output swapped.

* **Both cores.** Each path splits the batch into one contiguous part per BLAS thread and runs
  the parts on their own threads with single-threaded BLAS (:mod:`~convlens.ops.workers`);
  the split depends only on the batch size and the thread count.

The only Python loops run over kernel taps and over cache-sized chunks of the batch (or of
the first output axis when one sample alone is bigger than a chunk); the compiled loops
(:mod:`~convlens.ops.loops`) are the only per-pixel ones.

This module holds the public functions (argument checks, padding, caches) and picks the path;
the paths are :mod:`~convlens.ops.conv_gemm`, :mod:`~convlens.ops.conv_single_channel` and
:mod:`~convlens.ops.conv_depthwise`, on the shared :mod:`~convlens.ops.conv_geometry`. The
chunk sizes below are read here at every call and handed to the paths, so setting
``convlens.ops.conv.CHUNK_BYTES`` (as ``benchmarks/conv.py`` and the tests do) takes effect.

>>> import numpy as np
>>> x = np.ones((1, 5, 5, 1), np.float32)
>>> k = np.ones((3, 3, 1, 2), np.float32)
>>> y, cache = conv_forward(x, k, None, (1, 1), ((0, 0), (0, 0)), (1, 1))
>>> y.shape, float(y[0, 0, 0, 0])
((1, 3, 3, 2), 9.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convlens.ops import conv_compiled
from convlens.ops.conv_depthwise import (
    depthwise_forward,
    depthwise_grad_input,
    depthwise_grad_kernel,
)
from convlens.ops.conv_gemm import gemm_forward, gemm_grad_input, gemm_grad_kernel
from convlens.ops.conv_geometry import Geometry
from convlens.ops.conv_single_channel import (
    single_channel_forward,
    single_channel_grad_input,
    single_channel_grad_kernel,
)
from convlens.ops.workers import VALUE_WORK, batch_parts, run_parts
from convlens.shapes import transposed_full_length

# Bytes of patch matrix (plus output) per chunk of the im2col GEMM: stays in the 32 MiB L3 and
# keeps the number of BLAS calls low; 1-16 MiB measured within noise of each other at 1 thread,
# 4 MiB best for the (128, 26, 26, 32) -> 64 layer (see benchmarks/conv.py).
CHUNK_BYTES = 1 << 22
# C_in == 1: a K=9 GEMM costs a fixed ~70 us per call, so fewer, larger chunks win there.
SINGLE_CHANNEL_CHUNK_BYTES = 1 << 24
# Work bytes per chunk of the depthwise multiply-accumulate (accumulator and product): 2 MiB
# measured best for the stride-1 flat taps on (128, 26, 26, 32), 3x3 (256 KiB 1.5x slower).
DEPTHWISE_CHUNK_BYTES = 1 << 21

__all__ = [
    "conv_forward",
    "conv_backward",
    "conv_transpose_forward",
    "conv_transpose_backward",
]


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _float_dtype(x: np.ndarray) -> np.dtype:
    """float64 stays float64 (finite-difference checks); everything else computes in float32."""
    return np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)


def _check_rank(x: np.ndarray, kernel: np.ndarray, name: str) -> int:
    rank = x.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            f"{name}: `x` must have shape (N, *spatial, C) with 1 to 3 spatial axes; "
            f"received shape {x.shape}."
        )
    if kernel.ndim != rank + 2:
        raise ValueError(
            f"{name}: the kernel must have {rank + 2} axes for a {rank}-d input; "
            f"received kernel shape {kernel.shape} for x of shape {x.shape}."
        )
    return rank


def _check_pairs(values, rank: int, name: str, what: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in values)
    if len(values) != rank or any(v < 1 for v in values):
        raise ValueError(f"{name}: `{what}` must be {rank} positive ints; received {values}.")
    return values


def _bias_grad(grad_y: np.ndarray) -> np.ndarray:
    """``grad_y`` summed over pixels, one BLAS sum per thread's rows (see :mod:`.workers`:
    a multithreaded BLAS call outside the parts leaves threads spinning on the cores)."""
    rows = grad_y.reshape(-1, grad_y.shape[-1])  # (N*prod(out), C_out)
    sums = run_parts(
        lambda part: np.ones(part.stop - part.start, grad_y.dtype) @ rows[part],
        batch_parts(rows.shape[0], rows.size * VALUE_WORK),
    )
    total = sums[0]
    for other in sums[1:]:  # added in row order
        total += other
    return total


# --------------------------------------------------------------------------------------------
# the three kernels on an already padded input: forward, grad_kernel, grad_input.
# Each has three paths: C_in == 1 (tap-major patches), one channel per group (depthwise
# multiply-accumulate) and the general im2col GEMM.
# --------------------------------------------------------------------------------------------


def _forward(xp: np.ndarray, kernel: np.ndarray, geo: Geometry, bias=None) -> np.ndarray:
    """``y = im2col(xp) @ kernel + bias``; ``(N, *out, C_out)``.

    The bias is added chunk by chunk while the chunk is still in cache.
    """
    if geo.c_in == 1:
        return single_channel_forward(xp, kernel, geo, bias, SINGLE_CHANNEL_CHUNK_BYTES)
    if geo.cg == 1:
        return depthwise_forward(xp, kernel, geo, bias, DEPTHWISE_CHUNK_BYTES)
    return gemm_forward(xp, kernel, geo, bias, CHUNK_BYTES)


def _grad_kernel(xp: np.ndarray, grad_y: np.ndarray, geo: Geometry, with_bias: bool = False):
    """``grad_kernel = im2col(xp)^T @ grad_y``, shaped like the kernel ``(*k, Cg, C_out)``.

    Returns ``(grad_kernel, grad_bias)``. With ``with_bias`` the GEMM paths also sum
    ``grad_y`` over pixels while each chunk is in cache; otherwise (and on the depthwise path)
    ``grad_bias`` is None.
    """
    if geo.c_in == 1:
        return single_channel_grad_kernel(xp, grad_y, geo, with_bias, SINGLE_CHANNEL_CHUNK_BYTES)
    if geo.cg == 1:
        return depthwise_grad_kernel(xp, grad_y, geo, DEPTHWISE_CHUNK_BYTES), None
    return gemm_grad_kernel(xp, grad_y, geo, with_bias, CHUNK_BYTES)


def _grad_input(grad_y: np.ndarray, kernel: np.ndarray, geo: Geometry) -> np.ndarray:
    """col2im of ``grad_y @ kernel^T``: the gradient w.r.t. the padded input."""
    if geo.c_in == 1:
        return single_channel_grad_input(grad_y, kernel, geo, SINGLE_CHANNEL_CHUNK_BYTES)
    if geo.cg == 1:
        return depthwise_grad_input(grad_y, kernel, geo, DEPTHWISE_CHUNK_BYTES)
    return gemm_grad_input(grad_y, kernel, geo, CHUNK_BYTES)


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------


class _ConvCache:
    """What conv_backward needs: the input, the kernel and the geometry.

    ``xp`` is the padded input, or on the compiled path (``compiled``) the input unpadded.
    """

    __slots__ = ("xp", "kernel", "has_bias", "padding", "geo", "compiled")

    def __init__(self, xp, kernel, has_bias, padding, geo, compiled=False):
        self.xp, self.kernel, self.has_bias = xp, kernel, has_bias
        self.padding, self.geo, self.compiled = padding, geo, compiled


def conv_forward(x, kernel, bias, strides, padding, dilation, groups=1):
    """N-d convolution (cross-correlation, as Keras and PyTorch compute it).

    Args:
        x: ``(N, *spatial, C_in)``, 1 to 3 spatial axes.
        kernel: ``(*k, C_in // groups, C_out)`` (Keras layout).
        bias: ``(C_out,)`` or ``None``.
        strides, dilation: one int per spatial axis.
        padding: one ``(before, after)`` pair of zero counts per spatial axis.
        groups: divides ``C_in`` and ``C_out``; ``groups == C_in`` is a depthwise convolution.

    Returns:
        ``(y, cache)``: ``y`` is ``(N, *out, C_out)`` with
        ``out = (in + before + after - dilation*(k-1) - 1) // stride + 1``; ``cache`` is opaque,
        for :func:`conv_backward`.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    kernel = np.asarray(kernel).astype(dtype, copy=False)
    rank = _check_rank(x, kernel, "conv_forward")
    strides = _check_pairs(strides, rank, "conv_forward", "strides")
    dilation = _check_pairs(dilation, rank, "conv_forward", "dilation")
    padding = tuple((int(a), int(b)) for a, b in padding)
    if len(padding) != rank or any(a < 0 or b < 0 for a, b in padding):
        raise ValueError(
            f"conv_forward: `padding` must be {rank} (before, after) pairs of ints >= 0; "
            f"received {padding}."
        )
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    if groups < 1 or c_in % groups or c_out % groups or kernel.shape[-2] * groups != c_in:
        raise ValueError(
            f"conv_forward: groups={groups} must divide C_in={c_in} and C_out={c_out}, and the "
            f"kernel's input axis must be C_in // groups = {c_in // max(groups, 1)}; received "
            f"kernel shape {kernel.shape}."
        )
    padded = (x.shape[0], *(n + a + b for n, (a, b) in zip(x.shape[1:-1], padding)), c_in)
    geo = Geometry(padded, kernel.shape, strides, dilation, groups)
    if any(o < 1 for o in geo.out):
        raise ValueError(
            f"conv_forward: the kernel {geo.k} with dilation {dilation} does not fit in the "
            f"padded input {geo.padded}; output size would be {geo.out}."
        )
    kernel = np.ascontiguousarray(kernel)
    if bias is not None:
        bias = np.asarray(bias, dtype)
        if bias.shape != (c_out,):
            raise ValueError(
                f"conv_forward: `bias` must have shape ({c_out},); received {bias.shape}."
            )
    if conv_compiled.applies(geo):
        x = np.ascontiguousarray(x)
        y = conv_compiled.forward(x, kernel, bias, geo, padding)
        return y, _ConvCache(x, kernel, bias is not None, padding, geo, compiled=True)
    if any(a or b for a, b in padding):
        xp = np.pad(x, ((0, 0), *padding, (0, 0)))
    else:
        xp = np.ascontiguousarray(x)
    y = _forward(xp, kernel, geo, bias)
    return y, _ConvCache(xp, kernel, bias is not None, padding, geo)


def conv_backward(grad_y, cache, need_input_grad=True):
    """Gradients of :func:`conv_forward`.

    Returns ``(grad_x or None, grad_kernel, grad_bias or None)`` shaped like ``x``,
    ``kernel`` and ``bias``.
    """
    geo = cache.geo
    grad_y = np.ascontiguousarray(grad_y, dtype=cache.xp.dtype)
    if grad_y.shape != geo.out_shape:
        raise ValueError(
            f"conv_backward: grad_y must have the output shape {geo.out_shape}; "
            f"received {grad_y.shape}."
        )
    if cache.compiled:
        grad_x, grad_kernel, grad_bias = conv_compiled.backward(
            cache.xp, grad_y, cache.kernel, geo, cache.padding, need_input_grad
        )
        return grad_x, grad_kernel, grad_bias if cache.has_bias else None
    grad_kernel, grad_bias = _grad_kernel(cache.xp, grad_y, geo, cache.has_bias)
    if cache.has_bias and grad_bias is None:
        grad_bias = _bias_grad(grad_y)
    grad_x = None
    if need_input_grad:
        grad_xp = _grad_input(grad_y, cache.kernel, geo)
        if any(a or b for a, b in cache.padding):
            inner = tuple(
                slice(a, p - b) for (a, b), p in zip(cache.padding, geo.padded, strict=True)
            )
            grad_x = np.ascontiguousarray(grad_xp[(slice(None), *inner)])
        else:
            grad_x = grad_xp
    return grad_x, grad_kernel, grad_bias


# --------------------------------------------------------------------------------------------
# transposed convolution
# --------------------------------------------------------------------------------------------


class _TransposeCache:
    __slots__ = ("x", "kernel", "has_bias", "crop", "geo", "out")

    def __init__(self, x, kernel, has_bias, crop, geo, out):
        self.x, self.kernel, self.has_bias, self.crop, self.geo, self.out = (
            x,
            kernel,
            has_bias,
            crop,
            geo,
            out,
        )


def _recrop(a: np.ndarray, crop, target: Sequence[int]) -> np.ndarray:
    """Keep ``target`` entries per spatial axis starting at ``before``; zeros outside ``a``."""
    if all(b == 0 for b, _ in crop) and tuple(a.shape[1:-1]) == tuple(target):
        return a
    result = np.zeros((a.shape[0], *target, a.shape[-1]), a.dtype)
    src, dst = [slice(None)], [slice(None)]
    for (before, _), length, want in zip(crop, a.shape[1:-1], target, strict=True):
        lo, hi = max(before, 0), min(length, before + want)
        src.append(slice(lo, max(lo, hi)))
        dst.append(slice(lo - before, lo - before + max(0, hi - lo)))
    result[tuple(dst)] = a[tuple(src)]
    return result


def conv_transpose_forward(x, kernel, bias, strides, crop, dilation):
    """Transposed convolution: the gradient of a convolution with respect to its input.

    Args:
        x: ``(N, *spatial, C_in)``.
        kernel: ``(*k, C_out, C_in)`` (Keras ``Conv2DTranspose`` layout).
        bias: ``(C_out,)`` or ``None``.
        strides, dilation: one int per spatial axis.
        crop: per axis ``(before, after)`` removed from the full output of length
            ``(in - 1)*stride + dilation*(k - 1) + 1``; a negative ``after`` appends that many
            zeros (see :func:`convlens.shapes.deconv_padding_amounts`).

    Returns:
        ``(y, cache)`` with ``y`` of shape ``(N, *(full - before - after), C_out)``.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    x = np.ascontiguousarray(x, dtype=dtype)
    kernel = np.ascontiguousarray(kernel, dtype=dtype)
    rank = _check_rank(x, kernel, "conv_transpose_forward")
    strides = _check_pairs(strides, rank, "conv_transpose_forward", "strides")
    dilation = _check_pairs(dilation, rank, "conv_transpose_forward", "dilation")
    crop = tuple((int(a), int(b)) for a, b in crop)
    if len(crop) != rank:
        raise ValueError(
            f"conv_transpose_forward: `crop` must be {rank} (before, after) pairs; received {crop}."
        )
    if kernel.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"conv_transpose_forward: the kernel's last axis must be C_in={x.shape[-1]} "
            f"(layout (*k, C_out, C_in)); received kernel shape {kernel.shape}."
        )
    full = tuple(
        transposed_full_length(n, k, s, d)
        for n, k, s, d in zip(x.shape[1:-1], kernel.shape[:-2], strides, dilation, strict=True)
    )
    out = tuple(f - a - b for f, (a, b) in zip(full, crop, strict=True))
    if any(o < 1 for o in out):
        raise ValueError(
            f"conv_transpose_forward: cropping {crop} from the full output {full} leaves {out}."
        )
    # The convolution whose input gradient this is maps (N, *full, C_out) -> x.
    geo = Geometry((x.shape[0], *full, kernel.shape[-2]), kernel.shape, strides, dilation, 1)
    y = _recrop(_grad_input(x, kernel, geo), crop, out)
    if bias is not None:
        y += np.asarray(bias, dtype)
    return y, _TransposeCache(x, kernel, bias is not None, crop, geo, out)


def conv_transpose_backward(grad_y, cache, need_input_grad=True):
    """Gradients of :func:`conv_transpose_forward`: ``(grad_x or None, grad_kernel, grad_bias)``."""
    geo = cache.geo
    grad_y = np.ascontiguousarray(grad_y, dtype=cache.x.dtype)
    expected = (geo.batch, *cache.out, geo.c_in)
    if grad_y.shape != expected:
        raise ValueError(
            f"conv_transpose_backward: grad_y must have shape {expected}; received {grad_y.shape}."
        )
    # Undo the crop: the gradient of the full output, zero where it was cropped away.
    uncrop = tuple(
        (-a, f - o - a) for (a, _), f, o in zip(cache.crop, geo.padded, cache.out, strict=True)
    )
    grad_full = _recrop(grad_y, uncrop, geo.padded)
    grad_kernel, _ = _grad_kernel(grad_full, cache.x, geo)
    # Not fused: a negative crop appends outputs that only the bias reaches.
    grad_bias = _bias_grad(grad_y) if cache.has_bias else None
    grad_x = _forward(grad_full, cache.kernel, geo) if need_input_grad else None
    return grad_x, grad_kernel, grad_bias
