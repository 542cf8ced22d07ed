"""Pytest setup shared by tests/ and the package's doctests."""

import os

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
