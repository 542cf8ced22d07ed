"""Batch splitting across threads: same results as one thread (up to float32 rounding in sums
over the batch), float64 kept, errors raised, BLAS's thread count given back."""

import os
import signal

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from convlens.ops import conv, workers
from convlens.ops.activations import activation_backward, activation_forward
from convlens.ops.dense import dense_backward, dense_forward
from convlens.ops.normalization import batch_norm_backward, batch_norm_forward
from convlens.ops.pool import max_pool_backward, max_pool_forward


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_parts_are_contiguous_cover_the_batch_and_follow_the_thread_count(monkeypatch):
    monkeypatch.setattr(workers, "MIN_PARALLEL_WORK", 0)
    with threadpool_limits(2, user_api="blas"):
        assert workers.batch_parts(5, 1) == [slice(0, 2), slice(2, 5)]
        assert workers.batch_parts(1, 1) == [slice(0, 1)]
    with threadpool_limits(1, user_api="blas"):
        assert workers.batch_parts(5, 1) == [slice(0, 5)]
    monkeypatch.setattr(workers, "MIN_PARALLEL_WORK", 10)
    with threadpool_limits(2, user_api="blas"):
        assert workers.batch_parts(5, 9) == [slice(0, 5)]  # too little work to share


def test_run_parts_keeps_order_restores_blas_and_raises_a_part_error():
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        seen = []

        def record(part):
            seen.append(_blas_threads())
            return part.start

        assert workers.run_parts(record, [slice(0, 1), slice(1, 2)]) == [0, 1]
        assert all(t == [1] * len(before) for t in seen)  # one BLAS thread per part
        assert _blas_threads() == before

        def fail(part):
            if part.start:
                raise ValueError("part 2 failed")

        with pytest.raises(ValueError, match="part 2 failed"):
            workers.run_parts(fail, [slice(0, 1), slice(1, 2)])
        assert _blas_threads() == before


CASES = {  # c_in, c_out, groups, kernel, strides, padding, dilation: one per path
    "gemm": (5, 6, 1, (3, 3), (1, 1), ((1, 1), (0, 2)), (1, 1)),
    "grouped": (4, 6, 2, (2, 3), (2, 1), ((0, 0), (1, 1)), (1, 2)),
    "single channel": (1, 4, 1, (3, 2), (1, 2), ((1, 0), (0, 0)), (1, 1)),
    "depthwise": (3, 6, 3, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    "depthwise strided": (3, 3, 3, (3, 2), (2, 1), ((1, 1), (0, 1)), (1, 1)),
}


def _conv_and_grads(x, kernel, bias, case, grad_y=None):
    _, _, groups, _, strides, padding, dilation = case
    y, cache = conv.conv_forward(x, kernel, bias, strides, padding, dilation, groups)
    if grad_y is None:
        grad_y = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    return (y, *conv.conv_backward(grad_y, cache)), grad_y


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [1 << 22, 64])  # whole samples per chunk, or rows of one
def test_two_threads_compute_what_one_does(monkeypatch, name, dtype, chunk, kernel_path):
    case = CASES[name]
    c_in, c_out, groups, k = case[:4]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 9, 8, c_in)).astype(dtype)
    kernel = rng.standard_normal((*k, c_in // groups, c_out)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    monkeypatch.setattr(workers, "MIN_PARALLEL_WORK", 0)
    for constant in ("CHUNK_BYTES", "SINGLE_CHANNEL_CHUNK_BYTES", "DEPTHWISE_CHUNK_BYTES"):
        monkeypatch.setattr(conv, constant, chunk)
    with threadpool_limits(1, user_api="blas"):
        one, grad_y = _conv_and_grads(x, kernel, bias, case)
    with threadpool_limits(2, user_api="blas"):
        assert len(workers.batch_parts(7, 1)) == 2
        two, _ = _conv_and_grads(x, kernel, bias, case, grad_y)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(one, two, strict=True):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance * np.abs(a).max())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_worker_threads_work_in_a_forked_child(monkeypatch):
    """The worker threads are started once per process: a forked child starts its own."""
    monkeypatch.setattr(workers, "MIN_PARALLEL_WORK", 0)
    parts = [slice(0, 1), slice(1, 2)]
    assert workers.run_parts(lambda part: part.start, parts) == [0, 1]  # the parent's threads
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        signal.alarm(30)  # a child waiting on its parent's threads would hang: end it instead
        try:
            os.write(write, repr(workers.run_parts(lambda part: part.start * 10, parts)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(child, 0)
    assert answer == "[0, 10]"


def _one_and_two_threads(monkeypatch, compute):
    """``compute()`` with BLAS on 1 thread and on 2 (every size split in two)."""
    monkeypatch.setattr(workers, "MIN_PARALLEL_WORK", 0)
    with threadpool_limits(1, user_api="blas"):
        one = compute()
    with threadpool_limits(2, user_api="blas"):
        assert len(workers.flat_parts(7)) == 2
        two = compute()
    return one, two


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "pool, strides, padding",
    [((2, 2), (2, 2), ((0, 0), (0, 0))), ((3, 2), (1, 2), ((1, 1), (0, 1)))],
)
def test_max_pooling_split_across_threads_is_exact(
    monkeypatch, dtype, pool, strides, padding, kernel_path
):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7, 6, 3)).astype(dtype)
    x[:, 1, 1] = x[:, 1, 0]  # ties: the gradient goes to the first cell in window order

    def compute():
        y, cache = max_pool_forward(x, pool, strides, padding)
        grad_y = np.arange(y.size, dtype=dtype).reshape(y.shape)
        return y, max_pool_backward(grad_y, cache)

    (y1, g1), (y2, g2) = _one_and_two_threads(monkeypatch, compute)
    assert y2.dtype == g2.dtype == dtype
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(g2, g1)
    # against a loop over the windows of one sample
    n, row, col, c = 4, 1, 1, 2
    window = x[n, :, :, c]
    (top, _), (left, _) = padding
    r0, c0 = row * strides[0] - top, col * strides[1] - left
    cells = window[max(r0, 0) : r0 + pool[0], max(c0, 0) : c0 + pool[1]]
    assert y1[n, row, col, c] == cells.max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_split_across_threads_is_exact(monkeypatch, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 7)).astype(dtype)
    grad_y = rng.standard_normal(x.shape).astype(dtype)

    def compute():
        y = activation_forward("relu", x)
        return y, activation_backward("relu", x, y, grad_y)

    (y1, g1), (y2, g2) = _one_and_two_threads(monkeypatch, compute)
    assert y2.dtype == g2.dtype == dtype
    np.testing.assert_array_equal(y2, np.where(x > 0, x, 0))
    np.testing.assert_array_equal(g2, np.where(x > 0, grad_y, 0))
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(g2, g1)
    # a strided view is done in one call, with the same values
    view = x[:, ::2]
    np.testing.assert_array_equal(activation_forward("relu", view), np.where(view > 0, view, 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (7, 3)])
def test_batch_norm_split_across_threads(monkeypatch, dtype, shape):
    """Rows split across threads: the same values up to the rounding of per-channel sums."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma, beta = rng.standard_normal((2, shape[-1])).astype(dtype)
    grad_y = rng.standard_normal(shape).astype(dtype)

    def compute():
        y, cache, mean, variance = batch_norm_forward(x, -1, gamma, beta)
        return (y, mean, variance, *batch_norm_backward(grad_y, cache))

    one, two = _one_and_two_threads(monkeypatch, compute)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(one, two, strict=True):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(one[1], x.mean(axis=axes), rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(one[2], x.var(axis=axes), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_split_across_threads(monkeypatch, dtype):
    """Rows of x, of grad_z and of grad_kernel go to different threads; no sum is split."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 3, 11)).astype(dtype)
    kernel, grad_z = rng.standard_normal((11, 5)).astype(dtype), rng.standard_normal((7, 3, 5))
    bias = rng.standard_normal(5).astype(dtype)

    def compute():
        z, cache = dense_forward(x, kernel, bias)
        return (z, *dense_backward(grad_z.astype(dtype), cache))

    one, two = _one_and_two_threads(monkeypatch, compute)
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for a, b in zip(one, two, strict=True):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(one[0], x @ kernel + bias, rtol=tolerance, atol=tolerance)
    x2d, g2d = x.reshape(-1, 11), grad_z.reshape(-1, 5).astype(dtype)
    np.testing.assert_allclose(one[2], x2d.T @ g2d, rtol=tolerance * 10, atol=tolerance * 10)
    np.testing.assert_allclose(one[1], grad_z.astype(dtype) @ kernel.T, rtol=tolerance,
                               atol=tolerance)
