"""Compiled loops (numba) for the kernels NumPy cannot run near memory speed.

Kernels that have them: depthwise and one-channel convolutions, col2im, max pooling and
Adam's update.

A depthwise convolution does ``K`` multiply-adds per output value (9 for 3x3). NumPy has to
make a multiply pass and an add pass over the whole output for every tap, 17 passes, so it
is bound by memory traffic, not arithmetic: ~5x PyTorch's time on the seed's shape, however
the passes are arranged (see ``benchmarks/conv.py``). A compiled loop keeps one output row
in cache while all taps add into it, one pass. Max pooling's backward pass, which NumPy
runs as a compare, a mask update and a masked copy per window tap, is one pass too.

The NumPy paths stay and are the reference the tests hold these loops to. Set the
environment variable ``CONVLENS_COMPILED=0`` (or :data:`ENABLED` to False) to use them; if
numba is not importable, they are used anyway.

Layout: channels last, with each image row seen flat, ``(N, H, W*C)``. Every loop covers
the samples ``[n0, n1)`` of the batch, so :mod:`convlens.ops.workers` splits the batch across
threads as it does for NumPy (the loops release the GIL). Padding is not materialised: a tap
that falls in the zero border is skipped. Indices are cast to unsigned because numba checks a
signed index for a negative wraparound, and that check keeps LLVM from vectorising the inner
loop over channels.
"""

from __future__ import annotations

import os
from functools import cache
from types import SimpleNamespace

import numpy as np

# Read at every call: tests and benchmarks switch it.
ENABLED = os.environ.get("CONVLENS_COMPILED", "1") != "0"


def available() -> bool:
    """True when the compiled loops are switched on and numba can be imported."""
    return ENABLED and kernels() is not None


def as_image_rows(a: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` or ``(N, W, C)``, contiguous, seen as ``(N, H, W*C)`` (``H = 1`` in 1-d)."""
    height = a.shape[1] if a.ndim == 4 else 1
    view = a.view()
    view.shape = (a.shape[0], height, a.shape[-2] * a.shape[-1])  # raises, never copies
    return view


def as_plane(values, one_row) -> tuple:
    """Per-axis numbers of a 1-d or 2-d operation as ``(row axis, column axis)``: a 1-d one is
    a 2-d one on images of one row, whose row axis takes ``one_row`` (1 for a size or step, 0
    for padding)."""
    values = tuple(values)
    return (one_row, *values) if len(values) == 1 else values


@cache
def kernels() -> SimpleNamespace | None:
    """The compiled loops (:mod:`convlens.ops.loops`), or None without numba.

    numba is imported on first use, not with convlens (it takes ~0.5 s).
    """
    try:
        from convlens.ops import loops
    except ImportError:  # pragma: no cover - numba is a dependency; the NumPy paths remain
        return None
    return SimpleNamespace(
        forward=loops.grouped_forward,
        backward=loops.grouped_backward,
        col2im_add=loops.col2im_add,
        single_channel_forward=loops.single_channel_forward,
        single_channel_forward_3x3=loops.single_channel_forward_3x3,
        adam_update=loops.adam_update,
        max_pool_forward=loops.max_pool_forward,
        max_pool_backward=loops.max_pool_backward,
    )
