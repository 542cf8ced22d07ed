"""The digits shipped in the package are the MNIST test images they claim to be."""

from __future__ import annotations

import numpy as np

from convlens.datasets.digits import sample_digits
from convlens.datasets.mnist import read_idx
from tests.test_datasets_mnist import SHARED_MNIST, needs_shared


def test_shipped_digits_are_five_of_each_class():
    images, labels, indices = sample_digits()
    assert images.shape == (50, 28, 28) and images.dtype == np.uint8
    assert sorted(labels.tolist()) == sorted(list(range(10)) * 5)
    assert len(set(indices.tolist())) == 50


@needs_shared  # the official test set is in ../shared/data/mnist when the machine has it
def test_shipped_digits_are_official_test_images():
    images, labels, indices = sample_digits()
    official = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    official_labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(images, official[indices])
    np.testing.assert_array_equal(labels, official_labels[indices])
    images[0, 0, 0] = 77  # a copy: the next caller gets the file's values
    assert sample_digits()[0][0, 0, 0] == official[indices[0], 0, 0]
