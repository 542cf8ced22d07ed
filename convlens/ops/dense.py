"""The dense (fully connected) layer's maths: forward and backward side by side.

``z = x @ kernel + bias`` on the last axis, any leading axes: every position of a
``(N, ..., in)`` input goes through the same ``(in, units)`` matrix. With ``x2d`` the input
flattened to ``(positions, in)`` and ``g2d`` the gradient to ``(positions, units)``:
``grad_kernel = x2d.T @ g2d``, ``grad_bias = g2d.sum(0)``, ``grad_x = grad_z @ kernel.T``.
float32 stays float32 and float64 stays float64.

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
    z = x @ kernel
    if bias is not None:
        bias = np.asarray(bias, x.dtype)
        if bias.shape != (kernel.shape[1],):
            raise ValueError(
                f"dense_forward: `bias` must have shape ({kernel.shape[1]},); received "
                f"{bias.shape}."
            )
        z += bias
    return z, (x, kernel, bias is not None)


def dense_backward(grad_z, cache, need_input_grad: bool = True):
    """``(grad_x or None, grad_kernel, grad_bias or None)`` shaped like ``x``, the kernel and
    the bias."""
    x, kernel, has_bias = cache
    grad_z = np.asarray(grad_z, x.dtype)
    x2d = x.reshape(-1, x.shape[-1])  # (positions, in)
    grad2d = grad_z.reshape(-1, kernel.shape[1])  # (positions, units)
    grad_kernel = x2d.T @ grad2d
    grad_bias = grad2d.sum(axis=0) if has_bias else None
    grad_x = grad_z @ kernel.T if need_input_grad else None
    return grad_x, grad_kernel, grad_bias
