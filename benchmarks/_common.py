"""Shared helpers for the benchmark scripts: one thread count for everyone, fair timing.

Import this module before NumPy or torch: BLAS libraries read their thread count from the
environment when they load.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def set_threads(count: int | None = None) -> int:
    """Give NumPy's BLAS and torch the same number of threads (default: all cores)."""
    count = count or int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count() or 1
    for name in _THREAD_VARS:
        os.environ[name] = str(count)
    return count


def describe_threads(count: int) -> str:
    """What NumPy's BLAS actually uses, read with threadpoolctl when it is installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return (
            f"threads: {count} for torch and NumPy BLAS (OPENBLAS/OMP/MKL_NUM_THREADS; "
            f"threadpoolctl not installed; os.cpu_count()={os.cpu_count()})"
        )
    pools = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info())
    return f"threads: torch={count}, NumPy BLAS: {pools}"


def interleaved_times(
    functions: Sequence[Callable[[], object]], repeats: int = 15, warmup: int = 3
) -> list[tuple[float, float]]:
    """``(median, best)`` wall time in ms of each function, the functions run in alternation.

    Alternating the contenders makes any background load hit all of them alike; the best time
    is printed too because on a shared machine it is the steadier of the two.
    """
    for _ in range(warmup):
        for function in functions:
            function()
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for function, times in zip(functions, samples, strict=True):
            start = time.perf_counter()
            function()
            times.append((time.perf_counter() - start) * 1e3)
    return [(statistics.median(times), min(times)) for times in samples]


def load_average() -> str:
    try:
        return f"load average (1 min) before the run: {os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover
        return "load average unavailable"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
