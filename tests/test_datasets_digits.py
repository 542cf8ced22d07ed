"""The digits shipped in the package are the MNIST test images they claim to be; the page
offers more from the test set when CONVLENS_DATA or the dataset cache holds it."""

from __future__ import annotations

import numpy as np
import pytest

from convlens.datasets.digits import page_digits, sample_digits
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


def digits_folder(folder, per_class: int = 12):
    """A test set of ``per_class`` images per digit, labels in a scrambled order; each image
    is filled with its own index (mod 256) so a test can tell which one it got."""
    from tests.test_datasets_mnist import write_idx

    labels = np.random.default_rng(3).permutation(np.repeat(np.arange(10), per_class))
    images = (np.arange(len(labels)) % 256).astype(np.uint8)[:, None, None] * np.ones(
        (1, 28, 28), np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return images, labels.astype(np.uint8)


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No CONVLENS_DATA, an empty cache, and no network: a download attempt fails the test."""
    import urllib.request

    monkeypatch.delenv("CONVLENS_DATA", raising=False)
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))

    def refuse(*args, **kwargs):
        raise AssertionError("the page's digits must never download")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return tmp_path


def expected_rounds(labels, per_class):
    firsts = [list(np.flatnonzero(labels == d)[:per_class]) for d in range(10)]
    return [firsts[d][r] for r in range(per_class) for d in range(10)]


def test_page_digits_are_the_shipped_ones_without_a_test_set(no_data):
    images, labels, source = page_digits()
    np.testing.assert_array_equal(images, sample_digits()[0])
    np.testing.assert_array_equal(labels, sample_digits()[1])
    assert source == "the 50 MNIST test digits shipped with convlens"


@pytest.mark.parametrize("where", ["CONVLENS_DATA", "cache"])
def test_page_digits_take_ten_of_each_from_the_test_set_on_disk(no_data, monkeypatch, where):
    from convlens.datasets.mnist import cache_dir

    folder = no_data / "data" if where == "CONVLENS_DATA" else cache_dir()
    all_images, all_labels = digits_folder(folder)
    if where == "CONVLENS_DATA":
        monkeypatch.setenv("CONVLENS_DATA", str(folder))
    images, labels, source = page_digits()
    order = expected_rounds(all_labels, 10)
    assert len(order) == 100 and labels[:10].tolist() == list(range(10))
    np.testing.assert_array_equal(images, all_images[order])
    np.testing.assert_array_equal(labels, all_labels[order])
    assert source.startswith("100 MNIST test digits from ") and str(folder) in source
    assert ("CONVLENS_DATA" in source) == (where == "CONVLENS_DATA")


def test_a_malformed_test_set_falls_back_to_the_shipped_digits_saying_why(no_data, monkeypatch):
    folder = no_data / "broken"
    digits_folder(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not an idx file")
    monkeypatch.setenv("CONVLENS_DATA", str(folder))
    images, _, source = page_digits()
    assert len(images) == 50 and "could not be read" in source
    assert "t10k-labels-idx1-ubyte.gz" in source


@needs_shared
def test_with_the_official_test_set_the_first_fifty_are_the_shipped_ones(no_data, monkeypatch):
    monkeypatch.setenv("CONVLENS_DATA", str(SHARED_MNIST))
    images, labels, _ = page_digits()
    assert images.shape == (100, 28, 28)
    np.testing.assert_array_equal(images[:50], sample_digits()[0])
    np.testing.assert_array_equal(labels[:50], sample_digits()[1])


def test_the_page_offers_and_feeds_the_digits_from_convlens_data(no_data, monkeypatch):
    from convlens.web.api import examples, model_input
    from convlens.web.jobs import ServerState
    from convlens.web.views import feature_maps_request

    all_images, all_labels = digits_folder(no_data / "data")
    monkeypatch.setenv("CONVLENS_DATA", str(no_data / "data"))
    digits = examples()["digits"]
    assert len(digits["images"]) == 100 and "CONVLENS_DATA" in digits["source"]
    order = expected_rounds(all_labels, 10)
    assert digits["labels"] == all_labels[order].tolist()
    from convlens.spec import parse_spec

    model = parse_spec("input 28x28x1 | conv2d 2 3")
    x = model_input(model, {"input": {"digit": 73}}, 0)
    np.testing.assert_array_equal(x[0, ..., 0], all_images[order[73]] / np.float32(255))
    maps = feature_maps_request({"spec": "input 28x28x1 | conv2d 2 3", "input": {"digit": 99}},
                                ServerState())
    assert np.allclose(maps["input"]["values"], all_images[order[99]][..., None] / 255.0)
