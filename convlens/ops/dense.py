"""The dense (fully connected) layer's maths: forward and backward side by side.

``z = x @ kernel + bias`` on the last axis, any leading axes: every position of a
``(N, ..., in)`` input goes through the same ``(in, units)`` matrix. With ``x2d`` the input
flattened to ``(positions, in)`` and ``g2d`` the gradient to ``(positions, units)``:
``grad_kernel = x2d.T @ g2d``, ``grad_bias = g2d.sum(0)``, ``grad_x = grad_z @ kernel.T``.
float32 stays float32 and float64 stays float64.

Large products run on :mod:`convlens.ops.workers`'s threads, each part with one BLAS thread,
split so that no sum changes (rows of ``x`` and ``grad_z``; rows of ``grad_kernel``): the
result does not depend on the thread count. Left to itself, multithreaded OpenBLAS keeps its
threads spinning for a while after each call, and in training the next layers' worker
threads (the convolution's backward pass after the dense layer's) lost a core to them: 105
against 62 ms for conv2's backward pass in the seed's network.

>>> import numpy as np
>>> x = np.array([[1.0, 2.0]], np.float32)
>>> kernel, bias = np.array([[1.0], [10.0]], np.float32), np.array([0.5], np.float32)
>>> z, cache = dense_forward(x, kernel, bias)
>>> z
array([[21.5]], dtype=float32)
>>> grad_x, grad_kernel, grad_bias = dense_backward(np.ones_like(z), cache)
>>> grad_x.tolist(), grad_kernel.ravel().tolist(), grad_bias.tolist()
([[1.0, 10.0]], [1.0, 2.0], [1.0])
"""

from __future__ import annotations

import numpy as np

from convlens.ops.workers import batch_parts, run_parts

__all__ = ["dense_forward", "dense_backward"]


def _float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def dense_forward(x, kernel, bias=None):
    """``x @ kernel + bias``: ``(..., in)`` -> ``(..., units)``. Returns ``(z, cache)``."""
    x = _float(x)
    kernel = np.asarray(kernel, x.dtype)
    if x.ndim < 1 or kernel.ndim != 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"dense_forward: the kernel must be (in, units) with in = the input's last axis; "
            f"received input shape {x.shape} and kernel shape {kernel.shape}."
        )
    if bias is not None:
        bias = np.asarray(bias, x.dtype)
        if bias.shape != (kernel.shape[1],):
            raise ValueError(
                f"dense_forward: `bias` must have shape ({kernel.shape[1]},); received "
                f"{bias.shape}."
            )
    x2d = x.reshape(-1, x.shape[-1])  # (positions, in)
    z2d = np.empty((x2d.shape[0], kernel.shape[1]), x.dtype)

    def part(rows: slice) -> None:
        np.matmul(x2d[rows], kernel, out=z2d[rows])
        if bias is not None:
            z2d[rows] += bias

    run_parts(part, _parts(x2d.shape[0], kernel.size))
    return z2d.reshape(*x.shape[:-1], kernel.shape[1]), (x, kernel, bias is not None)


def _parts(rows: int, kernel_size: int) -> list[slice]:
    """``rows`` split for a product with ``rows * kernel_size`` multiply-adds."""
    return batch_parts(rows, rows * kernel_size)


def dense_backward(grad_z, cache, need_input_grad: bool = True):
    """``(grad_x or None, grad_kernel, grad_bias or None)`` shaped like ``x``, the kernel and
    the bias."""
    x, kernel, has_bias = cache
    grad_z = np.asarray(grad_z, x.dtype)
    x2d = x.reshape(-1, x.shape[-1])  # (positions, in)
    grad2d = grad_z.reshape(-1, kernel.shape[1])  # (positions, units)
    grad_kernel = np.empty(kernel.shape, x.dtype)
    # rows of grad_kernel: inputs; each keeps its whole sum over positions
    run_parts(
        lambda inputs: np.matmul(x2d[:, inputs].T, grad2d, out=grad_kernel[inputs]),
        _parts(kernel.shape[0], grad2d.size),
    )
    grad_bias = grad2d.sum(axis=0) if has_bias else None
    grad_x = None
    if need_input_grad:
        grad_x2d = np.empty(x2d.shape, x.dtype)
        run_parts(
            lambda rows: np.matmul(grad2d[rows], kernel.T, out=grad_x2d[rows]),
            _parts(grad2d.shape[0], kernel.size),
        )
        grad_x = grad_x2d.reshape(x.shape)
    return grad_x, grad_kernel, grad_bias
