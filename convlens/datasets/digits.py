"""Fifty real MNIST digits shipped inside the package, so the web page and the demo show a
real digit with no download and no data folder.

They are the first five images of each digit 0-9 of the official MNIST test set
(``t10k-images-idx3-ubyte``), written by ``scripts/make_digits.py``; ``test_indices`` gives
each one's position in that set.

>>> images, labels, test_indices = sample_digits()
>>> images.shape, images.dtype, labels[:10].tolist()
((50, 28, 28), dtype('uint8'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["DIGITS_FILE", "sample_digits"]

DIGITS_FILE = Path(__file__).resolve().parent / "mnist_digits.npz"


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        return data["images"], data["labels"], data["test_indices"]


def sample_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, labels, test_indices)``: uint8 ``(50, 28, 28)`` images (0 = background,
    255 = ink), their labels, and their indices in the MNIST test set. Copies: the caller
    may change them."""
    images, labels, indices = _load()
    return images.copy(), labels.copy(), indices.copy()
