"""Sizes and strided views shared by every convolution path of :mod:`convlens.ops.conv`.

A :class:`Geometry` describes one convolution whose input is already zero-padded; it splits the
work into cache-sized chunks (the byte budget is the caller's: :mod:`convlens.ops.conv` owns the
tuned chunk sizes) and names the input slice each kernel tap reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convlens.shapes import conv_output_length


class Geometry:
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
            conv_output_length(p, k, "valid", s, d)
            for p, k, s, d in zip(self.padded, self.k, self.strides, self.dilation, strict=True)
        )

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.batch, *self.out, self.c_out)

    def chunks(
        self, bytes_per_pixel: int, budget: int, samples: slice | None = None
    ) -> Iterator[tuple[slice, int, int]]:
        """Yield ``(batch slice, first, stop)`` along output axis 0, about ``budget`` bytes each.

        ``samples`` (default: the whole batch) is the contiguous part of the batch to cover.
        """
        begin, end = (0, self.batch) if samples is None else (samples.start, samples.stop)
        rest = math.prod(self.out[1:])
        per_sample = max(1, self.out[0] * rest * bytes_per_pixel)
        if per_sample <= budget:
            step = max(1, budget // per_sample)
            for n in range(begin, end, step):
                yield slice(n, min(n + step, end)), 0, self.out[0]
            return
        rows = max(1, budget // max(1, rest * bytes_per_pixel))
        for n in range(begin, end):
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


def as_rows(a: np.ndarray, columns: int) -> np.ndarray:
    """View of a contiguous block as ``(-1, columns)``; raises instead of silently copying."""
    view = a.view()
    view.shape = (-1, columns)
    return view


def kernel_taps(k: Sequence[int]) -> list[tuple[int, ...]]:
    return list(np.ndindex(*k))


def reuse_buffer(buffer: np.ndarray | None, size: int, dtype) -> np.ndarray:
    """Reuse one flat work buffer across chunks (the last chunk may be smaller)."""
    if buffer is None or buffer.size < size:
        return np.empty(size, dtype)
    return buffer
