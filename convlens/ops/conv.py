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
  gives one gradient column per tap, scattered back with one strided add per tap.
* **One input channel per group** (depthwise, ``groups == C_in``; also plain ``C_in == 1``
  in the forward pass): a multiply-accumulate over the taps, vectorised over batch, pixels and
  channels, because a matmul with ``K*C_in/groups = K`` rows wastes BLAS.
* **Transposed convolution** is the gradient of a convolution with respect to its input, so
  it reuses the same three kernels with the roles of input and output swapped.

The only Python loops run over kernel taps and over cache-sized chunks of the batch (or of
the first output axis when one sample alone is bigger than a chunk).

>>> import numpy as np
>>> x = np.ones((1, 5, 5, 1), np.float32)
>>> k = np.ones((3, 3, 1, 2), np.float32)
>>> y, cache = conv_forward(x, k, None, (1, 1), ((0, 0), (0, 0)), (1, 1))
>>> y.shape, float(y[0, 0, 0, 0])
((1, 3, 3, 2), 9.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

# Bytes of patch matrix (plus output) per chunk of the im2col GEMM: stays in the 32 MiB L3 and
# keeps the number of BLAS calls low; 1-16 MiB measured within noise of each other at 1 thread,
# 4 MiB best for the (128, 26, 26, 32) -> 64 layer (see benchmarks/conv.py).
CHUNK_BYTES = 1 << 22
# C_in == 1: a K=9 GEMM costs a fixed ~70 us per call, so fewer, larger chunks win there.
SINGLE_CHANNEL_CHUNK_BYTES = 1 << 24
# Output bytes per chunk of the depthwise multiply-accumulate: its 2 passes per tap run in L2.
DEPTHWISE_CHUNK_BYTES = 1 << 18

__all__ = [
    "conv_forward",
    "conv_backward",
    "conv_transpose_forward",
    "conv_transpose_backward",
]


# --------------------------------------------------------------------------------------------
# geometry and helpers
# --------------------------------------------------------------------------------------------


class _Geometry:
    """Sizes of one convolution whose input is already zero-padded."""

    def __init__(self, padded_shape, kernel_shape, strides, dilation, groups):
        self.batch = padded_shape[0]
        self.padded = tuple(padded_shape[1:-1])
        self.c_in = padded_shape[-1]
        self.k = tuple(kernel_shape[:-2])
        self.c_out = kernel_shape[-1]
        self.strides = tuple(strides)
        self.dilation = tuple(dilation)
        self.groups = groups
        self.cg = self.c_in // groups  # input channels per group
        self.cog = self.c_out // groups  # output channels per group
        self.taps = math.prod(self.k)
        self.out = tuple(
            (p - d * (k - 1) - 1) // s + 1
            for p, k, s, d in zip(self.padded, self.k, self.strides, self.dilation, strict=True)
        )

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.batch, *self.out, self.c_out)

    def chunks(
        self, bytes_per_pixel: int, budget: int | None = None
    ) -> Iterator[tuple[slice, int, int]]:
        """Yield ``(batch slice, first, stop)`` along output axis 0, about ``budget`` bytes each."""
        budget = budget or CHUNK_BYTES
        rest = math.prod(self.out[1:])
        per_sample = max(1, self.out[0] * rest * bytes_per_pixel)
        if per_sample <= budget:
            step = max(1, budget // per_sample)
            for n in range(0, self.batch, step):
                yield slice(n, min(n + step, self.batch)), 0, self.out[0]
            return
        rows = max(1, budget // max(1, rest * bytes_per_pixel))
        for n in range(self.batch):
            for first in range(0, self.out[0], rows):
                yield slice(n, n + 1), first, min(first + rows, self.out[0])

    def tap_index(self, first: int, stop: int, tap: tuple[int, ...]) -> tuple[slice, ...]:
        """Slices of the padded input read by kernel tap ``tap`` for output rows [first, stop)."""
        index = []
        for axis, (t, s, d) in enumerate(zip(tap, self.strides, self.dilation, strict=True)):
            lo, hi = (first, stop) if axis == 0 else (0, self.out[axis])
            start = lo * s + t * d
            index.append(slice(start, start + (hi - lo - 1) * s + 1, s))
        return tuple(index)

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """Read-only view ``(G, N, *out, *k, Cg)`` of every input window, no copy."""
        s_batch, *s_space, s_chan = xp.strides
        shape = (self.batch, *self.out, *self.k, self.groups, self.cg)
        strides = (
            s_batch,
            *(s * st for s, st in zip(self.strides, s_space, strict=True)),
            *(d * st for d, st in zip(self.dilation, s_space, strict=True)),
            self.cg * s_chan,
            s_chan,
        )
        view = as_strided(xp, shape, strides, writeable=False)
        rank = len(self.k)
        # (N, *out, *k, G, Cg) -> (G, N, *out, *k, Cg)
        return view.transpose(2 * rank + 1, *range(2 * rank + 1), 2 * rank + 2)

    def grouped_kernel(self, kernel: np.ndarray) -> np.ndarray:
        """Keras kernel ``(*k, Cg, C_out)`` as ``(G, K*Cg, C_out/G)`` for a batched matmul."""
        w = kernel.reshape(self.taps, self.cg, self.groups, self.cog)  # (K, Cg, G, Cog)
        w = w.transpose(2, 0, 1, 3)  # (G, K, Cg, Cog)
        return np.ascontiguousarray(w).reshape(self.groups, self.taps * self.cg, self.cog)


def _rows(a: np.ndarray, columns: int) -> np.ndarray:
    """View of a contiguous block as ``(-1, columns)``; raises instead of silently copying."""
    view = a.view()
    view.shape = (-1, columns)
    return view


def _taps(k: Sequence[int]) -> list[tuple[int, ...]]:
    return list(np.ndindex(*k))


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
    rows = grad_y.reshape(-1, grad_y.shape[-1])  # (N*prod(out), C_out)
    return np.ones(rows.shape[0], grad_y.dtype) @ rows


# --------------------------------------------------------------------------------------------
# the three kernels on an already padded input: forward, grad_kernel, grad_input.
# Each has three paths: C_in == 1 (tap-major patches), one channel per group (depthwise
# multiply-accumulate) and the general im2col GEMM.
# --------------------------------------------------------------------------------------------


def _forward(xp: np.ndarray, kernel: np.ndarray, geo: _Geometry, bias=None) -> np.ndarray:
    """``y = im2col(xp) @ kernel + bias``; ``(N, *out, C_out)``.

    The bias is added chunk by chunk while the chunk is still in cache.
    """
    if geo.c_in == 1:
        return _single_channel_forward(xp, kernel, geo, bias)
    if geo.cg == 1:
        return _depthwise_forward(xp, kernel, geo, bias)
    y = np.empty(geo.out_shape, xp.dtype)
    windows = geo.windows(xp)
    w = geo.grouped_kernel(kernel)  # (G, K*Cg, Cog)
    depth = geo.taps * geo.cg
    scratch = tmp = None
    for batch, first, stop in geo.chunks((geo.taps * geo.c_in + geo.c_out) * xp.itemsize):
        src = windows[:, batch, first:stop]  # (G, b, *out_chunk, *k, Cg)
        scratch = _scratch(scratch, src.size, xp.dtype)
        patches = scratch[: src.size].reshape(src.shape)
        np.copyto(patches, src)
        patches = patches.reshape(geo.groups, -1, depth)  # (G, M, K*Cg)
        y_rows = _rows(y[batch, first:stop], geo.c_out)  # (M, C_out)
        if geo.groups == 1:
            np.matmul(patches[0], w[0], out=y_rows)
            if bias is not None:
                y_rows += bias
            continue
        if tmp is None or tmp.shape[1] != patches.shape[1]:
            tmp = np.empty((geo.groups, patches.shape[1], geo.cog), xp.dtype)
        np.matmul(patches, w, out=tmp)  # (G, M, Cog)
        # (M, C_out) seen as (M, G, Cog) <- (G, M, Cog).transpose
        y_groups = y_rows.reshape(-1, geo.groups, geo.cog)
        if bias is None:
            np.copyto(y_groups, tmp.transpose(1, 0, 2))
        else:
            np.add(tmp.transpose(1, 0, 2), bias.reshape(geo.groups, geo.cog), out=y_groups)
    return y


def _grad_kernel(xp: np.ndarray, grad_y: np.ndarray, geo: _Geometry, with_bias: bool = False):
    """``grad_kernel = im2col(xp)^T @ grad_y``, shaped like the kernel ``(*k, Cg, C_out)``.

    Returns ``(grad_kernel, grad_bias)``. With ``with_bias`` the GEMM paths also sum
    ``grad_y`` over pixels while each chunk is in cache; otherwise (and on the depthwise path)
    ``grad_bias`` is None.
    """
    if geo.c_in == 1:
        return _single_channel_grad_kernel(xp, grad_y, geo, with_bias)
    if geo.cg == 1:
        return _depthwise_grad_kernel(xp, grad_y, geo), None
    dtype = xp.dtype
    windows = geo.windows(xp)
    depth = geo.taps * geo.cg
    grad_w = np.zeros((geo.groups, depth, geo.cog), dtype)  # (G, K*Cg, Cog)
    part = np.empty_like(grad_w)
    grad_b = np.zeros(geo.c_out, dtype) if with_bias else None
    scratch = ones = None
    for batch, first, stop in geo.chunks((geo.taps * geo.c_in + geo.c_out) * xp.itemsize):
        src = windows[:, batch, first:stop]  # (G, b, *out_chunk, *k, Cg)
        scratch = _scratch(scratch, src.size, dtype)
        patches = scratch[: src.size].reshape(src.shape)
        np.copyto(patches, src)
        patches = patches.reshape(geo.groups, -1, depth)  # (G, M, K*Cg)
        g_rows = _rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
        if with_bias:
            if ones is None or ones.size != g_rows.shape[0]:
                ones = np.ones(g_rows.shape[0], dtype)
            grad_b += ones @ g_rows
        g_rows = g_rows.reshape(-1, geo.groups, geo.cog).transpose(1, 0, 2)  # (G, M, Cog)
        np.matmul(patches.transpose(0, 2, 1), g_rows, out=part)  # (G, K*Cg, Cog)
        grad_w += part
    grad_w = grad_w.reshape(geo.groups, geo.taps, geo.cg, geo.cog)
    # (G, K, Cg, Cog) -> (K, Cg, G, Cog) -> (*k, Cg, C_out)
    grad_w = np.ascontiguousarray(grad_w.transpose(1, 2, 0, 3))
    return grad_w.reshape(*geo.k, geo.cg, geo.c_out), grad_b


def _grad_input(grad_y: np.ndarray, kernel: np.ndarray, geo: _Geometry) -> np.ndarray:
    """col2im of ``grad_y @ kernel^T``: the gradient w.r.t. the padded input."""
    if geo.c_in == 1:
        return _single_channel_grad_input(grad_y, kernel, geo)
    if geo.cg == 1:
        return _depthwise_grad_input(grad_y, kernel, geo)
    dtype = grad_y.dtype
    grad_xp = np.zeros((geo.batch, *geo.padded, geo.c_in), dtype)
    w = geo.grouped_kernel(kernel).reshape(geo.groups, geo.taps, geo.cg, geo.cog)
    w = w.transpose(0, 1, 3, 2)  # (G, K, Cog, Cg)
    scratch = None
    for batch, first, stop in geo.chunks((geo.taps * geo.c_in + geo.c_out) * dtype.itemsize):
        g_rows = _rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
        m = g_rows.shape[0]
        g_groups = g_rows.reshape(m, geo.groups, 1, geo.cog).transpose(1, 2, 0, 3)
        # g_groups: (G, 1, M, Cog); one gradient slab per tap, contiguous for the scatter
        scratch = _scratch(scratch, geo.groups * geo.taps * m * geo.cg, dtype)
        cols = scratch[: geo.groups * geo.taps * m * geo.cg]
        cols = cols.reshape(geo.groups, geo.taps, m, geo.cg)
        np.matmul(g_groups, w, out=cols)  # (G, K, M, Cg)
        cols = cols.reshape(
            geo.groups, geo.taps, batch.stop - batch.start, stop - first, *geo.out[1:], geo.cg
        )  # (G, K, b, *out_chunk, Cg)
        cols = np.moveaxis(cols, 0, -2)  # (K, b, *out_chunk, G, Cg)
        for i, tap in enumerate(_taps(geo.k)):
            target = grad_xp[(batch, *geo.tap_index(first, stop, tap))]  # (b, *out, C_in)
            target = target.reshape(*target.shape[:-1], geo.groups, geo.cg)  # (b, *out, G, Cg)
            target += cols[i]
    return grad_xp


def _scratch(buffer: np.ndarray | None, size: int, dtype) -> np.ndarray:
    """Reuse one flat work buffer across chunks (the last chunk may be smaller)."""
    if buffer is None or buffer.size < size:
        return np.empty(size, dtype)
    return buffer


# C_in == 1 (groups == 1): patches are built tap-major, (K, M), with one contiguous copy per tap;
# the GEMM reads them transposed, so no per-pixel gather of K=prod(k) scattered values.


def _single_channel_patches(xp, geo, batch, first, stop, scratch, ones_row=False):
    """Tap-major patches ``(K, M)``; with ``ones_row`` a row of ones is appended (bias)."""
    taps = _taps(geo.k)
    b = batch.stop - batch.start
    shape = (geo.taps + ones_row, b, stop - first, *geo.out[1:])
    scratch = _scratch(scratch, math.prod(shape), xp.dtype)
    patches = scratch[: math.prod(shape)].reshape(shape)  # (K, b, *out_chunk)
    for i, tap in enumerate(taps):
        np.copyto(patches[i], xp[(batch, *geo.tap_index(first, stop, tap), 0)])
    if ones_row:
        patches[-1] = 1
    return patches.reshape(shape[0], -1), scratch  # (K, M)


def _single_channel_forward(xp, kernel, geo, bias):
    y = np.empty(geo.out_shape, xp.dtype)
    w = kernel.reshape(geo.taps, geo.c_out)  # (K, C_out)
    if bias is not None:
        # The bias rides in the GEMM as one more row (K=10 instead of 9), saving a pass over y.
        w = np.concatenate([w, bias[None]])  # (K+1, C_out)
    scratch = None
    for batch, first, stop in geo.chunks(
        (geo.taps + geo.c_out) * xp.itemsize, SINGLE_CHANNEL_CHUNK_BYTES
    ):
        patches, scratch = _single_channel_patches(
            xp, geo, batch, first, stop, scratch, ones_row=bias is not None
        )
        np.matmul(patches.T, w, out=_rows(y[batch, first:stop], geo.c_out))  # (M, C_out)
    return y


def _single_channel_grad_kernel(xp, grad_y, geo, with_bias):
    # With the bias, the patches' row of ones makes the GEMM's last row the bias gradient.
    grad_w = np.zeros((geo.taps + with_bias, geo.c_out), xp.dtype)  # (K [+1], C_out)
    part = np.empty_like(grad_w)
    scratch = None
    for batch, first, stop in geo.chunks(
        (geo.taps + geo.c_out) * xp.itemsize, SINGLE_CHANNEL_CHUNK_BYTES
    ):
        patches, scratch = _single_channel_patches(
            xp, geo, batch, first, stop, scratch, ones_row=with_bias
        )
        np.matmul(patches, _rows(grad_y[batch, first:stop], geo.c_out), out=part)
        grad_w += part
    grad_b = grad_w[-1].copy() if with_bias else None
    return grad_w[: geo.taps].reshape(*geo.k, 1, geo.c_out), grad_b


def _single_channel_grad_input(grad_y, kernel, geo):
    grad_xp = np.zeros((geo.batch, *geo.padded, 1), grad_y.dtype)
    w = kernel.reshape(geo.taps, geo.c_out)  # (K, C_out)
    for batch, first, stop in geo.chunks(
        (geo.taps + geo.c_out) * grad_y.itemsize, SINGLE_CHANNEL_CHUNK_BYTES
    ):
        g_rows = _rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
        cols = w @ g_rows.T  # (K, M)
        cols = cols.reshape(geo.taps, batch.stop - batch.start, stop - first, *geo.out[1:])
        for i, tap in enumerate(_taps(geo.k)):
            grad_xp[(batch, *geo.tap_index(first, stop, tap), 0)] += cols[i]
    return grad_xp


# One input channel per group (depthwise, multiplier m = C_out / G): output channel g*m + j is
# x[..., g] * w[tap, g, j] summed over taps. The multiply-accumulate runs over whole chunks with
# the innermost loop over (width * G) contiguous values; the multiplier axis is looped.


def _row_weights(w: np.ndarray, width: int) -> np.ndarray:
    """``(K, G, m)`` weights repeated along the last spatial axis: ``(K, m, width, G)``.

    Multiplying a ``(b, ..., width, G)`` tap slice by a ``(G,)`` vector would run NumPy's inner
    loop over only G values; against a ``(width, G)`` block it runs over ``width * G``.
    """
    taps, groups, mult = w.shape
    rows = w.transpose(0, 2, 1)[:, :, None, :]  # (K, m, 1, G)
    return np.ascontiguousarray(np.broadcast_to(rows, (taps, mult, width, groups)))


def _depthwise_forward(xp, kernel, geo, bias):
    mult = geo.cog
    w = kernel.reshape(geo.taps, geo.groups, mult)  # (K, G, m)
    y = np.empty(geo.out_shape, xp.dtype)
    taps = _taps(geo.k)
    acc = tmp = rows = None
    for batch, first, stop in geo.chunks(geo.c_out * xp.itemsize, DEPTHWISE_CHUNK_BYTES):
        b = batch.stop - batch.start
        shape = (mult, b, stop - first, *geo.out[1:], geo.groups)
        if acc is None or acc.shape != shape:
            acc, tmp = np.empty(shape, xp.dtype), np.empty(shape[1:], xp.dtype)
        if rows is None or rows.shape[2] != shape[-2]:
            rows = _row_weights(w, shape[-2])  # (K, m, width, G)
        for i, tap in enumerate(taps):
            x_tap = xp[(batch, *geo.tap_index(first, stop, tap))]  # (b, *out_chunk, G)
            for j in range(mult):
                if i == 0:
                    np.multiply(x_tap, rows[i, j], out=acc[j])
                else:
                    np.multiply(x_tap, rows[i, j], out=tmp)
                    acc[j] += tmp
        y_chunk = y[batch, first:stop]
        # (b, *out_chunk, G*m) seen as (b, *out_chunk, G, m) <- (m, b, *out_chunk, G)
        y_chunk = y_chunk.reshape(*y_chunk.shape[:-1], geo.groups, mult)
        if bias is None:
            np.copyto(y_chunk, np.moveaxis(acc, 0, -1))
        else:
            np.add(np.moveaxis(acc, 0, -1), bias.reshape(geo.groups, mult), out=y_chunk)
    return y


def _depthwise_grad_kernel(xp, grad_y, geo):
    mult = geo.cog
    grad_w = np.zeros((geo.taps, geo.groups, mult), xp.dtype)  # (K, G, m)
    for batch, first, stop in geo.chunks(geo.c_out * xp.itemsize, DEPTHWISE_CHUNK_BYTES):
        g_chunk = grad_y[batch, first:stop]
        g_chunk = g_chunk.reshape(*g_chunk.shape[:-1], geo.groups, mult)  # (b, *out, G, m)
        lead = "abcd"[: g_chunk.ndim - 2]  # batch and spatial axes, summed over
        for i, tap in enumerate(_taps(geo.k)):
            x_tap = xp[(batch, *geo.tap_index(first, stop, tap))]  # (b, *out_chunk, G)
            grad_w[i] += np.einsum(f"{lead}g,{lead}gj->gj", x_tap, g_chunk)
    return grad_w.reshape(*geo.k, 1, geo.c_out)


def _depthwise_grad_input(grad_y, kernel, geo):
    mult = geo.cog
    grad_xp = np.zeros((geo.batch, *geo.padded, geo.c_in), grad_y.dtype)
    w = kernel.reshape(geo.taps, geo.groups, mult)  # (K, G, m)
    tmp = rows = None
    for batch, first, stop in geo.chunks(geo.c_out * grad_y.itemsize, DEPTHWISE_CHUNK_BYTES):
        g_chunk = grad_y[batch, first:stop]
        g_chunk = g_chunk.reshape(*g_chunk.shape[:-1], geo.groups, mult)  # (b, *out, G, m)
        if tmp is None or tmp.shape != g_chunk.shape[:-1]:
            tmp = np.empty(g_chunk.shape[:-1], grad_y.dtype)
        if rows is None or rows.shape[2] != tmp.shape[-2]:
            rows = _row_weights(w, tmp.shape[-2])  # (K, m, width, G)
        for i, tap in enumerate(_taps(geo.k)):
            target = grad_xp[(batch, *geo.tap_index(first, stop, tap))]  # (b, *out, G)
            for j in range(mult):
                np.multiply(g_chunk[..., j], rows[i, j], out=tmp)
                target += tmp
    return grad_xp


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------


class _ConvCache:
    """What conv_backward needs: the padded input, the kernel and the geometry."""

    __slots__ = ("xp", "kernel", "has_bias", "padding", "geo")

    def __init__(self, xp, kernel, has_bias, padding, geo):
        self.xp, self.kernel, self.has_bias, self.padding, self.geo = (
            xp,
            kernel,
            has_bias,
            padding,
            geo,
        )


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
    if any(a or b for a, b in padding):
        xp = np.pad(x, ((0, 0), *padding, (0, 0)))
    else:
        xp = np.ascontiguousarray(x)
    geo = _Geometry(xp.shape, kernel.shape, strides, dilation, groups)
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
        (n - 1) * s + d * (k - 1) + 1
        for n, k, s, d in zip(x.shape[1:-1], kernel.shape[:-2], strides, dilation, strict=True)
    )
    out = tuple(f - a - b for f, (a, b) in zip(full, crop, strict=True))
    if any(o < 1 for o in out):
        raise ValueError(
            f"conv_transpose_forward: cropping {crop} from the full output {full} leaves {out}."
        )
    # The convolution whose input gradient this is maps (N, *full, C_out) -> x.
    geo = _Geometry((x.shape[0], *full, kernel.shape[-2]), kernel.shape, strides, dilation, 1)
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
