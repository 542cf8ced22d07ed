"""The benchmark harness's own rules: alternating order, honest summaries, a clean environment."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import _common  # noqa: E402


def test_rounds_alternate_the_order_and_run_everyone_once_per_round():
    runs = list(_common.rounds_order(["a", "b", "c"], 4))
    per_round = [[name for r, name in runs if r == k] for k in range(4)]
    assert all(sorted(order) == ["a", "b", "c"] for order in per_round)
    firsts = {order[0] for order in per_round}
    lasts = {order[-1] for order in per_round}
    assert len(firsts) > 1 and len(lasts) > 1  # nobody always goes first or last


def test_summary_is_the_pooled_median_and_the_range_of_round_medians():
    median, low, high = _common.summarize([[1.0, 2.0, 9.0], [3.0, 4.0, 5.0]])
    assert median == pytest.approx(3.5)  # median of 1, 2, 3, 4, 5, 9
    assert (low, high) == (2.0, 4.0)


def test_children_run_without_the_openblas_overrides_and_with_equal_threads(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    env = _common.child_env(3)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "3"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # the caller's own environment stays


def test_a_run_that_shares_the_machine_is_flagged(monkeypatch):
    load = _common.Load()
    load.before = 0.0
    # Other processes burn as much CPU as the whole machine has during our (empty) run.
    ticks = iter([0, 10**9])
    monkeypatch.setattr(_common, "_busy_jiffies", lambda: next(ticks))
    load.measure("round 1 x", lambda: None)
    assert load.busy_runs and "BUSY" in load.report()
    quiet = _common.Load()
    quiet.before = 0.0
    ticks2 = iter([0, 0])
    monkeypatch.setattr(_common, "_busy_jiffies", lambda: next(ticks2))
    quiet.measure("round 1 y", lambda: None)
    assert not quiet.busy_runs and "quiet" in quiet.report()
