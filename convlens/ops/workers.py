"""Split a kernel's batch across threads, one core each, with single-threaded BLAS meanwhile.

NumPy runs a copy or an elementwise pass on one core; OpenBLAS splits each matrix product
across all cores and makes its threads meet at the end of every product. In a convolution,
which alternates the two chunk after chunk, one core idles during the copies, and on a
machine shared with other processes each product waits for its slowest, descheduled thread.
And after a multithreaded call OpenBLAS's threads keep spinning for a while (~0.1 s): the
next kernel's threads lose a core to them. So the large kernels, dense layers included, hand
each thread its own contiguous part of the batch (NumPy releases the GIL inside copies,
ufuncs and matmul) and keep BLAS to one thread per part while they run. The parts are
fixed by the batch size and the thread count alone, never by timing, so a result is the
same from run to run; with another thread count only sums over the batch (a kernel's
gradient) may differ, by float rounding.

The thread count is the one BLAS was given (``OPENBLAS_NUM_THREADS``, ``threadpoolctl``),
so a user who limits BLAS limits this too. Without ``threadpoolctl`` importable, everything
runs in the calling thread as before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import cache

import numpy as np

# Below this many multiply-adds a call is too short to pay for a thread and the BLAS
# switch (~0.1 ms together).
MIN_PARALLEL_WORK = 20_000_000
# One elementwise pass over a value (~0.2-0.5 ns, memory-bound) against one GEMM multiply-add
# (~0.02 ns): about 32 of them.
VALUE_WORK = 32


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


def flat_parts(size: int) -> list[slice]:
    """Slices of ``range(size)`` for an elementwise pass over ``size`` values, one per thread.

    An elementwise pass costs about as much per value as ``VALUE_WORK`` GEMM multiply-adds, so
    below ~0.6 million values it stays in one piece.
    """
    return batch_parts(size, size * VALUE_WORK)


def run_elementwise(function: Callable, out: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    """``function(*inputs, out=out)`` over flat ranges of same-shaped arrays, on the threads.

    Each value is computed as in one call, so the result does not depend on the thread count.
    Arrays that are not C-contiguous or not all of one shape are done in one call.
    """
    arrays = (out, *inputs)
    if not all(a.flags.c_contiguous and a.shape == out.shape for a in arrays):
        function(*inputs, out=out)
        return out
    flat_out, *flat_inputs = (a.reshape(-1) for a in arrays)
    run_parts(
        lambda part: function(*(a[part] for a in flat_inputs), out=flat_out[part]),
        flat_parts(out.size),
    )
    return out


def run_parts(function: Callable[[slice], object], parts: list[slice]) -> list:
    """``[function(part) for part in parts]``, the parts on concurrent threads.

    The first part runs in the calling thread, the others on this process's worker threads
    (started once: a hand-off costs ~20 us, a new thread ~100 us). While more than one part
    runs, BLAS keeps to one thread per call and gets its count back afterwards. An exception
    in any part is raised here after all parts have finished.
    """
    if len(parts) == 1:
        return [function(parts[0])]
    pool = _pool(len(parts) - 1)
    blas = _blas()
    errors: list[BaseException] = []
    results: list = []
    with blas.limit(limits=1) if blas is not None else nullcontext():
        futures = [pool.submit(function, part) for part in parts[1:]]
        try:
            results.append(function(parts[0]))
        except BaseException as error:  # re-raised after the other parts have finished
            errors.append(error)
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as error:
                errors.append(error)
    if errors:
        raise errors[0]
    return results


_pool_lock = threading.Lock()
_pools: dict[int, tuple[ThreadPoolExecutor, int]] = {}  # process id -> (threads, how many)


def _pool(size: int) -> ThreadPoolExecutor:
    """This process's worker threads, at least ``size`` of them.

    Keyed by process id: a forked child has none of its parent's threads and starts its own.
    """
    with _pool_lock:
        pool, count = _pools.get(os.getpid(), (None, 0))
        if pool is None or count < size:
            if pool is not None:
                pool.shutdown(wait=False)
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="convlens-part")
            _pools.clear()
            _pools[os.getpid()] = (pool, size)
        return pool
