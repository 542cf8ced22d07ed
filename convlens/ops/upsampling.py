"""Upsampling by integer factors along chosen axes: forward and backward side by side.

Two interpolations, as Keras's ``UpSampling1D/2D/3D`` layers compute them:

* ``"nearest"`` repeats every value ``factor`` times along each axis (Keras calls
  ``ops.repeat``). Its backward pass sums each block of ``factor`` gradients.
* ``"bilinear"`` is linear interpolation along each axis in turn (bilinear on two axes,
  trilinear on three), with half-pixel centres: output ``o`` reads input position
  ``(o + 0.5) / factor - 0.5``, clamped to the edges. That is ``F.interpolate(...,
  align_corners=False)``, which Keras's ``ops.image.resize`` calls on its torch backend, and
  TensorFlow's ``half_pixel_centers`` resize.

Linear interpolation by an integer factor is ``factor`` fixed stencils: output ``i*factor + r``
mixes input ``i`` with its neighbour on one side, with a weight ``d_r = (r + 0.5)/factor - 0.5``
that depends only on the phase ``r``. Each phase is two scaled slices of the input padded by
one edge value at each end, so the whole pass is ``2 * factor`` vectorised multiply-adds per
axis, no gather and no Python loop over positions.

>>> import numpy as np
>>> x = np.array([[[0.0], [4.0]]], np.float32)  # (N=1, W=2, C=1)
>>> upsample_forward(x, (2,), (1,), "bilinear")[0][0, :, 0]
array([0., 1., 3., 4.], dtype=float32)
>>> upsample_forward(x, (2,), (1,), "nearest")[0][0, :, 0]
array([0., 0., 4., 4.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["INTERPOLATIONS", "upsample_forward", "upsample_backward"]

INTERPOLATIONS = ("nearest", "bilinear")


def _phase_offsets(factor: int) -> list[float]:
    """Where output ``i*factor + r`` reads, relative to input ``i``: in (-1/2, 1/2)."""
    return [(r + 0.5) / factor - 0.5 for r in range(factor)]


def _check(x: np.ndarray, size, axes, interpolation: str, name: str):
    size, axes = tuple(int(s) for s in size), tuple(int(a) for a in axes)
    if len(size) != len(axes) or any(s < 1 for s in size):
        raise ValueError(
            f"{name}: `size` must be one positive int per axis in {axes}; received {size}."
        )
    if len(set(a % x.ndim for a in axes)) != len(axes) or any(
        not -x.ndim <= a < x.ndim for a in axes
    ):
        raise ValueError(
            f"{name}: `axes` must be distinct axes of an input of shape {x.shape}; "
            f"received {axes}."
        )
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"{name}: `interpolation` must be one of {', '.join(INTERPOLATIONS)}; "
            f"received {interpolation!r}."
        )
    return size, tuple(a % x.ndim for a in axes)


def _split_axis(a: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """View ``(..., n*factor, ...)`` as ``(..., n, factor, ...)``."""
    return a.reshape(*a.shape[:axis], a.shape[axis] // factor, factor, *a.shape[axis + 1 :])


def _linear_forward(x: np.ndarray, axis: int, factor: int) -> np.ndarray:
    n = x.shape[axis]
    edge = np.concatenate(  # (..., n + 2, ...): one edge value added at each end
        [x.take([0], axis), x, x.take([n - 1], axis)], axis=axis
    )

    def window(start):  # inputs i + start - 1 for i in 0..n-1
        return edge.take(range(start, start + n), axis)

    phases = []
    for d in _phase_offsets(factor):
        d = x.dtype.type(d)
        if d >= 0:  # between input i and i + 1
            phases.append((1 - d) * window(1) + d * window(2))
        else:  # between input i - 1 and i
            phases.append(-d * window(0) + (1 + d) * window(1))
    y = np.stack(phases, axis=axis + 1)  # (..., n, factor, ...)
    return y.reshape(*x.shape[:axis], n * factor, *x.shape[axis + 1 :])


def _linear_backward(grad_y: np.ndarray, axis: int, factor: int) -> np.ndarray:
    g = _split_axis(grad_y, axis, factor)  # (..., n, factor, ...)
    n = g.shape[axis]
    shape = list(g.shape)
    del shape[axis + 1]
    shape[axis] = n + 2
    grad_edge = np.zeros(shape, grad_y.dtype)  # (..., n + 2, ...)

    def window(start):
        index = [slice(None)] * grad_edge.ndim
        index[axis] = slice(start, start + n)
        return grad_edge[tuple(index)]

    for r, d in enumerate(_phase_offsets(factor)):
        d = grad_y.dtype.type(d)
        g_r = g.take(r, axis + 1)  # (..., n, ...)
        if d >= 0:
            window(1)[...] += (1 - d) * g_r
            window(2)[...] += d * g_r
        else:
            window(0)[...] += -d * g_r
            window(1)[...] += (1 + d) * g_r
    grad_x = window(1).copy()
    # the edge copies were the first and last inputs again
    first, last = [slice(None)] * grad_x.ndim, [slice(None)] * grad_x.ndim
    first[axis], last[axis] = slice(0, 1), slice(n - 1, n)
    grad_x[tuple(first)] += grad_edge.take([0], axis)
    grad_x[tuple(last)] += grad_edge.take([n + 1], axis)
    return grad_x


def upsample_forward(x, size: Sequence[int], axes: Sequence[int], interpolation: str = "nearest"):
    """Each axis in ``axes`` grows ``size`` times: ``(N, H, W, C)`` -> ``(N, H*sh, W*sw, C)``.

    Returns ``(y, cache)``; ``cache`` is what :func:`upsample_backward` needs.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    size, axes = _check(x, size, axes, interpolation, "upsample")
    y = x
    for axis, factor in zip(axes, size):
        if factor == 1:
            continue
        if interpolation == "nearest":
            y = np.repeat(y, factor, axis=axis)
        else:
            y = _linear_forward(y, axis, factor)
    return y, (size, axes, interpolation, x.dtype)


def upsample_backward(grad_y, cache) -> np.ndarray:
    """Gradient of :func:`upsample_forward`, shaped like its input."""
    size, axes, interpolation, dtype = cache
    grad = np.asarray(grad_y, dtype)
    for axis, factor in reversed(list(zip(axes, size))):
        if factor == 1:
            continue
        if interpolation == "nearest":
            grad = _split_axis(grad, axis, factor).sum(axis=axis + 1)
        else:
            grad = _linear_backward(grad, axis, factor)
    return grad
