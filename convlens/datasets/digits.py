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

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["DIGITS_FILE", "PAGE_DIGITS_PER_CLASS", "page_digits", "sample_digits"]

DIGITS_FILE = Path(__file__).resolve().parent / "mnist_digits.npz"
# With the test set on the machine the page offers ten of each digit.
PAGE_DIGITS_PER_CLASS = 10


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


def page_digits(per_class: int = PAGE_DIGITS_PER_CLASS) -> tuple[np.ndarray, np.ndarray, str]:
    """The digits the web page offers, ``(images, labels, source)``: when the MNIST test set
    is on this machine (``CONVLENS_DATA`` or the download cache, see
    :func:`convlens.datasets.mnist.local_test_set`; nothing is downloaded), the first
    ``per_class`` images of each digit, in rounds (``0, 1, ..., 9, 0, 1, ...``, as the shipped
    ones: with the official files the first 50 are the shipped 50); otherwise the 50 shipped
    digits. ``source`` says which, in words (and why the files found could not be used).
    Read once per process for each ``CONVLENS_DATA`` and cache folder. Copies: the caller may
    change them."""
    from convlens.datasets.mnist import cache_dir

    images, labels, source = _page_digits(os.environ.get("CONVLENS_DATA"), str(cache_dir()),
                                          per_class)
    return images.copy(), labels.copy(), source


@lru_cache(maxsize=4)
def _page_digits(data_variable, cache_folder, per_class: int):
    # The arguments are the cache's key: local_test_set reads the same two places.
    from convlens.datasets.mnist import local_test_set

    shipped = "the 50 MNIST test digits shipped with convlens"
    try:
        found = local_test_set()
    except ValueError as error:
        images, labels, _ = _load()
        return images, labels, f"{shipped} (the test set found could not be read: {error})"
    if found is None:
        images, labels, _ = _load()
        return images, labels, shipped
    images, labels, where = found
    order = _rounds(labels, per_class)
    return images[order], labels[order], f"{len(order)} MNIST test digits from {where}"


def _rounds(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` images of each label, round by round."""
    firsts = [np.flatnonzero(labels == digit)[:per_class] for digit in range(10)]
    return np.array([first[r] for r in range(per_class) for first in firsts if r < len(first)],
                    dtype=np.int64)
