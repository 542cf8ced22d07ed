"""The general convolution path: im2col + GEMM on cache-sized chunks of the batch.

A read-only strided view of the padded input, ``(G, N, *out, *k, Cg)``, holds every input
window without copying; one chunk at a time is copied into a contiguous patch matrix
``(G, M, K*Cg)`` and multiplied through BLAS (one batched matmul over the groups). ``budget`` is
the chunk size in bytes, :data:`convlens.ops.conv.CHUNK_BYTES` when called from there. Each
kernel splits the batch into one contiguous part per core (:mod:`convlens.ops.workers`); a
part's chunks run in order with their own work buffers.
"""

from __future__ import annotations

import math

import numpy as np

from convlens.ops import compiled
from convlens.ops.conv_geometry import Geometry, as_rows, kernel_taps, reuse_buffer
from convlens.ops.workers import batch_parts, run_parts


def _parts(geo: Geometry) -> list[slice]:
    """The batch split for this convolution's size (multiply-adds of its GEMM)."""
    work = geo.batch * math.prod(geo.out) * geo.taps * geo.cg * geo.c_out
    return batch_parts(geo.batch, work)


def _pointwise(geo: Geometry) -> bool:
    """A 1x1 convolution with stride 1 and one group: a matrix product per pixel."""
    return geo.taps == 1 and geo.groups == 1 and all(s == 1 for s in geo.strides)


def _patches(xp, windows, geo: Geometry, batch: slice, first: int, stop: int, scratch):
    """The chunk's patch matrix ``(G, M, K*Cg)``, and the work buffer to reuse next time.

    A 1x1 convolution with stride 1 and one group reads each pixel once, in order: its patches
    are the input rows themselves, so no copy is made.
    """
    if _pointwise(geo):
        return as_rows(xp[batch, first:stop], geo.c_in)[None], scratch  # (1, M, C_in)
    src = windows[:, batch, first:stop]  # (G, b, *out_chunk, *k, Cg)
    scratch = reuse_buffer(scratch, src.size, xp.dtype)
    patches = scratch[: src.size].reshape(src.shape)  # (G, b, *out_chunk, *k, Cg)
    np.copyto(patches, src)
    return patches.reshape(geo.groups, -1, geo.taps * geo.cg), scratch  # (G, M, K*Cg)


def gemm_forward(
    xp: np.ndarray, kernel: np.ndarray, geo: Geometry, bias, budget: int
) -> np.ndarray:
    """``y = im2col(xp) @ kernel + bias``; ``(N, *out, C_out)``.

    The bias is added chunk by chunk while the chunk is still in cache.
    """
    y = np.empty(geo.out_shape, xp.dtype)
    windows = geo.windows(xp)
    w = geo.grouped_kernel(kernel)  # (G, K*Cg, Cog)
    bytes_per_pixel = (geo.taps * geo.c_in + geo.c_out) * xp.itemsize

    def part(samples: slice) -> None:
        scratch = tmp = None
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            patches, scratch = _patches(xp, windows, geo, batch, first, stop, scratch)
            y_rows = as_rows(y[batch, first:stop], geo.c_out)  # (M, C_out)
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

    run_parts(part, _parts(geo))
    return y


def gemm_grad_kernel(
    xp: np.ndarray, grad_y: np.ndarray, geo: Geometry, with_bias: bool, budget: int
):
    """``grad_kernel = im2col(xp)^T @ grad_y``, shaped like the kernel ``(*k, Cg, C_out)``.

    Returns ``(grad_kernel, grad_bias)``. With ``with_bias`` it also sums ``grad_y`` over
    pixels while each chunk is in cache; otherwise ``grad_bias`` is None.
    """
    dtype = xp.dtype
    windows = geo.windows(xp)
    depth = geo.taps * geo.cg
    bytes_per_pixel = (geo.taps * geo.c_in + geo.c_out) * xp.itemsize

    def part(samples: slice):
        grad_w = np.zeros((geo.groups, depth, geo.cog), dtype)  # (G, K*Cg, Cog)
        product = np.empty_like(grad_w)
        grad_b = np.zeros(geo.c_out, dtype) if with_bias else None
        scratch = ones = None
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            patches, scratch = _patches(xp, windows, geo, batch, first, stop, scratch)
            g_rows = as_rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
            if with_bias:
                if ones is None or ones.size != g_rows.shape[0]:
                    ones = np.ones(g_rows.shape[0], dtype)
                grad_b += ones @ g_rows
            g_rows = g_rows.reshape(-1, geo.groups, geo.cog).transpose(1, 0, 2)  # (G, M, Cog)
            np.matmul(patches.transpose(0, 2, 1), g_rows, out=product)  # (G, K*Cg, Cog)
            grad_w += product
        return grad_w, grad_b

    # Each part sums its own chunks; the parts' sums are added in batch order.
    sums = run_parts(part, _parts(geo))
    grad_w, grad_b = sums[0]
    for part_w, part_b in sums[1:]:
        grad_w += part_w
        if with_bias:
            grad_b += part_b
    grad_w = grad_w.reshape(geo.groups, geo.taps, geo.cg, geo.cog)
    # (G, K, Cg, Cog) -> (K, Cg, G, Cog) -> (*k, Cg, C_out)
    grad_w = np.ascontiguousarray(grad_w.transpose(1, 2, 0, 3))
    return grad_w.reshape(*geo.k, geo.cg, geo.c_out), grad_b


def gemm_grad_input(
    grad_y: np.ndarray, kernel: np.ndarray, geo: Geometry, budget: int
) -> np.ndarray:
    """col2im of ``grad_y @ kernel^T``: the gradient w.r.t. the padded input."""
    if _pointwise(geo):
        return _pointwise_grad_input(grad_y, kernel, geo, budget)
    if geo.groups == 1 and len(geo.k) == 2 and compiled.available():
        return _compiled_grad_input(grad_y, kernel, geo, budget)
    dtype = grad_y.dtype
    grad_xp = np.zeros((geo.batch, *geo.padded, geo.c_in), dtype)
    w = geo.grouped_kernel(kernel).reshape(geo.groups, geo.taps, geo.cg, geo.cog)  # (G, K, Cg, Cog)
    w = w.transpose(0, 1, 3, 2)  # (G, K, Cog, Cg)
    bytes_per_pixel = (geo.taps * geo.c_in + geo.c_out) * dtype.itemsize
    taps = kernel_taps(geo.k)

    # Parts own whole samples, so no two threads add into the same input pixel.
    def part(samples: slice) -> None:
        scratch = None
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            g_rows = as_rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
            m = g_rows.shape[0]
            g_groups = g_rows.reshape(m, geo.groups, 1, geo.cog).transpose(1, 2, 0, 3)
            # g_groups: (G, 1, M, Cog); one gradient slab per tap, contiguous for the scatter
            scratch = reuse_buffer(scratch, geo.groups * geo.taps * m * geo.cg, dtype)
            cols = scratch[: geo.groups * geo.taps * m * geo.cg]
            cols = cols.reshape(geo.groups, geo.taps, m, geo.cg)  # (G, K, M, Cg)
            np.matmul(g_groups, w, out=cols)  # (G, K, M, Cg)
            cols = cols.reshape(
                geo.groups, geo.taps, batch.stop - batch.start, stop - first, *geo.out[1:], geo.cg
            )  # (G, K, b, *out_chunk, Cg)
            cols = np.moveaxis(cols, 0, -2)  # (K, b, *out_chunk, G, Cg)
            for i, tap in enumerate(taps):
                target = grad_xp[(batch, *geo.tap_index(first, stop, tap))]  # (b, *out, C_in)
                target = target.reshape(*target.shape[:-1], geo.groups, geo.cg)  # (b,*out,G,Cg)
                target += cols[i]

    run_parts(part, _parts(geo))
    return grad_xp


def _compiled_grad_input(grad_y, kernel, geo: Geometry, budget: int) -> np.ndarray:
    """2-d, one group: one GEMM per chunk, ``(M, C_out) @ (C_out, K*C_in)``, pixel-major
    columns, then :mod:`convlens.ops.compiled`'s ``col2im_add`` adds them onto the input.

    One wide GEMM (N = K*C_in) runs BLAS faster than K narrow ones (N = C_in), and the loop
    adds each column while the chunk is in cache, where NumPy needs one strided add per tap.
    """
    dtype = grad_y.dtype
    grad_xp = np.zeros((geo.batch, *geo.padded, geo.c_in), dtype)
    gx_rows = grad_xp.reshape(geo.batch, geo.padded[0], -1)  # (N, Hp, Wp*C_in)
    w_t = kernel.reshape(geo.taps * geo.c_in, geo.c_out).T  # (C_out, K*C_in)
    bytes_per_pixel = (geo.taps * geo.c_in + geo.c_out) * dtype.itemsize
    col2im = compiled.kernels().col2im_add
    params = (*geo.k, *geo.strides, *geo.dilation)

    # Parts own whole samples, so no two threads add into the same input pixel.
    def part(samples: slice) -> None:
        scratch = None
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            g_rows = as_rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
            size = g_rows.shape[0] * w_t.shape[1]
            scratch = reuse_buffer(scratch, size, dtype)
            cols = scratch[:size].reshape(g_rows.shape[0], w_t.shape[1])  # (M, K*C_in)
            np.matmul(g_rows, w_t, out=cols)
            cols = cols.reshape(batch.stop - batch.start, stop - first, -1)  # (b, rows, Wo*K*C)
            col2im(cols, gx_rows, geo.c_in, batch.start, first, *params)

    run_parts(part, _parts(geo))
    return grad_xp


def _pointwise_grad_input(grad_y, kernel, geo: Geometry, budget: int) -> np.ndarray:
    """1x1, stride 1, one group: each pixel's gradient is ``grad_y @ kernel^T``, written in
    place (every padded pixel is an output pixel, so nothing is added or left unwritten)."""
    dtype = grad_y.dtype
    grad_xp = np.empty((geo.batch, *geo.padded, geo.c_in), dtype)
    w_t = kernel.reshape(geo.c_in, geo.c_out).T  # (C_out, C_in)
    bytes_per_pixel = (geo.c_in + geo.c_out) * dtype.itemsize

    def part(samples: slice) -> None:
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            g_rows = as_rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
            np.matmul(g_rows, w_t, out=as_rows(grad_xp[batch, first:stop], geo.c_in))

    run_parts(part, _parts(geo))
    return grad_xp
