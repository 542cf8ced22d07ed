"""The depthwise convolution path: one input channel per group (``groups == C_in``).

With multiplier ``m = C_out / G``, output channel ``g*m + j`` is ``x[..., g] * w[tap, g, j]``
summed over taps: a multiply-accumulate, because a matmul with ``K*C_in/groups = K`` rows wastes
BLAS. ``budget`` is the chunk size in bytes,
:data:`convlens.ops.conv.DEPTHWISE_CHUNK_BYTES` when called from there. The batch is split
into one contiguous part per core (:mod:`convlens.ops.workers`).

Two ways to run it, picked by the strides:

* **Stride 1: flat taps.** Seen as one flat vector per sample, the padded input holds, for tap
  ``t``, the values every output of a row range reads in one contiguous slice, shifted by the
  tap's offset ``sum(t_a * dilation_a * step_a)`` (``step_a`` the padded strides, in values).
  So each tap is one long contiguous multiply by its weights repeated every ``G`` values, and
  one add. The accumulator is laid out like the padded input: the ``dilation*(k-1)`` positions
  per row that lie past the last output are computed and dropped (2 of 28 columns for the
  seed's 26x26 images). The gradients use the same slices: the kernel's as one
  multiply-and-sum per tap, the input's as one multiply-and-add per tap into the padded
  gradient.
* **Any stride: shifted views.** The same multiply-accumulate on ``(b, *out_chunk, G)`` views
  of the input, the innermost loop over ``(width * G)`` contiguous values.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convlens.ops.conv_geometry import kernel_taps, reuse_buffer
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


def _strided_forward(xp, kernel, geo, bias, budget):
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


def _strided_grad_kernel(xp, grad_y, geo, budget):
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


def _strided_grad_input(grad_y, kernel, geo, budget):
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


# --------------------------------------------------------------------------------------------
# stride 1: flat taps
# --------------------------------------------------------------------------------------------


class _FlatTaps:
    """Where each tap reads in one padded sample seen as a flat vector (stride 1 only)."""

    def __init__(self, geo) -> None:
        self.groups = geo.groups
        steps = [geo.groups]  # values between neighbours along each spatial axis, last first
        for size in reversed(geo.padded[1:]):
            steps.append(steps[-1] * size)
        self.steps = steps[::-1]
        self.offsets = [
            sum(t * d * s for t, d, s in zip(tap, geo.dilation, self.steps, strict=True))
            for tap in kernel_taps(geo.k)
        ]
        self.out_rest = geo.out[1:]
        # flat length spanned by one row of output axis 0 (all later axes, with their junk)
        self.row = sum((o - 1) * s for o, s in zip(self.out_rest, self.steps[1:])) + geo.groups

    def start(self, first: int) -> int:
        return first * self.steps[0]

    def length(self, rows: int) -> int:
        return (rows - 1) * self.steps[0] + self.row

    def outputs(self, flat: np.ndarray, rows: int) -> np.ndarray:
        """The output positions of ``flat`` ``(b, length)``: a view ``(b, rows, *out[1:], G)``."""
        item = flat.itemsize
        shape = (flat.shape[0], rows, *self.out_rest, self.groups)
        strides = (flat.strides[0], *(s * item for s in self.steps), item)
        return as_strided(flat, shape, strides)

    def tiles(self, w: np.ndarray, length: int) -> np.ndarray:
        """``(K, G, m)`` weights as ``(K, m, length)``: each tap's ``G`` weights repeated."""
        taps, groups, mult = w.shape
        rows = w.transpose(0, 2, 1)[:, :, None, :]  # (K, m, 1, G)
        tiled = np.broadcast_to(rows, (taps, mult, length // groups, groups))
        return np.ascontiguousarray(tiled).reshape(taps, mult, length)


def _flat_chunks(geo, itemsize, budget, samples):
    # per output pixel a chunk holds G accumulated and G product values; the input is read
    # through slices
    return geo.chunks(2 * geo.groups * itemsize, budget, samples)


def _flat_grad_rows(grad_y, batch, first, stop, flat, scratch):
    """``grad_y[batch, first:stop]`` laid out like the flat accumulator: ``(m, b, length)``.

    The dropped positions hold zeros, so a product with them adds nothing.
    """
    mult = grad_y.shape[-1] // flat.groups
    b, rows = batch.stop - batch.start, stop - first
    length = flat.length(rows)
    scratch = reuse_buffer(scratch, mult * b * length, grad_y.dtype)
    rows_flat = scratch[: mult * b * length].reshape(mult, b, length)
    rows_flat.fill(0)
    g = grad_y[batch, first:stop]
    g = g.reshape(*g.shape[:-1], flat.groups, mult)  # (b, rows, *out, G, m)
    for j in range(mult):
        np.copyto(flat.outputs(rows_flat[j], rows), g[..., j])
    return rows_flat, scratch


def _flat_forward(xp, kernel, geo, bias, budget):
    mult = geo.cog
    w = kernel.reshape(geo.taps, geo.groups, mult)  # (K, G, m)
    flat = _FlatTaps(geo)
    src = xp.reshape(geo.batch, -1)  # (N, prod(padded) * G)
    y = np.empty(geo.out_shape, xp.dtype)
    y_split = y.reshape(*y.shape[:-1], geo.groups, mult)  # (N, *out, G, m)
    if bias is not None:
        # bias of output channel g*m + j along the last output axis: (m, out[-1], G)
        bias_rows = np.broadcast_to(
            bias.reshape(geo.groups, mult).T[:, None, :], (mult, geo.out[-1], geo.groups)
        )
        bias_rows = np.ascontiguousarray(bias_rows)

    def part(samples: slice) -> None:
        tiles = scratch = None
        for batch, first, stop in _flat_chunks(geo, xp.itemsize, budget, samples):
            b, rows = batch.stop - batch.start, stop - first
            length, start = flat.length(rows), flat.start(first)
            if tiles is None:  # the first chunk is the longest
                tiles = flat.tiles(w, length)  # (K, m, length)
            scratch = reuse_buffer(scratch, 2 * b * length, xp.dtype)
            acc = scratch[: b * length].reshape(b, length)
            product = scratch[b * length : 2 * b * length].reshape(b, length)
            for j in range(mult):
                for i, offset in enumerate(flat.offsets):
                    x_tap = src[batch, start + offset : start + offset + length]  # (b, length)
                    if i == 0:
                        np.multiply(x_tap, tiles[i, j, :length], out=acc)
                    else:
                        np.multiply(x_tap, tiles[i, j, :length], out=product)
                        acc += product
                out = y_split[batch, first:stop, ..., j]  # (b, rows, *out[1:], G)
                if bias is None:
                    np.copyto(out, flat.outputs(acc, rows))
                else:
                    # [:width]: in 1-d the last axis is the one chunked
                    np.add(flat.outputs(acc, rows), bias_rows[j, : out.shape[-2]], out=out)

    run_parts(part, _parts(geo))
    return y


def _flat_grad_kernel(xp, grad_y, geo, budget):
    mult = geo.cog
    flat = _FlatTaps(geo)
    src = xp.reshape(geo.batch, -1)  # (N, prod(padded) * G)

    def part(samples: slice) -> np.ndarray:
        sums = scratch = None
        for batch, first, stop in _flat_chunks(geo, xp.itemsize, budget, samples):
            length, start = flat.length(stop - first), flat.start(first)
            if sums is None:  # the first chunk is the longest
                sums = np.zeros((geo.taps, mult, length), xp.dtype)  # (K, m, length)
            g_rows, scratch = _flat_grad_rows(grad_y, batch, first, stop, flat, scratch)
            for i, offset in enumerate(flat.offsets):
                x_tap = src[batch, start + offset : start + offset + length]  # (b, length)
                for j in range(mult):
                    sums[i, j, :length] += np.einsum("bl,bl->l", x_tap, g_rows[j])
        # positions repeat every G values: fold them onto the channels
        grad_w = sums.reshape(geo.taps, mult, -1, geo.groups).sum(axis=2)  # (K, m, G)
        return grad_w.transpose(0, 2, 1)  # (K, G, m)

    parts = run_parts(part, _parts(geo))  # each part's sum; added in batch order
    grad_w = parts[0].copy()
    for other in parts[1:]:
        grad_w += other
    return grad_w.reshape(*geo.k, 1, geo.c_out)  # (*k, 1, G*m)


def _flat_grad_input(grad_y, kernel, geo, budget):
    mult = geo.cog
    w = kernel.reshape(geo.taps, geo.groups, mult)  # (K, G, m)
    flat = _FlatTaps(geo)
    grad_xp = np.zeros((geo.batch, *geo.padded, geo.c_in), grad_y.dtype)
    target = grad_xp.reshape(geo.batch, -1)  # (N, prod(padded) * G)

    # Parts own whole samples, so no two threads add into the same input value.
    def part(samples: slice) -> None:
        tiles = scratch = product = None
        for batch, first, stop in _flat_chunks(geo, grad_y.itemsize, budget, samples):
            b, start = batch.stop - batch.start, flat.start(first)
            length = flat.length(stop - first)
            if tiles is None:  # the first chunk is the longest
                tiles = flat.tiles(w, length)  # (K, m, length)
                product = np.empty((b, length), grad_y.dtype)
            g_rows, scratch = _flat_grad_rows(grad_y, batch, first, stop, flat, scratch)
            out = product[:b, :length]
            for i, offset in enumerate(flat.offsets):
                for j in range(mult):
                    np.multiply(g_rows[j], tiles[i, j, :length], out=out)
                    target[batch, start + offset : start + offset + length] += out

    run_parts(part, _parts(geo))
    return grad_xp


# --------------------------------------------------------------------------------------------
# the path's entry points
# --------------------------------------------------------------------------------------------


def _stride_one(geo) -> bool:
    return all(s == 1 for s in geo.strides)


def depthwise_forward(xp, kernel, geo, bias, budget):
    if _stride_one(geo):
        return _flat_forward(xp, kernel, geo, bias, budget)
    return _strided_forward(xp, kernel, geo, bias, budget)


def depthwise_grad_kernel(xp, grad_y, geo, budget):
    if _stride_one(geo):
        return _flat_grad_kernel(xp, grad_y, geo, budget)
    return _strided_grad_kernel(xp, grad_y, geo, budget)


def depthwise_grad_input(grad_y, kernel, geo, budget):
    if _stride_one(geo):
        return _flat_grad_input(grad_y, kernel, geo, budget)
    return _strided_grad_input(grad_y, kernel, geo, budget)
