"""The single-input-channel convolution path (``C_in == 1``, so ``groups == 1``).

Patches are built tap-major, ``(K, M)``, with one contiguous copy per tap; the GEMM reads them
transposed, so there is no per-pixel gather of ``K = prod(k)`` scattered values. ``budget`` is the
chunk size in bytes, :data:`convlens.ops.conv.SINGLE_CHANNEL_CHUNK_BYTES` when called from there.
The batch is split into one contiguous part per core (:mod:`convlens.ops.workers`).
"""

from __future__ import annotations

import math

import numpy as np

from convlens.ops import compiled
from convlens.ops.conv_geometry import as_rows, kernel_taps, reuse_buffer
from convlens.ops.workers import batch_parts, run_parts


def _patches(xp, geo, batch, first, stop, scratch, ones_row=False):
    """Tap-major patches ``(K, M)``; with ``ones_row`` a row of ones is appended (bias)."""
    taps = kernel_taps(geo.k)
    b = batch.stop - batch.start
    shape = (geo.taps + ones_row, b, stop - first, *geo.out[1:])
    scratch = reuse_buffer(scratch, math.prod(shape), xp.dtype)
    patches = scratch[: math.prod(shape)].reshape(shape)  # (K, b, *out_chunk)
    for i, tap in enumerate(taps):
        np.copyto(patches[i], xp[(batch, *geo.tap_index(first, stop, tap), 0)])
    if ones_row:
        patches[-1] = 1
    return patches.reshape(shape[0], -1), scratch  # (K, M)


def _parts(geo) -> list[slice]:
    return batch_parts(geo.batch, geo.batch * math.prod(geo.out) * geo.taps * geo.c_out)


def single_channel_forward(xp, kernel, geo, bias, budget):
    if len(geo.k) <= 2 and compiled.available():
        return _compiled_forward(xp, kernel, geo, bias)
    y = np.empty(geo.out_shape, xp.dtype)
    w = kernel.reshape(geo.taps, geo.c_out)  # (K, C_out)
    if bias is not None:
        # The bias rides in the GEMM as one more row (K=10 instead of 9), saving a pass over y.
        w = np.concatenate([w, bias[None]])  # (K+1, C_out)

    def part(samples: slice) -> None:
        scratch = None
        bytes_per_pixel = (geo.taps + geo.c_out) * xp.itemsize
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            patches, scratch = _patches(xp, geo, batch, first, stop, scratch, bias is not None)
            np.matmul(patches.T, w, out=as_rows(y[batch, first:stop], geo.c_out))  # (M, C_out)

    run_parts(part, _parts(geo))
    return y


def single_channel_grad_kernel(xp, grad_y, geo, with_bias, budget):
    # With the bias, the patches' row of ones makes the GEMM's last row the bias gradient.
    def part(samples: slice) -> np.ndarray:
        grad_w = np.zeros((geo.taps + with_bias, geo.c_out), xp.dtype)  # (K [+1], C_out)
        product = np.empty_like(grad_w)
        scratch = None
        bytes_per_pixel = (geo.taps + geo.c_out) * xp.itemsize
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            patches, scratch = _patches(xp, geo, batch, first, stop, scratch, ones_row=with_bias)
            np.matmul(patches, as_rows(grad_y[batch, first:stop], geo.c_out), out=product)
            grad_w += product
        return grad_w

    sums = run_parts(part, _parts(geo))  # each part's sum; added in batch order
    grad_w = sums[0]
    for other in sums[1:]:
        grad_w += other
    grad_b = grad_w[-1].copy() if with_bias else None
    return grad_w[: geo.taps].reshape(*geo.k, 1, geo.c_out), grad_b


def single_channel_grad_input(grad_y, kernel, geo, budget):
    grad_xp = np.zeros((geo.batch, *geo.padded, 1), grad_y.dtype)
    w = kernel.reshape(geo.taps, geo.c_out)  # (K, C_out)
    taps = kernel_taps(geo.k)

    # Parts own whole samples, so no two threads add into the same input pixel.
    def part(samples: slice) -> None:
        bytes_per_pixel = (geo.taps + geo.c_out) * grad_y.itemsize
        for batch, first, stop in geo.chunks(bytes_per_pixel, budget, samples):
            g_rows = as_rows(grad_y[batch, first:stop], geo.c_out)  # (M, C_out)
            cols = w @ g_rows.T  # (K, M)
            cols = cols.reshape(
                geo.taps, batch.stop - batch.start, stop - first, *geo.out[1:]
            )  # (K, b, *out_chunk)
            for i, tap in enumerate(taps):
                grad_xp[(batch, *geo.tap_index(first, stop, tap), 0)] += cols[i]

    run_parts(part, _parts(geo))
    return grad_xp


def _compiled_forward(xp, kernel, geo, bias):
    """1-d and 2-d: :mod:`convlens.ops.compiled`'s loops.

    For the seed's first layer the GEMM above, with only ``K = 10`` rows, runs far below
    BLAS's speed (2 ms on one core for 28 M multiply-adds, after the patches are built); the
    loops read the input rows in place and write the 11 MB output once (1.1-1.2 ms with two
    threads, against 2.5 ms). A kernel of at most 3x3 taps is one block of nine, summed in
    registers; a larger one goes three taps of a row per pass. Missing taps are zeros, read
    from extra zero rows and columns below and right of the padded input.
    """
    (kh, kw), (sh, sw), (dh, dw) = (compiled.as_plane(v, 1) for v in (geo.k, geo.strides,
                                                                      geo.dilation))
    planes = compiled.as_image_rows(xp)  # (N, Hp, Wp)
    # At most 3x3 taps: one block of nine, zero rows below a shorter kernel; else rows of
    # three taps each.
    rows = 3 if kh <= 3 and kw <= 3 else kh
    kw3 = -(-kw // 3) * 3
    w3 = np.zeros((rows, kw3, geo.c_out), xp.dtype)
    w3[:kh, :kw] = kernel.reshape(kh, kw, geo.c_out)
    if rows > kh or kw3 > kw:  # the zero taps read past the padded input
        planes = np.pad(planes, ((0, 0), (0, (rows - kh) * dh), (0, (kw3 - kw) * dw)))
    b = np.zeros(geo.c_out, xp.dtype) if bias is None else bias
    y = np.empty(geo.out_shape, xp.dtype)
    y_rows = compiled.as_image_rows(y)
    loops = compiled.kernels()
    block = w3.shape[:2] == (3, 3)
    loop = loops.single_channel_forward_3x3 if block else loops.single_channel_forward

    def part(samples: slice) -> None:
        loop(planes, w3, b, y_rows, samples.start, samples.stop, sh, sw, dh, dw)

    run_parts(part, _parts(geo))
    return y
