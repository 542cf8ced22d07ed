"""Pytest setup shared by tests/ and the package's doctests."""

import os

import pytest

# Real Keras is a test-only reference; it runs on the CPU torch backend.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def _doctests_see_an_80_column_terminal(request, monkeypatch):
    # Keras's summary width follows the terminal; doctest output is written for 80 columns.
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.setenv("COLUMNS", "80")
