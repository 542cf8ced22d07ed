"""Keras's ``keras.utils`` state helpers: the random generator and the session.

Every initializer, dropout mask and shuffle draws from ``rng()``; automatic names come from
the same session. ``clear_session()`` restarts the names; ``with session(seed=0):`` runs code
in a fresh session and gives the caller's generator and names back untouched afterwards.

>>> from convlens.layers import Dense
>>> with session(seed=0):
...     Dense(1).name
'dense'
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from convlens import session as _session


def set_random_seed(seed: int) -> None:
    """Make weight initialisation, dropout and shuffling reproducible (as ``keras.utils``)."""
    seed = _session.check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _session.current().reseed(seed)


def rng() -> np.random.Generator:
    """The generator of the current session."""
    return _session.current().generator


def clear_session(free_memory: bool = True) -> None:
    """Restart automatic names, as ``keras.utils.clear_session()``: the next ``Dense`` is
    ``dense``. The random stream goes on (Keras's does too: its initializers seed from
    Python's ``random``, which clearing leaves alone). ``free_memory`` is accepted for Keras
    compatibility; convlens holds no graph to free."""
    del free_memory
    _session.current().clear_names()


@contextmanager
def session(seed: int | None = None) -> Iterator[None]:
    """Run the body in a fresh session: its own generator (from ``seed``; fresh entropy when
    None) and names counted from zero. Afterwards the caller's generator continues exactly
    where it was and its names where they were."""
    with _session.fresh(seed):
        yield
