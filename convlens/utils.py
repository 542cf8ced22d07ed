"""Process-wide helpers: the random generator every initializer, dropout and shuffle draws from."""

from __future__ import annotations

import random

import numpy as np

_generator = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Make weight initialisation, dropout and shuffling reproducible (as ``keras.utils``)."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int; received: {seed!r}.")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    _generator = np.random.default_rng(int(seed))


def rng() -> np.random.Generator:
    return _generator
