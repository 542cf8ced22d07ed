"""What every benchmark shares: contenders run alone, one process each, and honest reporting.

The parent process never imports NumPy's BLAS or torch's thread pools; it starts one child
process per contender and round, one after the other, alternating the order across rounds so
that a slow spell of the machine hits every contender alike. Each child measures only its own
library and prints one ``RESULT {json}`` line.

Around every child the parent reads the 1-minute load average and the machine's busy CPU time
(``/proc/stat``) minus the child's own CPU time (``getrusage``): what other processes took
while the contender ran. A run is flagged BUSY when other processes took more than
``BUSY_SHARE`` of the cores; the whole benchmark is flagged when the load average before it
was above ``BUSY_LOAD`` (later load averages include our own runs, so only that one counts).

Environment: these machines set ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (a workaround for
old OpenBLAS builds) that a user's machine does not have; the children run without them
(never the tests or CI) and print the kernel OpenBLAS then picks, read with ``threadpoolctl``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSY_LOAD = 0.5  # 1-minute load average before the first run
BUSY_SHARE = 0.10  # share of all cores that other processes used during a run
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_DROPPED_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# --------------------------------------------------------------------------------------------
# the parent: machine, load, children
# --------------------------------------------------------------------------------------------


def child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a contender: the same thread count for all, no OpenBLAS overrides."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_VARS}
    env.update({name: str(threads) for name in _THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def machine() -> str:
    """CPU model, core count and memory, as far as Linux tells."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{model}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}"


def _busy_jiffies() -> int:
    """Busy CPU time of the whole machine since boot, in clock ticks (0 when unknown)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Load:
    """Load average and other processes' CPU use around each child run."""

    def __init__(self) -> None:
        self.before = os.getloadavg()[0]
        self.after = self.before
        self.others: list[float] = []  # share of all cores used by others, per child run
        self.busy_runs: list[str] = []

    def measure(self, label: str, run: Callable[[], object]):
        busy0, ours0, wall0 = _busy_jiffies(), _children_cpu_seconds(), time.monotonic()
        result = run()
        wall = time.monotonic() - wall0
        tick = os.sysconf("SC_CLK_TCK")
        total = (_busy_jiffies() - busy0) / tick
        ours = _children_cpu_seconds() - ours0
        share = max(0.0, total - ours) / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0
        self.others.append(share)
        self.after = os.getloadavg()[0]
        if share > BUSY_SHARE:
            self.busy_runs.append(f"{label}: others used {share:.0%} of the cores")
        return result

    def report(self) -> str:
        lines = [
            f"load average (1 min): {self.before:.2f} before the benchmark, "
            f"{self.after:.2f} after (our own runs raise it)",
            f"other processes' share of the cores during our runs: median "
            f"{statistics.median(self.others or [0]):.0%}, max {max(self.others or [0]):.0%}",
        ]
        if self.before > BUSY_LOAD:
            lines.append(
                f"BUSY: the load average was {self.before:.2f} (> {BUSY_LOAD}) when the "
                "benchmark started"
            )
        if self.busy_runs:
            lines.append(
                f"BUSY: {len(self.busy_runs)} of {len(self.others)} runs shared the machine "
                f"(others took > {BUSY_SHARE:.0%} of the cores); their times are not those "
                "of a quiet machine:"
            )
            lines += [f"  - {run}" for run in self.busy_runs]
        if not self.busy_runs and self.before <= BUSY_LOAD:
            lines.append("quiet: no other process was busy before or during the runs")
        return "\n".join(lines)


def run_child(command: Sequence[str], env: dict[str, str]) -> dict:
    """Run one contender's process; return its RESULT, or stop with its error output."""
    process = subprocess.run(list(command), env=env, capture_output=True, text=True)
    lines = [x for x in process.stdout.splitlines() if x.startswith("RESULT ")]
    if process.returncode or not lines:
        sys.stderr.write(process.stdout[-4000:] + process.stderr[-4000:])
        raise SystemExit(f"benchmark child failed: {' '.join(command)}")
    return json.loads(lines[-1][len("RESULT "):])


def report_run(results: dict[str, list[dict]], load, contenders: Sequence[str]) -> dict:
    """Print each contender's thread pools and the load record; return the samples as
    ``{contender: {case: [times of round 1, times of round 2, ...]}}``."""
    samples: dict[str, dict[str, list[list[float]]]] = {}
    for name, runs in results.items():
        for result in runs:
            for case, times in result["times"].items():
                samples.setdefault(name, {}).setdefault(case, []).append(times)
    print()
    for name in contenders:
        print(f"{name}: {describe_pools(results[name][-1]['pools'])}")
    print(load.report())
    return samples


def run_rounds(
    script: str, names: Sequence[str], rounds: int, threads: int, extra: Sequence[str] = ()
) -> tuple[dict[str, list[dict]], Load]:
    """Run ``script --child NAME --threads T *extra`` for every contender and round.

    Returns each contender's RESULTs (one per round, in order) and the load record.
    """
    load = Load()
    results: dict[str, list[dict]] = {}
    env = child_env(threads, {"KERAS_BACKEND": "torch"})
    for r, name in rounds_order(names, rounds):
        command = [sys.executable, script, "--child", name, "--threads", str(threads), *extra]
        print(f"round {r + 1}: {name} ...", flush=True)
        result = load.measure(f"round {r + 1} {name}", lambda c=command: run_child(c, env))
        results.setdefault(name, []).append(result)
    return results, load


def rounds_order(names: Sequence[str], rounds: int) -> Iterable[tuple[int, str]]:
    """``(round, name)``: each round runs every contender once, the order rotating per round."""
    for r in range(rounds):
        shift = r % len(names)
        order = list(names[shift:]) + list(names[:shift])
        if r % 2:
            order.reverse()
        for name in order:
            yield r, name


# --------------------------------------------------------------------------------------------
# the child: its BLAS, its timings
# --------------------------------------------------------------------------------------------


def blas_pools() -> list[dict]:
    """Thread pools loaded in this process (BLAS kernel, threads), via threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"internal_api": "unknown (pip install threadpoolctl)"}]
    keep = ("internal_api", "num_threads", "version", "architecture", "threading_layer")
    return [{k: p[k] for k in keep if p.get(k) is not None} for p in threadpool_info()]


def describe_pools(pools: Sequence[dict]) -> str:
    parts = []
    for p in pools:
        extra = ", ".join(f"{k} {p[k]}" for k in ("version", "architecture") if k in p)
        threads = p.get("num_threads", "?")
        parts.append(f"{p['internal_api']} ({threads} threads{', ' + extra if extra else ''})")
    return "; ".join(parts) or "none loaded"


def sample_ms(function: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Wall times in ms of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(run: Callable[[], dict]) -> None:
    """In a contender's process: run, add its thread pools and peak memory, print RESULT."""
    result = run()
    result["pools"] = blas_pools()
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# statistics and tables
# --------------------------------------------------------------------------------------------


def summarize(per_round: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """``(median of all samples, lowest and highest per-round median)``."""
    pooled = [t for samples in per_round for t in samples]
    medians = [statistics.median(samples) for samples in per_round]
    return statistics.median(pooled), min(medians), max(medians)


def fmt_time(median: float, low: float, high: float, unit: str = "ms") -> str:
    digits = 2 if median < 10 else 1 if median < 100 else 0
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f}) {unit}"


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


def header(title: str, threads: int, rounds: int) -> str:
    return "\n".join([
        title,
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"machine: {machine()}",
        f"each contender alone in its own process, {rounds} rounds in alternating order, "
        f"{threads} threads each; OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for the runs",
    ])
