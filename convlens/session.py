"""The session: the random generator and the automatic-name counters, in one object.

Everything random in convlens (initializers, dropout, shuffling) draws from
``current().generator`` and every automatic name (``conv2d_1``, ``sequential``, ``adam_2``)
comes from ``current().unique_name``. There is one session per process (per thread, as
``contextvars`` keeps it) until ``fresh(seed)`` runs code in a new one and puts the
caller's session back afterwards, untouched. The public doors are ``convlens.utils``:
``set_random_seed``, ``rng``, ``clear_session`` and ``session``.

>>> with fresh(seed=0) as inner:
...     inner.unique_name("dense"), inner.unique_name("dense")
('dense', 'dense_1')
"""

from __future__ import annotations

import contextvars
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def check_seed(seed, allow_none: bool = False) -> int | None:
    """``seed`` as an int, or a TypeError quoting it."""
    if seed is None and allow_none:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        expected = "an int or None" if allow_none else "an int"
        raise TypeError(f"`seed` must be {expected}; received: {seed!r}.")
    if seed < 0:
        raise ValueError(f"`seed` must be >= 0 (NumPy's generators take no negative seed); "
                         f"received: seed={seed!r}.")
    return int(seed)


class Session:
    """One random generator and one table of automatic-name counts (Keras keeps a single
    table for layers, models and optimizers alike)."""

    def __init__(self, seed: int | None = None):
        self.generator = np.random.default_rng(check_seed(seed, allow_none=True))
        self.name_counts: dict[str, int] = defaultdict(int)

    def reseed(self, seed: int) -> None:
        self.generator = np.random.default_rng(check_seed(seed))

    def unique_name(self, stem: str) -> str:
        """``stem``, then ``stem_1``, ``stem_2``... counted per session, as Keras does."""
        count = self.name_counts[stem]
        self.name_counts[stem] += 1
        return stem if count == 0 else f"{stem}_{count}"

    def clear_names(self) -> None:
        """Forget the name counts: the next ``Dense`` is ``dense`` again."""
        self.name_counts.clear()


# The process's session, until ``fresh`` sets another for the code inside it.
_process = Session()
_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "convlens_session", default=None
)


def current() -> Session:
    """The session code runs in now."""
    inner = _current.get()
    return _process if inner is None else inner


@contextmanager
def fresh(seed: int | None = None) -> Iterator[Session]:
    """Run the body in a new session (its own generator from ``seed``, names from zero);
    the caller's session comes back afterwards exactly as it was."""
    token = _current.set(Session(seed))
    try:
        yield current()
    finally:
        _current.reset(token)
