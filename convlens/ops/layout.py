"""Operations that move values without arithmetic: zero padding, cropping, permuting axes.

Zero padding and cropping are each other's backward pass: the gradient of padding is the
crop of the padded border, the gradient of cropping is the cropped border filled with zeros.
Both take one ``(before, after)`` pair per axis of ``x`` (batch and channel axes included,
usually ``(0, 0)``), so the caller decides which axes are spatial (``data_format``).

>>> import numpy as np
>>> x = np.arange(6, dtype=np.float32).reshape(1, 6, 1)
>>> crop_forward(x, [(0, 0), (1, 2), (0, 0)])[0][0, :, 0]
array([1., 2., 3.], dtype=float32)
>>> permute_forward(np.zeros((2, 3, 4, 5)), (3, 1, 2))[0].shape
(2, 5, 3, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "zero_pad_forward", "zero_pad_backward", "crop_forward", "crop_backward",
    "permute_forward", "permute_backward",
]  # fmt: skip

Pairs = Sequence[tuple[int, int]]


def _float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _pairs(x: np.ndarray, pairs: Pairs, name: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple((int(a), int(b)) for a, b in pairs)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != x.ndim or any(a < 0 or b < 0 for a, b in pairs):
        raise ValueError(
            f"{name}: expects one (before, after) pair of ints >= 0 per axis of the input of "
            f"shape {x.shape}; received {pairs or 'something else'}."
        )
    return pairs


def _inner(pairs, shape) -> tuple[slice, ...]:
    """The slices that drop ``before`` and ``after`` entries of each axis of ``shape``."""
    return tuple(slice(a, n - b) for (a, b), n in zip(pairs, shape, strict=True))


def zero_pad_forward(x, pads: Pairs):
    """Add ``before`` zeros and ``after`` zeros on each axis. Returns ``(y, cache)``."""
    x = _float(x)
    pads = _pairs(x, pads, "zero_pad")
    return np.pad(x, pads), pads


def zero_pad_backward(grad_y, cache) -> np.ndarray:
    """The gradient of the values that were not padding: ``grad_y`` without its border."""
    return np.ascontiguousarray(grad_y[_inner(cache, grad_y.shape)])


def crop_forward(x, crops: Pairs):
    """Remove ``before`` and ``after`` entries from each axis. Returns ``(y, cache)``."""
    x = _float(x)
    crops = _pairs(x, crops, "crop")
    if any(a + b >= n for (a, b), n in zip(crops, x.shape) if a or b):
        raise ValueError(
            f"crop: cropping {crops} from an input of shape {x.shape} leaves no values on some "
            "axis; crop less."
        )
    return np.ascontiguousarray(x[_inner(crops, x.shape)]), crops


def crop_backward(grad_y, cache) -> np.ndarray:
    """The cropped-away border had no effect: its gradient is zero."""
    return np.pad(grad_y, cache)


def permute_forward(x, dims: Sequence[int]):
    """Keras's ``Permute(dims)``: ``dims`` is a permutation of the non-batch axes, from 1.

    ``(N, a_1, ..., a_k)`` -> ``(N, a_dims[0], ..., a_dims[k-1])``. Returns ``(y, cache)``.
    """
    x = np.asarray(x)
    dims = tuple(int(d) for d in dims)
    if sorted(dims) != list(range(1, x.ndim)):
        raise ValueError(
            f"permute: `dims` must be a permutation of 1..{x.ndim - 1} (the axes of one sample "
            f"of shape {x.shape[1:]}); received {dims}."
        )
    order = (0, *dims)
    return x.transpose(order), order


def permute_backward(grad_y, cache) -> np.ndarray:
    """Undo the permutation: axis ``order[i]`` of the input is axis ``i`` of the output."""
    return grad_y.transpose(np.argsort(cache))
