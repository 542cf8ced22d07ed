"""The budget: a model's figures from its configuration, checked before any weight exists."""

from __future__ import annotations

import math

import pytest

from convlens import layers as L
from convlens.budget import Budget, BudgetError, check_budget
from convlens.explain.cost import layer_cost
from convlens.models import Sequential
from tests.memory import peak_kib

# One model per line, every layer kind, both data formats; the reference is the same model
# built for real: its variables, its layers' output shapes and explain's cost of each layer.
MODELS = [
    lambda: [L.Input((12, 12, 3)), L.Conv2D(8, 3, strides=2, padding="same"),
             L.BatchNormalization(), L.ReLU(), L.DepthwiseConv2D(3, depth_multiplier=2),
             L.SeparableConv2D(5, 2),
             L.Conv2DTranspose(4, 3, strides=2), L.ZeroPadding2D(((1, 2), (0, 3))),
             L.MaxPooling2D(2), L.AveragePooling2D(2, padding="same"), L.Flatten(),
             L.Dense(7), L.Dropout(0.5), L.Activation("softmax")],
    lambda: [L.Input((3, 10, 10)), L.Conv2D(6, 3, groups=3, data_format="channels_first"),
             L.BatchNormalization(axis=1), L.GlobalMaxPooling2D(data_format="channels_first"),
             L.Reshape((2, 3)), L.Dense(4, use_bias=False)],
    lambda: [L.Input((20, 4)), L.Conv1D(6, 5, padding="causal", dilation_rate=2),
             L.MaxPooling1D(2), L.AveragePooling1D(3), L.GlobalAveragePooling1D()],
    lambda: [L.Input((6, 6, 6, 2)), L.Conv3D(3, 2), L.MaxPooling3D(2), L.AveragePooling3D(1),
             L.Flatten(), L.Dense(2)],
]


@pytest.mark.parametrize("make", MODELS)
def test_figures_equal_the_built_model(make):
    entries = make()
    input_shape = entries[0].layer.batch_shape
    figures = check_budget(entries[1:], input_shape)
    model = Sequential(make())
    assert figures.params == model.count_params()
    assert [f.params for f in figures.layers] == [layer.count_params() for layer in model.layers]
    assert [f.output_shape for f in figures.layers] == [layer.output_shape for layer in
                                                        model.layers]
    costs = [layer_cost(layer) for layer in model.layers]
    assert [f.multiply_adds for f in figures.layers] == [c.macs for c in costs]
    assert figures.activation_values == sum(c.output_values for c in costs)
    assert figures.input_values == math.prod(model.input_shape[1:])


@pytest.mark.parametrize("make", MODELS)
def test_weight_shapes_are_what_build_creates(make):
    model = Sequential(make())
    shape = model.input_shape
    for layer in model.layers:
        fresh = type(layer).from_config(layer.get_config())
        assert [tuple(s) for s in fresh.weight_shapes(shape).values()] == [
            v.shape for v in layer.weights]
        assert fresh.weights == []  # asking for shapes created nothing
        shape = layer.output_shape


def test_each_limit_names_its_layer_and_figure():
    dense = [L.Dense(600_000, name="wide")]
    with pytest.raises(BudgetError, match=r"layer 1 'wide' \(Dense\).*471,000,000.*max_params"):
        check_budget(dense, (None, 784), max_params=20_000_000)
    convs = [L.Conv2D(4, 3, name="a"), L.Conv2D(64, 3, padding="same", name="b")]
    with pytest.raises(BudgetError, match=r"layer 2 'b'.*\(None, 98, 98, 64\).*"
                       r"max_activation_values") as info:
        check_budget(convs, (None, 100, 100, 1), max_activation_values=500_000)
    assert (info.value.index, info.value.figure) == (1, "max_activation_values")
    assert info.value.value == 98 * 98 * 4 + 98 * 98 * 64
    with pytest.raises(BudgetError, match=r"'b'.*max_multiply_adds") as info:
        check_budget(convs, (None, 100, 100, 1), max_multiply_adds=10**6)
    assert info.value.value == 98 * 98 * 9 * 4 + 98 * 98 * 9 * 4 * 64
    with pytest.raises(BudgetError, match=r"\(None, 100000, 100000, 3\) has 30,000,000,000 "
                       r"values.*max_input_values"):
        check_budget(convs, (None, 100_000, 100_000, 3))
    with pytest.raises(BudgetError, match=r"3 layers.*allows 2 \(max_layers\)"):
        check_budget([L.ReLU()] * 3, (None, 4), max_layers=2)
    assert Budget(max_layers=3).check([L.ReLU()] * 3, (None, 4)).params == 0


def test_huge_configurations_are_refused_not_allocated():
    # The default limits refuse what no machine holds; Python's ints do the arithmetic.
    with pytest.raises(BudgetError, match="max_params"):
        check_budget([L.Dense(10**12)], (None, 784))
    with pytest.raises(BudgetError, match="max_params"):
        check_budget([L.Conv2D(2, 10**6, padding="same")], (None, 8, 8, 3))
    with pytest.raises(BudgetError, match="max_activation_values"):
        check_budget([L.ZeroPadding2D(10**400)], (None, 2, 2, 1))


def test_unknown_sizes_count_what_is_known():
    figures = check_budget([L.Conv2D(8, 3), L.GlobalAveragePooling2D(), L.Dense(2)],
                           (None, None, None, 3))
    assert figures.params == 3 * 3 * 3 * 8 + 8 + 8 * 2 + 2
    assert figures.layers[0].activation_values is None
    assert figures.layers[0].multiply_adds is None
    assert figures.layers[2].multiply_adds == 16


def test_refusal_allocates_nothing():
    """A subprocess refuses a 470M-parameter Dense; its peak memory stays that of Python."""
    peak = peak_kib("""
        from convlens import layers as L
        from convlens.budget import BudgetError, check_budget
        try:
            check_budget([L.Flatten(), L.Dense(600_000), L.Dense(600_000)], (None, 784))
        except BudgetError:
            pass
        else:
            raise AssertionError("not refused")
        check_budget([L.Flatten(), L.Dense(600_000)], (None, 784), max_params=10**9)
    """)
    assert peak < 300 * 1024, f"peak {peak} KiB"  # the weights alone would be 1.9 GB


def test_graph_budget_counts_a_shared_layers_weights_once_and_names_the_layer():
    from convlens.budget import check_graph_budget

    shared, head = L.Dense(8, name="shared"), L.Dense(2, name="head")
    calls = [(shared, (None, 8)), (shared, (None, 8)), (head, (None, 8))]
    figures = check_graph_budget(calls, [(None, 8)])
    assert figures.params == (8 * 8 + 8) + (8 * 2 + 2)  # the shared kernel and bias once
    assert figures.multiply_adds == 2 * 64 + 16  # but both calls compute
    with pytest.raises(BudgetError, match="'head'"):
        check_graph_budget(calls, [(None, 8)], max_params=80)
