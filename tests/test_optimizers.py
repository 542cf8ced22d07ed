"""convlens.optimizers against keras.optimizers (torch backend) step by step."""

import keras
import numpy as np
import pytest

from convlens import optimizers
from convlens.variables import Variable

SHAPES = [(3, 3, 2, 4), (4,), (5, 3)]


def _run_both(make_ours, make_keras, steps=6, seed=0, grad_scale=1.0):
    rng = np.random.default_rng(seed)
    initial = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [
        [(rng.normal(size=s) * grad_scale).astype(np.float32) for s in SHAPES] for _ in range(steps)
    ]
    ours = [Variable(v.copy(), name=f"w{i}", path=f"layer/w{i}") for i, v in enumerate(initial)]
    theirs = [keras.Variable(v.copy(), name=f"w{i}") for i, v in enumerate(initial)]
    opt, ref = make_ours(), make_keras()
    for step_grads in grads:
        for variable, g in zip(ours, step_grads, strict=True):
            variable.grad = g
        opt.apply(ours)
        ref.apply([keras.ops.convert_to_tensor(g) for g in step_grads], theirs)
        # Weights are O(1): atol=1e-6 is 1e-6 relative to their scale (float32 rounding).
        for mine, reference in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(
                mine.value, keras.ops.convert_to_numpy(reference), rtol=1e-6, atol=1e-6
            )
    return opt, ref


CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"momentum": 0.5, "clipnorm": 1.0}),
    ("SGD", {"clipvalue": 0.3}),
    ("SGD", {"global_clipnorm": 2.0}),
    ("SGD", {"weight_decay": 0.1, "learning_rate": 0.5}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"clipnorm": 0.5}),
    ("Adam", {"global_clipnorm": 1.0}),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "rho": 0.8, "clipnorm": 1.0}),
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.1, "learning_rate": 0.01, "amsgrad": True}),
]


@pytest.mark.parametrize(("class_name", "kwargs"), CASES)
def test_matches_keras(class_name, kwargs):
    make_ours = lambda: getattr(optimizers, class_name)(**kwargs)  # noqa: E731
    make_keras = lambda: getattr(keras.optimizers, class_name)(**kwargs)  # noqa: E731
    opt, ref = _run_both(make_ours, make_keras)
    assert opt.iterations == int(keras.ops.convert_to_numpy(ref.iterations)) == 6
    # Optimizer state in the same order, shapes and values as Keras saves it.
    assert [v.shape for v in opt.variables] == [tuple(v.shape) for v in ref.variables]
    for mine, reference in zip(opt.variables[2:], ref.variables[2:], strict=True):
        np.testing.assert_allclose(
            mine.value, keras.ops.convert_to_numpy(reference), rtol=1e-5, atol=1e-7
        )
    expected = {k: v for k, v in ref.get_config().items() if k != "name"}
    assert {k: v for k, v in opt.get_config().items() if k != "name"} == expected
    assert list(opt.get_config()) == list(ref.get_config())


def test_large_gradients_are_clipped_like_keras():
    _run_both(
        lambda: optimizers.Adam(clipnorm=0.1),
        lambda: keras.optimizers.Adam(clipnorm=0.1),
        grad_scale=100.0,
    )
    _run_both(
        lambda: optimizers.SGD(global_clipnorm=0.1),
        lambda: keras.optimizers.SGD(global_clipnorm=0.1),
        grad_scale=100.0,
    )


def test_optimizer_param_count_matches_keras_summary():
    # Keras's model.summary() "Optimizer params" for Dense(3) on 4 inputs (15 weights).
    expected = {"adam": 32, "sgd": 2, "rmsprop": 17, "adagrad": 17, "adamw": 32}
    for name, count in expected.items():
        opt = optimizers.get(name)
        kernel = Variable(np.zeros((4, 3)), "kernel", "dense/kernel")
        bias = Variable(np.zeros(3), "bias", "dense/bias")
        kernel.grad, bias.grad = np.ones((4, 3)), np.ones(3)
        opt.apply([kernel, bias])
        assert opt.built
        assert sum(v.size for v in opt.variables) == count, name
    assert sum(v.size for v in _built(optimizers.SGD(momentum=0.9)).variables) == 17
    assert sum(v.size for v in _built(optimizers.Adam(amsgrad=True)).variables) == 47
    assert (
        sum(v.size for v in _built(optimizers.RMSprop(0.1, 0.9, 0.5, 1e-7, True)).variables) == 47
    )


def _built(opt):
    kernel = Variable(np.zeros((4, 3)), "kernel", "dense/kernel")
    bias = Variable(np.zeros(3), "bias", "dense/bias")
    kernel.grad, bias.grad = np.ones((4, 3)), np.ones(3)
    opt.apply([kernel, bias])
    return opt


def test_slot_paths_and_lazy_build():
    opt = optimizers.Adam(name="opt")
    assert not opt.built and opt.iterations == 0
    assert [v.path for v in opt.variables] == ["opt/iteration", "opt/learning_rate"]
    _built(opt)
    assert [v.path for v in opt.variables][2:] == [
        "opt/dense_kernel_momentum",
        "opt/dense_kernel_velocity",
        "opt/dense_bias_momentum",
        "opt/dense_bias_velocity",
    ]
    assert all(v.value.dtype == np.float32 for v in opt.variables[1:])


def test_skips_none_grads_and_non_trainable():
    a = Variable(np.ones(3), "a", "l/a")
    b = Variable(np.ones(3), "b", "l/b")
    frozen = Variable(np.ones(3), "c", "l/c", trainable=False)
    a.grad = np.ones(3)
    frozen.grad = np.ones(3)
    opt = optimizers.SGD(learning_rate=0.5)
    opt.apply([a, b, frozen])
    np.testing.assert_array_equal(a.value, 0.5)
    np.testing.assert_array_equal(b.value, 1.0)
    np.testing.assert_array_equal(frozen.value, 1.0)
    b.grad = None
    a.grad = None
    with pytest.raises(ValueError, match="No gradients"):
        opt.apply([a, b])


def test_update_is_in_place_and_float32():
    v = Variable(np.ones((2, 2)), "k", "d/k")
    buffer = v.value
    v.grad = np.ones((2, 2), dtype=np.float64)
    optimizers.RMSprop().apply([v])
    assert v.value is buffer and v.value.dtype == np.float32


def test_learning_rate_settable():
    opt = optimizers.Adam()
    assert opt.learning_rate == pytest.approx(0.001)
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    with pytest.raises(ValueError, match="learning_rate=-1"):
        opt.learning_rate = -1


def test_get():
    assert isinstance(optimizers.get("ADAM"), optimizers.Adam)
    assert isinstance(optimizers.get("sgd"), optimizers.SGD)
    assert isinstance(optimizers.get("RMSprop"), optimizers.RMSprop)
    opt = optimizers.SGD(momentum=0.9)
    assert optimizers.get(opt) is opt
    again = optimizers.get(optimizers.serialize(opt))
    assert isinstance(again, optimizers.SGD) and again.momentum == 0.9
    with pytest.raises(ValueError, match="'adamx'.*'sgd'.*'adam'.*'rmsprop'"):
        optimizers.get("adamx")
    with pytest.raises(ValueError):
        optimizers.get(3)


def test_serialize_is_readable_by_keras():
    mine = optimizers.serialize(optimizers.Adam(name="adam", amsgrad=True))
    theirs = keras.optimizers.serialize(keras.optimizers.Adam(name="adam", amsgrad=True))
    assert mine["class_name"] == theirs["class_name"]
    assert mine["config"] == theirs["config"]
    restored = keras.optimizers.deserialize(mine)
    assert type(restored).__name__ == "Adam" and restored.amsgrad


def test_auto_names():
    optimizers.reset_name_counters()
    assert [optimizers.Adam().name, optimizers.Adam().name] == ["adam", "adam_1"]
    assert optimizers.RMSprop().name == "rm_sprop"
    assert optimizers.AdamW().name == "adam_w"


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: optimizers.Adam(learning_rate=0), "learning_rate=0"),
        (lambda: optimizers.Adam(learning_rate="fast"), "learning_rate='fast'"),
        (lambda: optimizers.Adam(beta_1=1.0), "beta_1=1.0"),
        (lambda: optimizers.Adam(beta_2=-0.1), "beta_2=-0.1"),
        (lambda: optimizers.SGD(momentum=1.5), "momentum=1.5"),
        (lambda: optimizers.RMSprop(rho=2), "rho=2"),
        (lambda: optimizers.SGD(clipnorm=-1.0), "clipnorm=-1.0"),
        (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0), "Only one of"),
        (lambda: optimizers.SGD(lr=0.1), "not recognized"),
        (lambda: optimizers.AdamW(weight_decay=None), "weight_decay=None"),
    ],
)
def test_validation(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_state_round_trip():
    opt = _built(optimizers.Adam())
    store = {}
    opt.save_own_variables(store)
    other = _built(optimizers.Adam())
    other.load_own_variables(store)
    for a, b in zip(opt.variables, other.variables, strict=True):
        np.testing.assert_array_equal(a.value, b.value)
    assert other.iterations == 1


def test_adam_compiled_step_is_bitwise_the_numpy_step(monkeypatch):
    """Adam's compiled one-pass update (on by default) against its NumPy form, six steps."""
    from convlens.ops import compiled

    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4, 5)).astype(np.float32)
    grads = [rng.standard_normal(start.shape).astype(np.float32) for _ in range(6)]
    results = []
    for on in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", on)
        variable = Variable(start.copy(), "w", "w")
        opt = optimizers.Adam(learning_rate=0.01, beta_1=0.8, epsilon=1e-4)
        for grad in grads:
            opt.apply_gradients([(grad, variable)])
        results.append((variable.value.copy(), [v.value.copy() for v in opt.variables]))
    (w_on, state_on), (w_off, state_off) = results
    np.testing.assert_array_equal(w_on, w_off)
    assert not np.array_equal(w_on, start)
    for a, b in zip(state_on, state_off, strict=True):
        np.testing.assert_array_equal(a, b)
