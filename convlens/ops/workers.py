"""Split a kernel's batch across threads, one core each, with single-threaded BLAS meanwhile.

NumPy runs a copy or an elementwise pass on one core; OpenBLAS splits each matrix product
across all cores and makes its threads meet at the end of every product. In a convolution,
which alternates the two chunk after chunk, one core idles during the copies, and on a
machine shared with other processes each product waits for its slowest, descheduled thread.
So the large kernels hand each thread its own contiguous part of the batch (NumPy releases
the GIL inside copies, ufuncs and matmul) and keep BLAS to one thread per part while they
run. The parts are fixed by the batch size and the thread count alone, never by timing, so
a result is the same from run to run; with another thread count only sums over the batch
(a kernel's gradient) may differ, by float rounding.

The thread count is the one BLAS was given (``OPENBLAS_NUM_THREADS``, ``threadpoolctl``),
so a user who limits BLAS limits this too. Without ``threadpoolctl`` importable, everything
runs in the calling thread as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from functools import cache

# Below this many multiply-adds a call is too short to pay for a thread and the BLAS
# switch (~0.1 ms together).
MIN_PARALLEL_WORK = 20_000_000


@cache
def _blas():
    """threadpoolctl's handle on the BLAS libraries loaded in this process, or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    blas = ThreadpoolController().select(user_api="blas")
    return blas if blas.lib_controllers else None


def thread_count() -> int:
    """How many threads BLAS would use now (1 when unknown)."""
    blas = _blas()
    if blas is None:
        return 1
    return max(1, min(c.num_threads for c in blas.lib_controllers))


def batch_parts(batch: int, work: float) -> list[slice]:
    """Contiguous, nearly equal slices of ``range(batch)``, one per thread to use.

    One slice when the work (multiply-adds, or element passes) is too small to share.
    """
    count = min(batch, thread_count()) if work >= MIN_PARALLEL_WORK else 1
    bounds = [batch * i // count for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a] or [slice(0, batch)]


def run_parts(function: Callable[[slice], object], parts: list[slice]) -> list:
    """``[function(part) for part in parts]``, the parts on concurrent threads.

    The first part runs in the calling thread. While more than one part runs, BLAS keeps to
    one thread per call and gets its count back afterwards. An exception in any part is
    raised here after all parts have finished.
    """
    if len(parts) == 1:
        return [function(parts[0])]
    results: list = [None] * len(parts)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = function(parts[index])
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    blas = _blas()
    with blas.limit(limits=1) if blas is not None else nullcontext():
        threads = [threading.Thread(target=run, args=(i,)) for i in range(1, len(parts))]
        for thread in threads:
            thread.start()
        run(0)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results
