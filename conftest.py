"""Pytest setup shared by tests/ and the package's doctests."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import settings

# CI draws the same examples every run (HYPOTHESIS_PROFILE=ci in .ci/run); locally each run
# explores new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Real Keras is a test-only reference; it runs on the CPU torch backend.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def _doctests_see_an_80_column_terminal(request, monkeypatch):
    # Keras's summary width follows the terminal; doctest output is written for 80 columns.
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture(params=["compiled", "numpy"])
def kernel_path(request, monkeypatch):
    """Run a test on both implementations of the kernels that have two: numba's loops
    (:mod:`convlens.ops.compiled`) and the NumPy reference."""
    from convlens.ops import compiled

    if request.param == "compiled":
        assert compiled.kernels() is not None, "numba, a dependency, is not importable"
    monkeypatch.setattr(compiled, "ENABLED", request.param == "compiled")
    return request.param


@contextlib.contextmanager
def _running_server(spec: str):
    """``convlens serve SPEC`` in a subprocess on a free port; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    server = subprocess.Popen(
        [sys.executable, "-m", "convlens.cli", "serve", "--port", str(port), spec],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.communicate()[1].decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        server.stderr.close()


@pytest.fixture
def running_server():
    """``with running_server(spec) as base_url:`` -- a real ``convlens serve``."""
    return _running_server
