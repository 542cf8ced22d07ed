"""convlens.regularizers and convlens.constraints against keras.regularizers/keras.constraints:
names, defaults, serialized form, values."""

from __future__ import annotations

import numpy as np
import pytest

from convlens import constraints, regularizers

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

W = np.random.default_rng(0).standard_normal((3, 3, 2, 4)).astype(np.float32)


@pytest.mark.parametrize("identifier", [
    "l1", "l2", "l1l2", "L1", "L2", "L1L2",
    {"module": "keras.regularizers", "class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2},
     "registered_name": None},
])
def test_regularizers_get_serialize_and_value_as_keras(identifier):
    ours, theirs = regularizers.get(identifier), keras.regularizers.get(identifier)
    assert regularizers.serialize(ours) == keras.regularizers.serialize(theirs)
    value = theirs(torch.from_numpy(W))
    value = float(value) if not torch.is_tensor(value) else float(value.detach())
    np.testing.assert_allclose(ours(W), value, rtol=1e-5)


def test_keras_lower_case_names_are_the_classes():
    assert regularizers.l1_l2(l1=0.1).get_config() == keras.regularizers.l1_l2(l1=0.1).get_config()
    assert regularizers.l2(0.3).get_config() == keras.regularizers.l2(0.3).get_config()
    assert regularizers.get(None) is None and constraints.get(None) is None


@pytest.mark.parametrize("identifier", [
    "max_norm", "non_neg", "unit_norm", "min_max_norm", "MaxNorm",
    {"module": "keras.constraints", "class_name": "MaxNorm",
     "config": {"max_value": 1.5, "axis": [0, 1, 2]}, "registered_name": None},
    {"module": "keras.constraints", "class_name": "MinMaxNorm",
     "config": {"min_value": 0.5, "max_value": 2.0, "rate": 0.5, "axis": 0},
     "registered_name": None},
])
def test_constraints_get_serialize_and_value_as_keras(identifier):
    ours, theirs = constraints.get(identifier), keras.constraints.get(identifier)
    assert constraints.serialize(ours) == keras.constraints.serialize(theirs)
    expected = keras.ops.convert_to_numpy(theirs(torch.from_numpy(W)))
    np.testing.assert_allclose(ours(W), expected, rtol=1e-5, atol=1e-7)


def test_bad_identifiers_are_clear():
    with pytest.raises(ValueError, match="regularizer identifier: 'l3'"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match=r"received l2=-1"):
        regularizers.L2(-1)
    with pytest.raises(ValueError, match="constraint identifier: 'positive'"):
        constraints.get("positive")
