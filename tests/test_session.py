"""The session: one generator and one table of automatic names, ``clear_session()`` as in
Keras, ``session(seed=...)`` as a context that gives the caller's state back exactly, and
readers (explanations, the contrast) that leave the user's random stream alone."""

from __future__ import annotations

import numpy as np
import pytest

import convlens
from convlens import optimizers, utils
from convlens.layers import Conv2D, Dense, Input
from convlens.models import Sequential

keras = pytest.importorskip("keras")


def _names(library) -> list[str]:
    """Automatic names of a scripted sequence of objects, with a clear_session in the middle."""
    made = [library.layers.Dense(1), library.layers.Dense(1), library.layers.Conv2D(1, 1),
            library.optimizers.Adam(), library.optimizers.Adam(), library.Sequential()]
    library.utils.clear_session()
    made += [library.layers.Dense(1), library.optimizers.Adam(), library.Sequential(),
             library.layers.Conv2D(1, 1), library.layers.Dense(1)]
    return [obj.name for obj in made]


def test_clear_session_restarts_names_as_keras_does():
    keras.utils.clear_session(free_memory=False)
    utils.clear_session()
    expected = _names(keras)
    assert _names(convlens) == expected
    assert expected[6:] == ["dense", "adam", "sequential", "conv2d", "dense_1"]


def test_clear_session_keeps_the_random_stream():
    utils.set_random_seed(3)
    expected = np.random.default_rng(3).random(2)
    first = utils.rng().random()
    utils.clear_session()
    assert [first, utils.rng().random()] == list(expected)


def test_session_seed_is_reproducible_and_draws_from_that_seed():
    kernels = []
    for _ in range(2):
        with utils.session(seed=21):
            layer = Dense(3)
            layer.build((None, 4))
            kernels.append(layer.kernel.numpy())
            assert layer.name == "dense"
            after = utils.rng().random(2)
    np.testing.assert_array_equal(kernels[0], kernels[1])
    # the session's generator is numpy's default_rng(seed), the one set_random_seed installs
    reference = np.random.default_rng(21)
    reference.uniform(size=(4, 3))  # glorot_uniform's draw for the kernel
    np.testing.assert_array_equal(after, reference.random(2))


def test_session_gives_back_the_callers_stream_and_names_exactly():
    utils.set_random_seed(5)
    utils.clear_session()
    without = [utils.rng().random(), utils.rng().random()]
    names_without = [Dense(1).name, Dense(1).name]

    utils.set_random_seed(5)
    utils.clear_session()
    outer = utils.rng()
    draws = [utils.rng().random()]
    names = [Dense(1).name]
    with utils.session(seed=8):
        assert utils.rng() is not outer
        Dense(2).build((None, 3))  # draws from the inner generator
        utils.rng().random(10)
        assert Dense(1).name == "dense_1"  # the inner session counts from zero too
    draws.append(utils.rng().random())
    names.append(Dense(1).name)
    assert utils.rng() is outer
    assert draws == without and names == names_without


def test_session_is_restored_when_the_body_raises():
    outer = utils.rng()
    with pytest.raises(RuntimeError, match="inside"), utils.session(seed=1):
        raise RuntimeError("inside")
    assert utils.rng() is outer


def test_nested_sessions_unwind_in_order():
    with utils.session(seed=1):
        first = utils.rng()
        with utils.session(seed=2):
            assert utils.rng().random() == np.random.default_rng(2).random()
        assert utils.rng() is first
        assert utils.rng().random() == np.random.default_rng(1).random()


def test_set_random_seed_inside_a_session_stays_inside():
    outer = utils.rng()
    state = outer.bit_generator.state
    with utils.session():
        utils.set_random_seed(9)
        assert utils.rng().random() == np.random.default_rng(9).random()
    assert utils.rng() is outer and outer.bit_generator.state == state


def test_optimizer_names_share_the_session():
    with utils.session():
        assert optimizers.Adam().name == "adam"
        with utils.session():
            assert optimizers.Adam().name == "adam"
        assert optimizers.Adam().name == "adam_1"


@pytest.mark.parametrize("seed", ["1", 1.5, True])
def test_bad_seed_is_a_type_error_quoting_it(seed):
    with pytest.raises(TypeError, match=repr(seed).replace(".", r"\.")), utils.session(seed):
        pass
    with pytest.raises(TypeError, match="`seed` must be an int"):
        utils.set_random_seed(seed)


def test_explain_with_contrast_leaves_the_random_stream_and_names_alone():
    model = Sequential([Input((9, 9, 3)), Conv2D(4, 3), Conv2D(5, 3, dilation_rate=2)])
    utils.set_random_seed(13)
    expected = utils.rng().random()
    next_name = Dense(1).name
    stem, _, number = next_name.rpartition("_")
    if not number.isdigit():
        stem, number = next_name, "0"
    utils.set_random_seed(13)
    explanation = model.explain(contrast=True)
    assert all(layer.contrast is not None for layer in explanation.layers)
    assert all(layer.contrast.check_passed for layer in explanation.layers)
    assert utils.rng().random() == expected
    assert Dense(1).name == f"{stem}_{int(number) + 1}"
    # a single layer's explanation too
    utils.set_random_seed(13)
    assert model.layers[1].explain(contrast=True).contrast is not None
    assert utils.rng().random() == expected


def test_a_session_in_one_thread_is_invisible_to_another():
    import threading

    inside, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with utils.session(seed=2):
            seen["name"] = Dense(1).name
            inside.set()
            release.wait(10)
            seen["draw"] = utils.rng().random()

    outer = utils.rng()
    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    assert utils.rng() is outer  # this thread still runs in its own session
    release.set()
    thread.join(10)
    assert seen == {"name": "dense", "draw": np.random.default_rng(2).random()}
    assert utils.rng() is outer
