"""Regularizers and constraints against real keras.regularizers / keras.constraints (torch)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convlens.ops import regularization as reg

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

weights = hnp.arrays(
    st.sampled_from([np.float32, np.float64]),
    hnp.array_shapes(min_dims=1, max_dims=4, max_side=4),
    elements=st.one_of(st.just(0.0), st.floats(-4, 4, width=32)),
)
strengths = st.sampled_from([0.0, 1e-4, 0.01, 0.5, 3.0])


@settings(max_examples=60, deadline=None)
@given(weights, strengths, strengths)
def test_l1_l2_match_keras_value_and_torch_gradient(w, l1, l2):
    for keras_reg, ours in (
        (keras.regularizers.L1L2(l1=l1, l2=l2), dict(l1=l1, l2=l2)),
        (keras.regularizers.L1(l1=l1 or 0.01), dict(l1=l1 or 0.01)),
        (keras.regularizers.L2(l2=l2 or 0.01), dict(l2=l2 or 0.01)),
    ):
        wt = torch.from_numpy(w.copy()).requires_grad_()
        value = keras_reg(wt)
        penalty = reg.l1_l2_penalty(w, **ours)
        assert penalty.dtype == w.dtype and penalty.shape == ()
        # Keras's L1 keeps its strength as a float32 tensor, even for float64 weights
        rtol = 1e-5 if w.dtype == np.float32 else 1e-7
        reference = float(value.detach()) if torch.is_tensor(value) else float(value)
        np.testing.assert_allclose(penalty, reference, rtol=rtol, atol=1e-30)
        if torch.is_tensor(value) and value.requires_grad:
            value.backward()
            expected = wt.grad.numpy()
        else:  # l1 = l2 = 0: Keras returns the number 0
            expected = np.zeros_like(w)
        gradient = reg.l1_l2_gradient(w, **ours)
        assert gradient.dtype == w.dtype and gradient.shape == w.shape
        np.testing.assert_allclose(gradient, expected, rtol=rtol, atol=1e-30)


def test_keras_string_defaults():
    """`kernel_regularizer="l1"` etc.: the strengths Keras picks for the names."""
    assert keras.regularizers.get("l1").l1 == pytest.approx(0.01)
    assert keras.regularizers.get("l2").l2 == pytest.approx(0.01)
    both = keras.regularizers.get("l1l2")  # the name of L1L2; keras.regularizers.l1_l2 is it too
    assert (both.l1, both.l2) == (0.0, 0.0)
    assert keras.regularizers.l1_l2 is keras.regularizers.L1L2
    w = np.array([1.0, -2.0], np.float32)
    assert reg.l1_l2_penalty(w, l1=0.01) == pytest.approx(0.03)


axes = st.sampled_from([0, 1, -1, [0, 1], [0, 1, 2], [1, 2]])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_constraints_match_keras(data):
    w = data.draw(hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=3, max_dims=4, max_side=4),
        elements=st.one_of(st.just(0.0), st.floats(-3, 3, width=32)),
    ))
    axis = data.draw(axes)
    max_value = data.draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
    min_value = data.draw(st.sampled_from([0.0, 0.25, 0.5]))
    rate = data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    cases = [
        (keras.constraints.MaxNorm(max_value, axis), reg.max_norm(w, max_value, axis)),
        (keras.constraints.NonNeg(), reg.non_neg(w)),
        (keras.constraints.UnitNorm(axis), reg.unit_norm(w, axis)),
        (keras.constraints.MinMaxNorm(min_value, max_value, rate, axis),
         reg.min_max_norm(w, min_value, max_value, rate, axis)),
    ]
    rtol = 1e-5 if w.dtype == np.float32 else 1e-12
    for keras_constraint, ours in cases:
        expected = np.asarray(keras_constraint(torch.from_numpy(w.copy())))
        assert ours.dtype == w.dtype and ours.shape == w.shape
        np.testing.assert_allclose(ours, expected, rtol=rtol, atol=1e-7, err_msg=keras_constraint)


def test_constraint_defaults_match_keras():
    import inspect

    for ours, theirs in ((reg.max_norm, keras.constraints.MaxNorm),
                         (reg.unit_norm, keras.constraints.UnitNorm),
                         (reg.min_max_norm, keras.constraints.MinMaxNorm)):
        keras_defaults = {k: p.default for k, p in inspect.signature(theirs).parameters.items()}
        our_defaults = {k: p.default for k, p in inspect.signature(ours).parameters.items()
                        if k != "w"}
        assert our_defaults == keras_defaults, ours.__name__
