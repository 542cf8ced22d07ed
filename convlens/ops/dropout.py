"""Dropout masks, plain and spatial, and the masked pass: forward and backward side by side.

A mask holds ``0`` for a dropped value and ``1 / (1 - rate)`` for a kept one, so the expected
output equals the input (inverted dropout, as Keras). It is drawn with the shape Keras calls
``noise_shape`` and broadcast over the input: spatial dropout draws one value per sample and
channel, ``(N, 1, ..., 1, C)``, so a whole feature map is kept or dropped together (Tompson et
al., 2015), which is what Keras's ``SpatialDropout1D/2D/3D`` do. ``rate == 1`` drops
everything (an all-zero mask) instead of dividing by zero, as Keras does.

The random numbers come from the generator the caller passes (the session's, or a layer's own
seeded one): ``generator.random(noise_shape, float32) >= rate`` keeps a value.

>>> import numpy as np
>>> spatial_noise_shape((8, 5, 5, 3), channel_axis=-1)
(8, 1, 1, 3)
>>> mask = dropout_mask(np.random.default_rng(0), (2, 1, 3), 0.5)
>>> sorted(set(mask.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "resolve_noise_shape", "spatial_noise_shape", "dropout_mask", "dropout_forward",
    "dropout_backward",
]  # fmt: skip


def resolve_noise_shape(x_shape: Sequence[int], noise_shape) -> tuple[int, ...]:
    """Keras's ``noise_shape``: ``None`` entries (or ``None`` itself) take the input's size."""
    if noise_shape is None:
        return tuple(x_shape)
    noise_shape = tuple(noise_shape)
    if len(noise_shape) != len(x_shape) or any(
        n is not None and n not in (1, s) for n, s in zip(noise_shape, x_shape)
    ):
        raise ValueError(
            f"dropout: `noise_shape` must have one entry per input axis, each None, 1 or the "
            f"input's size; received noise_shape={noise_shape} for input shape "
            f"{tuple(x_shape)}."
        )
    return tuple(s if n is None else int(n) for n, s in zip(noise_shape, x_shape))


def spatial_noise_shape(x_shape: Sequence[int], channel_axis: int = -1) -> tuple[int, ...]:
    """One draw per sample and channel: ``(N, 1, ..., 1, C)`` (or ``(N, C, 1, ..., 1)``)."""
    x_shape = tuple(x_shape)
    channel_axis %= len(x_shape)
    if len(x_shape) < 3 or channel_axis == 0:
        raise ValueError(
            f"spatial dropout: needs an input (N, *spatial, C) with at least one spatial axis "
            f"and the channels off the batch axis; received shape {x_shape} and channel axis "
            f"{channel_axis}."
        )
    return tuple(
        s if axis in (0, channel_axis) else 1 for axis, s in enumerate(x_shape)
    )


def dropout_mask(generator: np.random.Generator, shape: Sequence[int], rate: float,
                 dtype=np.float32) -> np.ndarray:
    """``0`` with probability ``rate``, else ``1 / (1 - rate)``; all zeros when ``rate == 1``."""
    if not 0 <= rate <= 1:
        raise ValueError(f"dropout: `rate` must be in [0, 1]; received rate={rate!r}.")
    dtype = np.dtype(dtype)
    if rate == 1:
        return np.zeros(tuple(shape), dtype)
    keep = generator.random(tuple(shape), dtype=np.float32) >= rate
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - rate))


def dropout_forward(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x * mask``, the mask broadcast from its noise shape."""
    return x * mask


def dropout_backward(grad_y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A dropped value had no effect (gradient 0); a kept one was scaled by ``1 / (1 - rate)``."""
    return grad_y * mask
