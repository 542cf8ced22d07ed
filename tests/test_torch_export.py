"""to_torch: a convlens Sequential as a torch module with the same numbers, trainable by torch,
and read back by from_torch to the same numbers; random architectures of every layer kind."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convlens.layers as cl
from convlens import optimizers
from convlens.io import from_torch, load_torch_weights, to_torch
from convlens.models import Model, Sequential

torch = pytest.importorskip("torch")
nn = torch.nn
from tests.test_keras_differential import architectures, build_model  # noqa: E402

# What torch has no module for; anything else refused is a bug.
KNOWN_REFUSALS = ("has no torch", "torch's AvgPool pads", "torch's BatchNorm normalises axis 1")


def many_kinds(data_format="channels_last"):
    """Every layer kind, with the uneven paddings that need more than one torch module."""
    last = data_format == "channels_last"
    return Sequential([
        cl.Input((8, 8, 3) if last else (3, 8, 8)),
        cl.Conv2D(4, 3, activation="relu", padding="same", data_format=data_format),
        cl.BatchNormalization(momentum=0.9, axis=-1 if last else 1),
        cl.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, padding="same",
                           data_format=data_format),
        cl.Conv2DTranspose(3, 3, strides=2, padding="same", data_format=data_format),
        cl.Conv2DTranspose(3, 4, strides=2, padding="same", activation="gelu",
                           data_format=data_format),
        cl.DepthwiseConv2D(3, depth_multiplier=2, activation="tanh", data_format=data_format),
        cl.ZeroPadding2D(((1, 0), (0, 1)), data_format=data_format),
        cl.AveragePooling2D(2, data_format=data_format),
        cl.MaxPooling2D(2, strides=1, padding="same", data_format=data_format),
        cl.GlobalAveragePooling2D(data_format=data_format, keepdims=True),
        cl.Dropout(0.3),
        cl.Flatten(data_format=data_format),
        cl.Dense(12, activation="selu"),
        cl.ReLU(max_value=6.0),
        cl.Reshape((6, 2)),
        cl.Conv1D(3, 2, dilation_rate=2, padding="causal"),
        cl.BatchNormalization(),
        cl.MaxPooling1D(1),
        cl.GlobalMaxPooling1D(),
        cl.Activation("softmax"),
    ])


def volumes():
    return Sequential([
        cl.Input((6, 6, 6, 2)), cl.Conv3D(3, 3, padding="same", strides=2),
        cl.MaxPooling3D(2, padding="same", strides=1), cl.AveragePooling3D(1),
        cl.ReLU(negative_slope=0.1), cl.Flatten(), cl.Dense(2, activation="log_softmax"),
    ])


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([
        rng.uniform(0.5, 2.0, v.shape) if "variance" in v.name else rng.normal(0.0, 0.3, v.shape)
        for v in model.weights
    ])
    return model


def sample(model, n=3, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *model.input_shape[1:])).astype(
        np.float32)


def torch_predict(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("make", [lambda: many_kinds("channels_last"),
                                  lambda: many_kinds("channels_first"), volumes])
def test_outputs_equal_predict_and_read_back_the_same(make):
    model = randomize(make())
    module = to_torch(model)
    assert isinstance(module, nn.Module) and not module.training
    x = sample(model)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(torch_predict(module, x), expected, rtol=1e-5, atol=1e-5)
    back = from_torch(module, model.input_shape[1:])
    np.testing.assert_allclose(back.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert back.count_params() >= model.count_params()  # nothing dropped on the way


def test_one_torch_sgd_step_equals_one_convlens_sgd_step():
    model = randomize(Sequential([
        cl.Input((7, 7, 2)), cl.Conv2D(3, 3, padding="same", activation="relu"),
        cl.MaxPooling2D(2), cl.Conv2D(4, 2, strides=2, padding="same"), cl.Flatten(),
        cl.Dense(3),
    ]))
    module = to_torch(model).train()
    x, y = sample(model, n=5), np.random.default_rng(2).standard_normal((5, 3)).astype(
        np.float32)
    sgd = torch.optim.SGD(module.parameters(), lr=0.1)
    loss = nn.functional.mse_loss(module(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    sgd.step()

    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    history = model.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(loss.item(), rel=1e-5)
    trained = from_torch(module.eval(), model.input_shape[1:])
    for got, want in zip(trained.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_frozen_layers_and_models_do_not_train_in_torch():
    model = Sequential([cl.Input((4,)), cl.Dense(3, name="frozen"), cl.Dense(2, name="free")])
    model.get_layer("frozen").trainable = False
    module = to_torch(model)
    assert [p.requires_grad for p in module.frozen.parameters()] == [False, False]
    assert [p.requires_grad for p in module.free.parameters()] == [True, True]
    model.trainable = False
    assert not any(p.requires_grad for p in to_torch(model).parameters())


def test_weights_are_copies():
    model = Sequential([cl.Input((4,)), cl.Dense(3)])
    module = to_torch(model)
    with torch.no_grad():
        module[0].weight.add_(1.0)
    assert not np.allclose(module[0].weight.detach().numpy().T, model.get_weights()[0])


@pytest.mark.parametrize(("layer", "message"), [
    (cl.AveragePooling2D(2, strides=1, padding="same"), "torch's AvgPool pads both sides"),
    (cl.Activation("exponential"), "'exponential' has no torch.nn module"),
    (cl.Activation(lambda x: x * 2), "custom activation"),
    (cl.ReLU(threshold=0.5), "threshold=0.5"),
    (cl.BatchNormalization(axis=2), "axis=2"),
    (cl.Dropout(0.5, noise_shape=(None, 1, 6, 1)), "noise_shape"),
])
def test_what_torch_has_no_module_for_is_refused_naming_the_layer(layer, message):
    model = Sequential([cl.Input((6, 6, 2)), layer])
    with pytest.raises(ValueError, match=f"'{layer.name}'") as error:
        to_torch(model)
    assert message in str(error.value)


def test_unbuilt_models_are_refused():
    with pytest.raises(ValueError, match="isn't built"):
        to_torch(Sequential([cl.Dense(2)]))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(architectures(), st.integers(0, 2**31 - 1))
def test_random_models_equal_their_torch_modules_and_come_back(architecture, seed):
    input_shape, specs, _, _, batch = architecture
    model = randomize(build_model(__import__("convlens"), input_shape, specs, "Input", False),
                      seed)
    try:
        module = to_torch(model)
    except ValueError as error:
        assert any(reason in str(error) for reason in KNOWN_REFUSALS), str(error)
        return
    x = sample(model, n=batch, seed=seed)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(torch_predict(module, x), expected, rtol=1e-5, atol=1e-5)
    back = from_torch(module, model.input_shape[1:])
    np.testing.assert_allclose(back.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


# ----- from_torch: the cases it used to refuse ---------------------------------------------
@pytest.mark.parametrize("size", [3, 4, 7])
def test_dcgan_transposed_conv_becomes_keras_same(size):
    torch.manual_seed(0)
    module = nn.Sequential(nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1))
    model = from_torch(module, (3, size, size + 1))
    layer = model.layers[0]
    assert (layer.padding, layer.output_padding, layer.kernel_size) == ("same", None, (4, 4))
    x = np.random.default_rng(0).standard_normal((2, 3, size, size + 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), torch_predict(module, x),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", [
    nn.MaxPool3d(2), nn.MaxPool3d(3, stride=1, padding=1), nn.AvgPool3d(2, stride=1),
    nn.AvgPool3d(3, stride=2, padding=1, count_include_pad=False),
])
def test_3d_pooling_converts(pool):
    module = nn.Sequential(nn.Conv3d(2, 3, 1), pool)
    model = from_torch(module, (2, 5, 7, 5))
    assert type(model.layers[-1]).__name__.endswith("Pooling3D")
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 7, 5)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), torch_predict(module, x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_trained_torch_weights_come_back_into_the_same_model(data_format):
    model = randomize(many_kinds(data_format))
    module = to_torch(model).train()
    x = sample(model, n=4)
    sgd = torch.optim.SGD(module.parameters(), lr=0.05)
    for _ in range(2):  # BatchNorm's running statistics move too
        sgd.zero_grad()
        module(torch.from_numpy(x)).square().mean().backward()
        sgd.step()
    module.eval()
    before = model.get_weights()
    load_torch_weights(model, module)
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    np.testing.assert_allclose(model.predict(x, verbose=0), torch_predict(module, x),
                               rtol=1e-5, atol=1e-5)


def test_weights_of_another_module_are_refused_before_anything_changes():
    model = randomize(Sequential([cl.Input((4,)), cl.Dense(3, name="a"), cl.Dense(2, name="b")]))
    before = model.get_weights()
    other = to_torch(Sequential([cl.Input((4,)), cl.Dense(3, name="a"), cl.Dense(5, name="b")]))
    with pytest.raises(ValueError, match=r"holds shape \(3, 5\) for .b/kernel. of shape \(3, 2\)"):
        load_torch_weights(model, other)
    with pytest.raises(ValueError, match="has no"):
        load_torch_weights(model, nn.Sequential(nn.Linear(4, 3)))
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_layers_are_looked_up_in_the_kind_registry():
    class MyConv(cl.Conv2D):  # a subclass computes as its registered base
        pass

    class Doubling(cl.Layer):  # nobody registered it
        def call(self, x, training=False):
            return 2 * x

    model = randomize(Sequential([cl.Input((5, 5, 2)), MyConv(3, 3)]))
    x = sample(model)
    np.testing.assert_allclose(torch_predict(to_torch(model), x), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"layer 1 '.*' \(Doubling\) has no torch form.*Conv2D"):
        to_torch(Sequential([cl.Input((5, 5, 2)), MyConv(3, 3), Doubling()]))


# ----- Functional models -------------------------------------------------------------------
def residual_graph(data_format="channels_last"):
    last = data_format == "channels_last"
    axis = -1 if last else 1
    x = cl.Input((8, 8, 3) if last else (3, 8, 8))
    a = cl.Conv2D(4, 3, padding="same", activation="relu", data_format=data_format)(x)
    b = cl.Conv2D(4, 1, data_format=data_format)(x)
    merged = cl.Add()([a, b])
    both = cl.Concatenate(axis=axis)([merged, cl.MaxPooling2D(1, data_format=data_format)(a)])
    normal = cl.BatchNormalization(axis=axis)(both)
    shared = cl.Conv2D(8, 1, data_format=data_format, name="shared")
    mixed = [cl.Subtract()([shared(normal), normal]), cl.Multiply()([normal, normal]),
             cl.Average()([normal, shared(normal)]), cl.Maximum()([normal, normal])]
    top = cl.Minimum()(mixed[:2] + mixed[2:])
    pooled = cl.GlobalAveragePooling2D(data_format=data_format)(top)
    return Model(x, [cl.Dense(3, activation="softmax")(pooled), cl.Dense(2)(pooled)])


def two_inputs():
    left, right = cl.Input((6,)), cl.Input((4,))
    joined = cl.Concatenate()([cl.Dense(5, activation="tanh")(left), cl.Dense(5)(right)])
    return Model([left, right], cl.Dense(1)(joined))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_functional_models_equal_their_torch_graphs_and_come_back(data_format):
    model = randomize(residual_graph(data_format))
    module = to_torch(model)
    assert not module.training
    x = sample(model)
    expected = model.predict(x, verbose=0)
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    assert len(got) == 2
    for mine, want in zip(got, expected):
        np.testing.assert_allclose(mine.numpy(), want, rtol=1e-5, atol=1e-5)
    back = from_torch(module, model.input_shape[1:])
    for mine, want in zip(back.predict(x, verbose=0), expected):
        np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-5)
    # the shared layer is one torch module, used twice
    assert sum(1 for name, _ in module.named_modules() if name == "layers.shared") == 1


def test_functional_models_with_two_inputs_train_and_come_back_into_convlens():
    model = randomize(two_inputs())
    module = to_torch(model).train()
    rng = np.random.default_rng(3)
    left, right = rng.standard_normal((4, 6), np.float32), rng.standard_normal((4, 4), np.float32)
    sgd = torch.optim.SGD(module.parameters(), lr=0.1)
    module(torch.from_numpy(left), torch.from_numpy(right)).square().mean().backward()
    sgd.step()
    before = model.get_weights()
    load_torch_weights(model, module.eval())
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with torch.no_grad():
        want = module(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    np.testing.assert_allclose(model.predict([left, right], verbose=0), want, rtol=1e-5,
                               atol=1e-6)
