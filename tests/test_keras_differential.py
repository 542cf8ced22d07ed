"""Whole random models against real Keras 3 (torch backend): the same program, the same results.

A hypothesis strategy draws a random Sequential architecture that both libraries accept
(convolutions of every kind, pooling, dense, reshaping, normalization, dropout...), with
random strides, padding, dilation, groups, data formats, activations and biases. The same
layer arguments build the model in Keras and in convlens; Keras's weights (randomised, so
biases and batch-norm statistics are not trivially 0 and 1) are copied into ours, and then:

* ``model.summary()`` prints the same text to stdout (auto-names reset on both sides, the
  terminal width drawn at random), before building when the model has no input yet;
* ``count_params`` and every weight shape agree;
* ``predict`` gives the same numbers;
* one SGD step of ``fit`` (one batch, ``shuffle=False``) gives the same updated weights,
  Dropout included: both libraries draw their dropout mask from the same function of the
  layer's rate and the input shape (patched in below), so the masks are equal.
"""

import contextlib
import io
import math
import os
import random
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convlens
import convlens.layers as cl
from convlens.utils import clear_session

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
from keras.src.backend.torch import nn as keras_torch_nn  # noqa: E402
from keras.src.backend.torch import random as keras_torch_random  # noqa: E402

SPATIAL_LAYERS = {
    1: ["Conv1D", "MaxPooling1D", "AveragePooling1D"],
    2: ["Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "MaxPooling2D",
        "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D"],
    3: ["Conv3D"],
}
ANY_RANK_LAYERS = ["Dense", "Activation", "ReLU", "Dropout", "BatchNormalization", "Reshape"]
ACTIVATIONS = [None, "linear", "relu", "tanh", "sigmoid", "softmax", "elu", "selu", "gelu",
               "softplus", "softsign", "swish", "relu6", "leaky_relu", "hard_sigmoid", "mish",
               "log_softmax", "silu", "hard_silu"]
FORMATS = ["channels_last", "channels_first"]


# ---------------------------------------------------------------------------------------------
# The strategy
# ---------------------------------------------------------------------------------------------
def _split(shape, data_format):
    """(spatial sizes, channels) of a sample shape (batch axis excluded)."""
    if data_format == "channels_last":
        return shape[:-1], shape[-1]
    return shape[1:], shape[0]


def _tuple_or_int(draw, values, rank):
    if rank > 1 and draw(st.booleans()):
        return tuple(values[:rank])
    return values[0]


def _expand(value, rank):
    return value if isinstance(value, tuple) else (value,) * rank


def _same_padding_is_asymmetric(spatial, pool, strides):
    """Whether Keras's torch backend pads this 'same' pooling unevenly (then by edge values)."""
    for size, k, s in zip(spatial, pool, strides):
        total = k - 1 if s == 1 else max(0, (math.ceil(size / s) - 1) * s + k - size)
        if total % 2:
            return True
    return False


@st.composite
def conv_kwargs(draw, kind, shape):
    rank = {"Conv1D": 1, "Conv2D": 2, "Conv3D": 3}.get(kind, 2)
    causal = kind == "Conv1D" and draw(st.integers(0, 4)) == 0
    data_format = "channels_last" if causal else draw(st.sampled_from(FORMATS))
    spatial, channels = _split(shape, data_format)
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilated = draw(st.integers(0, 3)) == 0
    strides = [1] * rank if dilated else [draw(st.integers(1, 3)) for _ in range(rank)]
    dilation = [draw(st.integers(1, 2)) for _ in range(rank)] if dilated else [1] * rank
    kwargs = dict(kernel_size=_tuple_or_int(draw, kernel, rank),
                  strides=_tuple_or_int(draw, strides, rank),
                  padding="causal" if causal else draw(st.sampled_from(["valid", "same"])),
                  data_format=data_format,
                  dilation_rate=_tuple_or_int(draw, dilation, rank),
                  activation=draw(st.sampled_from(ACTIVATIONS)),
                  use_bias=draw(st.booleans()))
    if kind in ("Conv1D", "Conv2D", "Conv3D"):
        divisors = [g for g in (1, 2, 3) if channels % g == 0]
        groups = draw(st.sampled_from(divisors))
        kwargs.update(filters=groups * draw(st.integers(1, 3)), groups=groups)
    elif kind == "DepthwiseConv2D":
        kwargs.update(depth_multiplier=draw(st.integers(1, 2)))
    elif kind == "SeparableConv2D":
        kwargs.update(filters=draw(st.integers(1, 4)), depth_multiplier=draw(st.integers(1, 2)))
    elif kind == "Conv2DTranspose":
        kwargs.update(filters=draw(st.integers(1, 4)))
        if not dilated and draw(st.booleans()):
            strides_t = _expand(kwargs["strides"], 2)
            kwargs["output_padding"] = tuple(draw(st.integers(0, s - 1)) for s in strides_t)
    if draw(st.booleans()):
        del kwargs["use_bias"]  # the default
    return kwargs


@st.composite
def pooling_kwargs(draw, kind, shape):
    rank = 1 if kind.endswith("1D") else 2
    data_format = draw(st.sampled_from(FORMATS))
    spatial, _ = _split(shape, data_format)
    pool = [draw(st.integers(1, 3)) for _ in range(rank)]
    kwargs = dict(pool_size=_tuple_or_int(draw, pool, rank), data_format=data_format,
                  padding=draw(st.sampled_from(["valid", "same"])))
    if draw(st.booleans()):
        kwargs["strides"] = _tuple_or_int(draw, [draw(st.integers(1, 3)) for _ in range(rank)],
                                          rank)
    strides = _expand(kwargs.get("strides") or kwargs["pool_size"], rank)
    if (kind.startswith("Average") and kwargs["padding"] == "same"
            and _same_padding_is_asymmetric(spatial, _expand(kwargs["pool_size"], rank), strides)):
        # Keras's torch backend (keras/src/backend/torch/nn.py, _apply_same_padding) pads an
        # uneven 'same' average pooling with mode="replicate", so edge values are averaged in;
        # Keras's TensorFlow and JAX backends (and torch's own count_include_pad=False, used
        # by Keras when the padding is even) average over the real cells only, as convlens
        # does (convlens/ops/pool.py). This one case is a backend quirk, not a reference:
        # use 'valid' instead.
        kwargs["padding"] = "valid"
    return kwargs


@st.composite
def reshape_target(draw, shape):
    total = math.prod(shape)
    rank = draw(st.integers(1, 4))
    dims = []
    remaining = total
    for _ in range(rank - 1):
        divisors = [d for d in range(1, remaining + 1) if remaining % d == 0]
        d = draw(st.sampled_from(divisors))
        dims.append(d)
        remaining //= d
    dims.append(remaining)
    dims = draw(st.permutations(dims))
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


@st.composite
def layer_spec(draw, shape):
    """(Keras class name, kwargs) for one layer that accepts inputs of sample ``shape``."""
    rank = len(shape) - 1
    kinds = list(ANY_RANK_LAYERS) + SPATIAL_LAYERS.get(rank, [])
    if len(shape) > 1:
        kinds.append("Flatten")
    kind = draw(st.sampled_from(kinds))
    if kind in ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D",
                "Conv2DTranspose"):
        return kind, draw(conv_kwargs(kind, shape))
    if "Pooling" in kind and not kind.startswith("Global"):
        return kind, draw(pooling_kwargs(kind, shape))
    if kind.startswith("Global"):
        return kind, dict(data_format=draw(st.sampled_from(FORMATS)), keepdims=draw(st.booleans()))
    if kind == "ZeroPadding2D":
        padding = draw(st.one_of(
            st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
            st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                      st.tuples(st.integers(0, 2), st.integers(0, 2)))))
        return kind, dict(padding=padding, data_format=draw(st.sampled_from(FORMATS)))
    if kind == "Dense":
        return kind, dict(units=draw(st.integers(1, 6)),
                          activation=draw(st.sampled_from(ACTIVATIONS)),
                          use_bias=draw(st.booleans()))
    if kind == "Activation":
        return kind, dict(activation=draw(st.sampled_from(ACTIVATIONS[1:])))
    if kind == "ReLU":
        return kind, dict(max_value=draw(st.sampled_from([None, 0.5, 2.0])),
                          negative_slope=draw(st.sampled_from([0.0, 0.1])),
                          threshold=draw(st.sampled_from([0.0, 0.2])))
    if kind == "Dropout":
        kwargs = dict(rate=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])))
        if len(shape) > 1 and draw(st.integers(0, 3)) == 0:
            kwargs["noise_shape"] = (None,) + tuple(
                draw(st.sampled_from([1, d])) for d in shape)
        return kind, kwargs
    if kind == "BatchNormalization":
        axis = draw(st.sampled_from([-1] + list(range(1, len(shape) + 1))))
        return kind, dict(axis=axis, center=draw(st.booleans()), scale=draw(st.booleans()),
                          momentum=draw(st.sampled_from([0.99, 0.5])))
    if kind == "Reshape":
        return kind, dict(target_shape=draw(reshape_target(shape)))
    if kind == "Flatten":
        return kind, dict(data_format=draw(st.sampled_from(FORMATS)))
    raise AssertionError(kind)


def keras_output_shape(kind, kwargs, shape):
    """The sample shape Keras computes, or None if Keras refuses the layer for ``shape``."""
    # Keras draws initializer and dropout seeds from Python's random module; a strategy must
    # leave that module as it found it.
    state = random.getstate()
    try:
        layer = getattr(keras.layers, kind)(**kwargs)
        out = layer.compute_output_shape((None, *shape))
    except (ValueError, TypeError):
        return None
    finally:
        random.setstate(state)
    out = tuple(out[1:])
    if any(d is None or d <= 0 for d in out) or math.prod(out) > 4000:
        return None
    return out


@st.composite
def architectures(draw):
    """(input sample shape, [(kind, kwargs), ...], how the input is declared, batch size)."""
    rank = draw(st.sampled_from([1, 2, 2, 2, 3]))
    shape = tuple(draw(st.integers(3 if rank == 3 else 4, 5 if rank == 3 else 8))
                  for _ in range(rank)) + (draw(st.integers(1, 4)),)
    input_shape = shape
    specs = []
    for _ in range(draw(st.integers(1, 5))):
        kind, kwargs = draw(layer_spec(shape))
        out = keras_output_shape(kind, kwargs, shape)
        if out is None:
            continue
        specs.append((kind, kwargs))
        shape = out
    if not specs:
        specs = [("Flatten", {})]
    weighted = {"Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D",
                "Conv2DTranspose", "Dense", "BatchNormalization"}
    zeroing = [i for i, (kind, kwargs) in enumerate(specs)
               if kind == "Dropout" and kwargs["rate"] == 1.0]
    if zeroing and not any(kind in weighted for kind, _ in specs[zeroing[-1]:]):
        # After Dropout(1.0) the loss must still depend on a weight, or Keras's torch trainer
        # fails ("element 0 of tensors does not require grad"); a Dense bias does.
        specs.append(("Dense", {"units": 2}))
    declare = draw(st.sampled_from(["Input", "input_shape", "build"]))
    named = draw(st.integers(0, 4)) == 0
    return input_shape, specs, declare, named, draw(st.integers(1, 3))


# ---------------------------------------------------------------------------------------------
# Building both models
# ---------------------------------------------------------------------------------------------
def reset_names():
    keras.backend.clear_session(free_memory=False)  # gc.collect() would cost ~0.2 s a call
    clear_session()


def build_model(library, input_shape, specs, declare, named):
    layers_module = keras.layers if library is keras else cl
    layers = [layers_module.Input(input_shape)] if declare == "Input" else []
    for index, (kind, kwargs) in enumerate(specs):
        kwargs = dict(kwargs)
        if named:
            kwargs["name"] = f"{kind.lower()}_number_{index}_with_a_rather_long_name"
        if declare == "input_shape" and index == 0:
            kwargs["input_shape"] = input_shape
        layers.append(getattr(layers_module, kind)(**kwargs))
    return library.Sequential(layers, name="a_model_with_its_own_name" if named else None)


def summary_text(model, columns):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            model.summary()
        return out.getvalue()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def randomise_weights(model, rng):
    """Keras's initial weights with every array drawn at random (variances kept positive)."""
    arrays = []
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "variance" in variable.path:
            arrays.append(rng.uniform(0.5, 2.0, shape).astype(np.float32))
        else:
            arrays.append((0.5 * rng.standard_normal(shape)).astype(np.float32))
    model.set_weights(arrays)


def shared_uniform(rate, shape):
    """The noise both libraries' dropout reads: a function of the rate and the noise shape."""
    seed = zlib.crc32(repr((float(rate), tuple(int(d) for d in shape))).encode())
    return np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)


def keras_dropout(inputs, rate, noise_shape=None, seed=None):
    """Keras's torch-backend dropout with the mask drawn by ``shared_uniform``."""
    if rate == 1.0:
        return torch.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    shape = tuple(inputs.shape) if noise_shape is None else tuple(
        i if n is None else n for i, n in zip(inputs.shape, noise_shape))
    keep = torch.from_numpy(shared_uniform(rate, shape) >= rate)
    keep = torch.broadcast_to(keep, inputs.shape)
    return torch.where(keep, inputs / (1.0 - rate), torch.zeros_like(inputs))


@contextlib.contextmanager
def keras_reference():
    """Real Keras, with its shared dropout noise and plain (not channels_last) torch tensors.

    Keras's torch backend stores conv kernels and inputs in torch's channels_last memory
    format (keras/src/backend/torch/nn.py, _maybe_convert_to_channels_last). On torch 2.13 CPU
    that layout gives a wrong kernel gradient for a 1x1 kernel with unequal strides (e.g.
    Conv2D(2, 1, strides=(1, 2)) on channels_last data: torch's own conv2d on a
    channels_last tensor disagrees with the same tensor made contiguous and with a direct
    sum), and its transposed kernels (a permuted view) make some steps fail outright
    ("grad_weight must be contiguous"). A memory layout changes no value, so the reference
    keeps Keras's maths and uses torch's default layout.
    """
    dropout = keras_torch_random.dropout
    layout = keras_torch_nn._maybe_convert_to_channels_last
    transpose_kernel = keras_torch_nn._transpose_conv_kernel

    def plain(tensor):
        return tensor.clone(memory_format=torch.contiguous_format)

    keras_torch_random.dropout = keras_dropout
    keras_torch_nn._maybe_convert_to_channels_last = plain
    keras_torch_nn._transpose_conv_kernel = lambda kernel: plain(transpose_kernel(kernel))
    try:
        yield
    finally:
        keras_torch_random.dropout = dropout
        keras_torch_nn._maybe_convert_to_channels_last = layout
        keras_torch_nn._transpose_conv_kernel = transpose_kernel


class SharedNoise:
    """Stands in for a convlens Dropout's generator: ``random(shape)`` from ``shared_uniform``."""

    def __init__(self, rate):
        self.rate = rate

    def random(self, shape, dtype=np.float32):
        return shared_uniform(self.rate, shape).astype(dtype)


def assert_close(ours, theirs, what, rtol=1e-4, atol=1e-5):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != Keras {theirs.shape}"
    scale = max(1.0, float(np.nanmax(np.abs(theirs)))) if theirs.size else 1.0
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol * scale, err_msg=what)


def describe(specs):
    return "\n".join(f"  {kind}({kwargs})" for kind, kwargs in specs)


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(architectures(), st.integers(0, 2**31 - 1), st.sampled_from([80, 100, 120, 200]))
def test_random_models_match_keras(architecture, seed, columns):
    input_shape, specs, declare, named, batch = architecture
    where = f"input {input_shape}, declared by {declare}:\n{describe(specs)}"
    rng = np.random.default_rng(seed)

    reset_names()
    theirs = build_model(keras, input_shape, specs, declare, named)
    reset_names()
    ours = build_model(convlens, input_shape, specs, declare, named)

    if declare == "build":
        # Not built yet: '?' shapes and '0 (unbuilt)' params.
        assert summary_text(ours, columns) == summary_text(theirs, columns), where
        theirs.build((None, *input_shape))
        ours.build((None, *input_shape))

    randomise_weights(theirs, rng)
    ours.set_weights(theirs.get_weights())

    assert summary_text(ours, columns) == summary_text(theirs, columns), where
    assert ours.count_params() == theirs.count_params(), where
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights], (
        where)
    assert ours.output_shape == tuple(theirs.output_shape), where

    x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
    # Keras's predict() is its inference call batch by batch; the call is faster to set up.
    with keras_reference():
        expected = keras.ops.convert_to_numpy(theirs(x, training=False))
    assert_close(ours.predict(x, verbose=0), expected, f"predict\n{where}")

    # One SGD step on one batch: the same updated weights (and batch-norm moving statistics).
    y = rng.standard_normal((batch, *theirs.output_shape[1:])).astype(np.float32)
    for layer in ours.layers:
        if isinstance(layer, cl.Dropout):
            layer._generator = SharedNoise(layer.rate)
    for model in (theirs, ours):
        model.compile(optimizer=model is theirs and keras.optimizers.SGD(0.01)
                      or convlens.optimizers.SGD(0.01), loss="mean_squared_error")
    with keras_reference():
        theirs.train_on_batch(x, y)  # what fit() does for one batch, without its set-up
    ours.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    for ours_w, theirs_w in zip(ours.weights, theirs.weights):
        assert_close(ours_w.numpy(), keras.ops.convert_to_numpy(theirs_w.value),
                     f"{theirs_w.path} after one SGD step\n{where}", rtol=1e-3, atol=1e-4)


def test_dropout_noise_is_patched_on_both_sides():
    """The shared noise reaches both libraries' dropout: outputs equal, some values dropped."""
    x = np.ones((2, 50), dtype=np.float32)
    theirs = keras.layers.Dropout(0.5)
    ours = cl.Dropout(0.5)
    ours._generator = SharedNoise(0.5)
    original = keras_torch_random.dropout
    keras_torch_random.dropout = keras_dropout
    try:
        expected = keras.ops.convert_to_numpy(theirs(x, training=True))
    finally:
        keras_torch_random.dropout = original
    got = ours(x, training=True)
    assert 0 < (got == 0).sum() < got.size
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# Regressions: the mismatches the random models found, each minimised to one layer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,kwargs", [
    ("Activation", dict(activation="relu")), ("ReLU", {}), ("Dropout", dict(rate=0.5)),
    ("Reshape", dict(target_shape=(-1,))), ("MaxPooling2D", {}),
    ("AveragePooling1D", dict(pool_size=2)), ("GlobalAveragePooling2D", {}),
    ("Flatten", {}), ("ZeroPadding2D", {}), ("Dense", dict(units=2)),
])
def test_weightless_layers_are_built_at_construction_as_in_keras(kind, kwargs):
    # Keras marks a layer built in __init__ when its class has no build() of its own, so an
    # unbuilt model's summary says "0" for it, and "0 (unbuilt)" only for the others.
    assert getattr(cl, kind)(**kwargs).built == getattr(keras.layers, kind)(**kwargs).built
    reset_names()
    theirs = keras.Sequential([getattr(keras.layers, kind)(**kwargs)])
    reset_names()
    ours = convlens.Sequential([getattr(cl, kind)(**kwargs)])
    assert summary_text(ours, 100) == summary_text(theirs, 100)


def test_layer_built_at_construction_still_checks_its_input_rank():
    layer = cl.MaxPooling2D()
    layer(np.zeros((1, 4, 4, 2), dtype=np.float32))
    assert layer.input_shape == (None, 4, 4, 2)
    with pytest.raises(ValueError, match="expected ndim=4"):
        layer(np.zeros((1, 4, 2), dtype=np.float32))


def test_dropout_rate_one_drops_everything_as_keras():
    x = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    ours = cl.Dropout(1.0)
    expected = keras.ops.convert_to_numpy(keras.layers.Dropout(1.0)(x, training=True))
    np.testing.assert_array_equal(ours(x, training=True), expected)
    np.testing.assert_array_equal(ours.backward(np.ones_like(x)), np.zeros_like(x))


@pytest.mark.parametrize("activation", ["softmax", "log_softmax"])
@pytest.mark.parametrize("kind,kwargs", [
    ("Conv1D", dict(filters=2, kernel_size=1)), ("Conv2D", dict(filters=2, kernel_size=1)),
    ("Conv3D", dict(filters=2, kernel_size=1)), ("DepthwiseConv2D", dict(kernel_size=1)),
    ("SeparableConv2D", dict(filters=2, kernel_size=1)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=1)),
])
def test_channels_first_conv_activation_runs_over_the_last_axis_as_keras(kind, kwargs,
                                                                          activation):
    # Keras applies a conv layer's activation to its output as laid out, so channels_first
    # softmax normalises over the last spatial axis, not over the channels.
    rank = {"Conv1D": 1, "Conv3D": 3}.get(kind, 2)
    args = dict(kwargs, activation=activation, data_format="channels_first")
    x = np.random.default_rng(0).standard_normal((2, 3) + (4, 5, 3)[:rank]).astype(np.float32)
    theirs = getattr(keras.layers, kind)(**args)
    ours = getattr(cl, kind)(**args)
    theirs.build(x.shape)
    ours.build_from_shape((None, *x.shape[1:]))
    ours.set_weights(theirs.get_weights())
    assert_close(ours(x), keras.ops.convert_to_numpy(theirs(x)), kind)
    # and the gradient of a loss through the activation, against torch autograd
    grad_y = np.random.default_rng(1).standard_normal(ours(x).shape).astype(np.float32)
    ours(x, training=True)
    ours.needs_input_grad = True
    grad_x = ours.backward(grad_y)
    xt = torch.tensor(x, requires_grad=True)
    (theirs(xt) * torch.tensor(grad_y)).sum().backward()
    assert_close(grad_x, xt.grad.numpy(), f"{kind} input gradient")
