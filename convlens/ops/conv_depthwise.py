"""The depthwise convolution path: one input channel per group (``groups == C_in``).

With multiplier ``m = C_out / G``, output channel ``g*m + j`` is ``x[..., g] * w[tap, g, j]``
summed over taps. The multiply-accumulate runs over whole chunks with the innermost loop over
``(width * G)`` contiguous values, because a matmul with ``K*C_in/groups = K`` rows wastes BLAS;
the multiplier axis is looped. ``budget`` is the chunk size in bytes,
:data:`convlens.ops.conv.DEPTHWISE_CHUNK_BYTES` when called from there. The batch is split
into one contiguous part per core (:mod:`convlens.ops.workers`).
"""

from __future__ import annotations

import math

import numpy as np

from convlens.ops.conv_geometry import kernel_taps
from convlens.ops.workers import batch_parts, run_parts


def _row_weights(w: np.ndarray, width: int) -> np.ndarray:
    """``(K, G, m)`` weights repeated along the last spatial axis: ``(K, m, width, G)``.

    Multiplying a ``(b, ..., width, G)`` tap slice by a ``(G,)`` vector would run NumPy's inner
    loop over only G values; against a ``(width, G)`` block it runs over ``width * G``.
    """
    taps, groups, mult = w.shape
    rows = w.transpose(0, 2, 1)[:, :, None, :]  # (K, m, 1, G)
    return np.ascontiguousarray(np.broadcast_to(rows, (taps, mult, width, groups)))


def _parts(geo) -> list[slice]:
    return batch_parts(geo.batch, geo.batch * math.prod(geo.out) * geo.taps * geo.c_out)


def depthwise_forward(xp, kernel, geo, bias, budget):
    mult = geo.cog
    w = kernel.reshape(geo.taps, geo.groups, mult)  # (K, G, m)
    y = np.empty(geo.out_shape, xp.dtype)
    taps = kernel_taps(geo.k)

    def part(samples: slice) -> None:
        acc = tmp = rows = None
        for batch, first, stop in geo.chunks(geo.c_out * xp.itemsize, budget, samples):
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

    run_parts(part, _parts(geo))
    return y


def depthwise_grad_kernel(xp, grad_y, geo, budget):
    mult = geo.cog
    taps = kernel_taps(geo.k)

    def part(samples: slice) -> np.ndarray:
        grad_w = np.zeros((geo.taps, geo.groups, mult), xp.dtype)  # (K, G, m)
        for batch, first, stop in geo.chunks(geo.c_out * xp.itemsize, budget, samples):
            g_chunk = grad_y[batch, first:stop]
            g_chunk = g_chunk.reshape(*g_chunk.shape[:-1], geo.groups, mult)  # (b, *out, G, m)
            lead = "abcd"[: g_chunk.ndim - 2]  # batch and spatial axes, summed over
            for i, tap in enumerate(taps):
                x_tap = xp[(batch, *geo.tap_index(first, stop, tap))]  # (b, *out_chunk, G)
                grad_w[i] += np.einsum(f"{lead}g,{lead}gj->gj", x_tap, g_chunk)
        return grad_w

    sums = run_parts(part, _parts(geo))  # each part's sum; added in batch order
    grad_w = sums[0]
    for other in sums[1:]:
        grad_w += other
    return grad_w.reshape(*geo.k, 1, geo.c_out)  # (*k, 1, G*m)


def depthwise_grad_input(grad_y, kernel, geo, budget):
    mult = geo.cog
    grad_xp = np.zeros((geo.batch, *geo.padded, geo.c_in), grad_y.dtype)
    w = kernel.reshape(geo.taps, geo.groups, mult)  # (K, G, m)
    taps = kernel_taps(geo.k)

    # Parts own whole samples, so no two threads add into the same input pixel.
    def part(samples: slice) -> None:
        tmp = rows = None
        for batch, first, stop in geo.chunks(geo.c_out * grad_y.itemsize, budget, samples):
            g_chunk = grad_y[batch, first:stop]
            g_chunk = g_chunk.reshape(*g_chunk.shape[:-1], geo.groups, mult)  # (b, *out, G, m)
            if tmp is None or tmp.shape != g_chunk.shape[:-1]:
                tmp = np.empty(g_chunk.shape[:-1], grad_y.dtype)
            if rows is None or rows.shape[2] != tmp.shape[-2]:
                rows = _row_weights(w, tmp.shape[-2])  # (K, m, width, G)
            for i, tap in enumerate(taps):
                target = grad_xp[(batch, *geo.tap_index(first, stop, tap))]  # (b, *out, G)
                for j in range(mult):
                    np.multiply(g_chunk[..., j], rows[i, j], out=tmp)
                    target += tmp

    run_parts(part, _parts(geo))
    return grad_xp
