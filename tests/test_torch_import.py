"""``convlens.io.from_torch``: torch Sequentials rebuilt in convlens give torch's numbers.

Every comparison runs the torch module in eval mode on the same channels-first input and asks
for agreement within 1e-5 relative (plus 1e-5 of the largest reference value: float32 sums).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convlens.layers as cl
from convlens.io import from_torch

nn = torch.nn
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACTIVATIONS = [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.ReLU6,
               nn.Softplus, nn.Softsign, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid,
               lambda: nn.LeakyReLU(0.1), nn.Identity]


def torch_output(module, x: np.ndarray) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def assert_same(model, module, x: np.ndarray) -> None:
    expected = torch_output(module, x)
    actual = model.predict(x, verbose=0)
    assert actual.shape == expected.shape
    atol = 1e-5 * max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=atol)


def randomize_batchnorm(module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine weights, so the mapping of each one shows."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                channels = child.num_features
                child.running_mean.copy_(torch.randn(channels, generator=generator))
                child.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                if child.affine:
                    child.weight.copy_(torch.randn(channels, generator=generator))
                    child.bias.copy_(torch.randn(channels, generator=generator))


@st.composite
def conv_models(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    size = 5 if rank == 3 else draw(st.integers(8, 11))
    channels = draw(st.sampled_from([1, 2, 4]))
    modules = []
    shape = [size] * rank
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[rank]
    for _ in range(draw(st.integers(1, 2))):
        groups = draw(st.sampled_from([g for g in (1, 2) if channels % g == 0]))
        out = groups * draw(st.integers(1, 3))
        kernel = draw(st.integers(1, 3))
        dilation = draw(st.integers(1, 2))
        stride = 1 if dilation > 1 else draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["valid", 0, 1, kernel // 2, "same", "tuple"]))
        if padding == "same" and stride > 1:
            padding = 1
        if padding == "tuple":
            padding = tuple(draw(st.integers(0, 2)) for _ in range(rank))
        pads = (0,) * rank if padding in ("valid", "same") else (
            padding if isinstance(padding, tuple) else (padding,) * rank)
        span = dilation * (kernel - 1) + 1
        if min(shape) < span:  # keep every output non-empty
            padding, stride, pads = "same", 1, (0,) * rank
        if padding != "same":
            shape = [(n + 2 * p - span) // stride + 1 for n, p in zip(shape, pads)]
        modules.append(conv(channels, out, kernel, stride=stride, padding=padding,
                            dilation=dilation, groups=groups, bias=draw(st.booleans())))
        channels = out
        if draw(st.booleans()):
            batchnorm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[rank]
            modules.append(batchnorm(channels, eps=draw(st.sampled_from([1e-5, 1e-3]))))
        modules.append(draw(st.sampled_from(ACTIVATIONS))())
    if rank < 3 and min(shape) >= 2 and draw(st.booleans()):
        pool = draw(st.sampled_from(["max", "avg"]))
        layer = {("max", 1): nn.MaxPool1d, ("max", 2): nn.MaxPool2d,
                 ("avg", 1): nn.AvgPool1d, ("avg", 2): nn.AvgPool2d}[pool, rank]
        if draw(st.booleans()):
            modules.append(layer(2))
            shape = [n // 2 for n in shape]
        else:
            extra = {"count_include_pad": False} if pool == "avg" else {}
            modules.append(layer(3, stride=1, padding=1, **extra))
    if rank < 3 and draw(st.booleans()):
        adaptive = nn.AdaptiveAvgPool1d if rank == 1 else nn.AdaptiveAvgPool2d
        modules += [adaptive(1), nn.Flatten()]
        features = channels
    else:
        modules.append(nn.Flatten())
        features = channels * int(np.prod(shape))
    modules += [nn.Dropout(0.3), nn.Linear(features, 3)]
    return nn.Sequential(*modules), (modules[0].in_channels, *[size] * rank)


@SETTINGS
@given(conv_models(), st.integers(0, 2**31 - 1))
def test_random_conv_models_give_torchs_numbers(case, seed):
    module, input_shape = case
    generator = torch.Generator().manual_seed(seed)
    randomize_batchnorm(module, generator)
    model = from_torch(module, input_shape)
    x = np.random.default_rng(seed).standard_normal((2, *input_shape)).astype(np.float32)
    assert_same(model, module, x)
    assert model.input_shape == (None, *input_shape)


@SETTINGS
@given(
    kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same"]), output_padding=st.integers(0, 2),
    size=st.integers(1, 5), bias=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_random_conv_transpose_gives_torchs_numbers(kernel, stride, dilation, padding,
                                                     output_padding, size, bias, seed):
    if stride > 1:
        dilation = 1
    span = dilation * (kernel - 1) + 1
    pad = 0 if padding == "valid" else span // 2
    output_padding = min(output_padding, stride - 1) if padding == "valid" else 0
    if (size - 1) * stride + span - 2 * pad + output_padding < 1:
        pad = 0
    torch.manual_seed(seed)
    module = nn.Sequential(nn.ConvTranspose2d(3, 2, kernel, stride=stride, padding=pad,
                                              output_padding=output_padding,
                                              dilation=dilation, bias=bias), nn.Tanh())
    model = from_torch(module, (3, size, size + 1))
    x = np.random.default_rng(seed).standard_normal((2, 3, size, size + 1)).astype(np.float32)
    assert_same(model, module, x)


def test_classic_mnist_cnn_flattens_in_torchs_channel_major_order():
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10), nn.Softmax(dim=1),
    )
    model = from_torch(module, (1, 28, 28))
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "Activation", "Conv2D", "Activation", "MaxPooling2D", "Dropout", "Flatten",
        "Dense", "Activation", "Dropout", "Dense", "Activation",
    ]
    assert model.layers[2].kernel.shape == (3, 3, 32, 64)
    assert model.layers[4].output_shape == (None, 64, 12, 12)
    assert model.count_params() == sum(p.numel() for p in module.parameters()) == 1_199_882
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert_same(model, module, x)
    # The numbers only agree because Flatten keeps torch's C-major order: a channels-last
    # flatten of the same tensor feeds the Dense layer a permutation.
    model.layers[6].data_format = "channels_first"
    assert not np.allclose(model.predict(x, verbose=0), torch_output(module, x), atol=1e-4)


def test_nested_sequentials_batchnorm_mapping_and_global_pooling():
    torch.manual_seed(1)
    module = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, eps=1e-4, momentum=0.2)),
        nn.Sequential(nn.Sequential(nn.ReLU(), nn.ZeroPad2d((1, 0, 2, 1)))),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2), nn.LogSoftmax(dim=-1),
    )
    randomize_batchnorm(module, torch.Generator().manual_seed(1))
    model = from_torch(module, (3, 7, 6))
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Conv2D", "BatchNormalization", "Activation", "ZeroPadding2D",
                     "ZeroPadding2D", "Conv2D", "GlobalAveragePooling2D", "Dense", "Activation"]
    conv, batchnorm, padding = model.layers[0], model.layers[1], model.layers[3]
    assert conv.padding == "same" and conv.data_format == "channels_first"
    assert batchnorm.axis == 1 and batchnorm.epsilon == 1e-4
    assert batchnorm.momentum == pytest.approx(0.8)  # keras momentum = 1 - torch momentum
    np.testing.assert_array_equal(batchnorm.moving_variance.value,
                                  module[0][1].running_var.numpy())
    assert padding.padding == ((2, 1), (1, 0))  # torch lists (left, right, top, bottom)
    # stride 2 on a padded 10x7 input: Keras 'same' would pad differently, so zeros are explicit
    assert model.layers[5].padding == "valid" and model.layers[5].groups == 2
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6)).astype(np.float32)
    assert_same(model, module, x)


def test_explicit_padding_of_1d_and_3d_convolutions_goes_through_reshapes():
    torch.manual_seed(2)
    module = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=2), nn.ConstantPad1d((1, 2), 0.0),
                           nn.Flatten())
    model = from_torch(module, (2, 9))
    assert "Reshape" in [type(layer).__name__ for layer in model.layers]
    assert_same(model, module, np.random.default_rng(2).standard_normal((2, 2, 9), "float32"))
    module = nn.Sequential(nn.Conv3d(1, 2, (1, 2, 3), padding=(1, 0, 2), stride=(2, 1, 1)))
    model = from_torch(module, (1, 4, 5, 6))
    assert_same(model, module, np.random.default_rng(3).standard_normal((2, 1, 4, 5, 6),
                                                                        "float32"))


def test_pooling_is_converted_only_where_keras_computes_the_same_windows():
    """Every accepted configuration gives torch's numbers; the common ones are accepted."""
    x = np.random.default_rng(4).standard_normal((2, 2, 7, 7)).astype(np.float32)
    accepted = set()
    for kind, n, k, s, p, ceil, include in itertools.product(
        ("max", "avg"), (5, 7), (1, 2, 3), (1, 2, 3), (0, 1), (False, True), (False, True)
    ):
        if p > k // 2:
            continue
        if kind == "max":
            if include:
                continue
            pool = nn.MaxPool2d(k, s, p, ceil_mode=ceil)
        else:
            pool = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include)
        module = nn.Sequential(pool)
        try:
            model = from_torch(module, (2, n, n))
        except ValueError as error:
            assert "cannot convert module 0" in str(error) and "Pool2d" in str(error)
            continue
        assert_same(model, module, np.ascontiguousarray(x[:, :, :n, :n]))
        accepted.add((kind, n, k, s, p, ceil, include))
    assert ("max", 7, 2, 2, 0, False, False) in accepted  # the classic MaxPool2d(2), 'valid'
    assert ("max", 7, 3, 1, 1, False, False) in accepted  # 'same'
    assert ("avg", 7, 3, 1, 1, False, False) in accepted  # 'same', divisor = real cells
    assert ("max", 7, 2, 2, 0, True, False) in accepted  # ceil_mode == 'same' here
    assert ("avg", 7, 3, 1, 1, False, True) not in accepted  # count_include_pad=True


def test_adaptive_pooling_with_tiling_windows_and_keepdims():
    module = nn.Sequential(nn.AdaptiveMaxPool2d((2, 3)), nn.AdaptiveAvgPool2d(1))
    model = from_torch(module, (2, 4, 6))
    assert [type(layer).__name__ for layer in model.layers] == [
        "MaxPooling2D", "GlobalAveragePooling2D"]
    assert model.output_shape == (None, 2, 1, 1)
    assert_same(model, module, np.random.default_rng(5).standard_normal((2, 2, 4, 6), "float32"))


@pytest.mark.parametrize(
    ("module", "input_shape", "message"),
    [
        (nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
         (1, 5, 5), "module 1 '1' (Conv2d)"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, dilation=2)), (1, 9, 9), "dilation"),
        (nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 2), nn.Upsample(2))), (4,),
         "module 2 '1.1' (Upsample)"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Softmax(dim=1)), (1, 5, 5), "last axis"),
        (nn.Sequential(nn.AvgPool2d(3, 1, 1)), (1, 5, 5), "count_include_pad"),
        (nn.Sequential(nn.ConvTranspose2d(1, 1, 3, 2, padding=2)), (1, 4, 4),
         "crop the full output by ((2, 2), (2, 2))"),
        (nn.Sequential(nn.ConvTranspose2d(1, 1, 3, 2), nn.ZeroPad2d((0, -1, 0, 0))), (1, 4, 4),
         "and a crop of ((0, 0), (0, 1))"),
        (nn.Sequential(nn.ConstantPad2d(1, float("-inf")), nn.MaxPool2d(2)), (1, 4, 4),
         "not Keras's 'same' padding"),
        (nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Sequential(nn.Flatten(), nn.Linear(
            2 * 25, 4), nn.Hardtanh(-1, 1))), (1, 5, 5), "module 4 '2.2' (Hardtanh): min_val"),
        (nn.Sequential(nn.Linear(5, 2)), (4,), "in_features=5"),
        (nn.Sequential(nn.GELU(approximate="tanh")), (4,), "approximate"),
        (nn.Sequential(nn.Conv2d(1, 1, 3)), (1, 5), "4-D input"),
        (nn.Sequential(nn.BatchNorm2d(1, track_running_stats=False)), (1, 3, 3),
         "track_running_stats"),
    ],
)
def test_unsupported_modules_are_refused_with_their_index_and_name(module, input_shape,
                                                                  message):
    with pytest.raises(ValueError, match="from_torch: cannot convert module") as error:
        from_torch(module, input_shape)
    assert message in str(error.value)


def test_files_and_bad_arguments_are_refused_before_anything_is_read(tmp_path):
    with pytest.raises(TypeError, match="weights_only=True"):
        from_torch(str(tmp_path / "model.pt"), (1, 28, 28))
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        from_torch([nn.ReLU()], (3,))
    with pytest.raises(ValueError, match="without the batch axis"):
        from_torch(nn.Sequential(nn.ReLU()), (None, 3))


def test_a_single_module_and_the_converted_model_trains():
    model = from_torch(nn.Linear(3, 2), 3)
    assert isinstance(model.layers[0], cl.Dense)
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 3), np.float32)
    before = model.evaluate(x, np.zeros((4, 2), np.float32), verbose=0)
    model.fit(x, np.zeros((4, 2), np.float32), epochs=3, verbose=0)
    assert model.evaluate(x, np.zeros((4, 2), np.float32), verbose=0) < before


@pytest.mark.parametrize("mode, rank", [("nearest", 2), ("bilinear", 2), ("nearest", 3)])
def test_upsample_becomes_keras_upsampling(mode, rank):
    nn = torch.nn
    conv = nn.Conv2d if rank == 2 else nn.Conv3d
    module = nn.Sequential(conv(2, 3, 3, padding=1), nn.Upsample(scale_factor=2, mode=mode),
                           conv(3, 2, 1)).eval()
    shape = (2, 4, 5) if rank == 2 else (2, 3, 4, 3)
    model = from_torch(module, shape)
    assert any(type(layer).__name__.startswith("UpSampling") for layer in model.layers)
    x = np.random.default_rng(rank).random((2, *shape), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               module(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_upsample_keras_cannot_express_is_refused_naming_the_module():
    module = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="bilinear",
                                                   align_corners=True))
    with pytest.raises(ValueError, match="Upsample.*align_corners=True"):
        from_torch(module, (1, 4, 4))
