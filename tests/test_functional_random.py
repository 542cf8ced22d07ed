"""Random functional graphs (branches, merges, shared layers, several outputs) built in both
convlens and real Keras with the same weights: the summary text, predict and one SGD step agree.
"""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convlens  # noqa: E402
from convlens.models import Model  # noqa: E402
from tests.test_functional import _summary, assert_same_sgd_step  # noqa: E402

SEEDS = range(12)


def _plan(seed: int) -> list:
    """A random graph as a list of steps, the same whichever library builds it."""
    rng = np.random.default_rng(seed)
    steps, width = [], 1
    for _ in range(int(rng.integers(3, 7))):
        kind = rng.choice(["dense", "merge", "concat", "shared", "activation"])
        a, b = (int(i) for i in rng.integers(0, width, 2))
        units = int(rng.integers(2, 5))
        steps.append((str(kind), a, b, units, str(rng.choice(["add", "multiply", "maximum",
                                                               "average", "subtract"]))))
        width += 1
    outputs = sorted({width - 1, int(rng.integers(1, width))})
    return steps, outputs


def _build(lib, model_cls, input_fn, seed: int, one_output: bool = False):
    L = lib
    steps, outputs = _plan(seed)
    if one_output:
        outputs = outputs[-1:]
    tensors = [input_fn((4,), name="x")]
    merges = {"add": L.Add, "multiply": L.Multiply, "maximum": L.Maximum,
              "average": L.Average, "subtract": L.Subtract}
    shared = L.Dense(3, activation="tanh", name="shared")
    for index, (kind, a, b, units, merge) in enumerate(steps):
        name = f"s{index}"
        if kind == "dense":
            out = L.Dense(units, activation="relu", name=name)(tensors[a])
        elif kind == "activation":
            out = L.Activation("sigmoid", name=name)(tensors[a])
        elif kind == "shared":
            out = shared(L.Dense(3, name=f"{name}_p")(tensors[a]))  # shared sees width 3
        elif kind == "merge":
            pa = L.Dense(3, name=f"{name}_a")(tensors[a])
            pb = L.Dense(3, name=f"{name}_b")(tensors[b])
            out = merges[merge](name=name)([pa, pb])
        else:
            out = L.Concatenate(name=name)([tensors[a], tensors[b]])
        tensors.append(out)
    heads = [L.Dense(2, name=f"head{i}")(tensors[i]) for i in outputs]
    return model_cls(tensors[0], heads if len(heads) > 1 else heads[0], name=f"random{seed}")


@pytest.mark.parametrize("seed", SEEDS)
def test_random_graph_matches_keras(seed):
    reference = _build(keras.layers, keras.Model, keras.Input, seed)
    ours = _build(convlens.layers, Model, convlens.Input, seed)
    ours.set_weights(reference.get_weights())
    assert _summary(ours) == _summary(reference)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 4)).astype("float32")
    expected, got = reference.predict(x, verbose=0), ours.predict(x, verbose=0)
    for e, g in zip(*(v if isinstance(v, list) else [v] for v in (expected, got))):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    # fit trains models with one output (several are refused; see test_functional)
    reference = _build(keras.layers, keras.Model, keras.Input, seed, one_output=True)
    ours = _build(convlens.layers, Model, convlens.Input, seed, one_output=True)
    ours.set_weights(reference.get_weights())
    y = rng.standard_normal((6, 2)).astype("float32")
    assert_same_sgd_step(reference, ours, x, y, 0.05, atol=1e-6)
