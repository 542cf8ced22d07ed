"""Model specs: round trips over random valid specs, and one-line errors at the right column."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from convlens import layers as L
from convlens.models import Sequential
from convlens.spec import LAYER_WORDS, SpecError, format_spec, parse_spec

SEED = (
    "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu | maxpool 2 | flatten | dense 10 softmax"
)

# Names are generated per process and the first layer's Keras-2 input_shape becomes an Input
# segment, so neither is part of what a spec describes.
_IGNORED = {"name", "batch_input_shape"}


def architecture(model: Sequential) -> list:
    return [
        (type(layer).__name__, {k: v for k, v in layer.get_config().items() if k not in _IGNORED})
        for layer in model.layers
    ]


def test_seed_model_builds_and_is_canonical():
    model = parse_spec(SEED)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    assert model.layers[1].kernel.shape == (3, 3, 32, 64)
    assert model.output_shape == (None, 10)
    assert format_spec(model) == SEED


def test_keras_objects_format_to_spec():
    model = Sequential(
        [
            L.Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)),
            L.Conv2D(64, (3, 3), activation="relu", strides=(1, 1), padding="same", use_bias=False),
            L.DepthwiseConv2D(3, depth_multiplier=2, dilation_rate=2),
            L.ZeroPadding2D(((1, 2), (3, 4))),
            L.MaxPooling2D(3, strides=2),
            L.GlobalAveragePooling2D(keepdims=True),
        ]
    )
    text = format_spec(model)
    assert text == (
        "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu padding=same bias=false | "
        "depthwise 3 multiplier=2 dilation=2 | zeropad 1x2x3x4 | maxpool 3 strides=2 | "
        "globalavgpool keepdims=true"
    )
    assert architecture(parse_spec(text)) == architecture(model)


def test_names_round_trip_when_asked():
    model = parse_spec("input 4x4x2 name=pixels | conv2d 3 2 name=first | flatten name=flat")
    assert [layer.name for layer in model.layers] == ["first", "flat"]
    text = format_spec(model, names=True)
    assert "name=first" in text and "name=pixels" in text


# ----- random valid specs ---------------------------------------------------------------------

_ACTS = st.sampled_from(["", " relu", " tanh", " sigmoid", " activation=elu"])
_SIZE = st.sampled_from(["1", "2", "3", "1x3", "3x1", "2x2"])


def _opt(strategy, key):
    return st.one_of(st.just(""), strategy.map(lambda v: f" {key}={v}"))


_conv2d = st.builds(
    lambda f, k, a, s, p, d, b: f"conv2d {f} {k}{a}{s}{p}{d}{b}",
    st.integers(1, 6),
    _SIZE,
    _ACTS,
    _opt(st.sampled_from(["1", "2", "1x2"]), "strides"),
    _opt(st.sampled_from(["valid", "same"]), "padding"),
    st.sampled_from(["", "", " dilation=2"]),
    _opt(st.sampled_from(["true", "false"]), "bias"),
)
_spatial = st.one_of(
    _conv2d,
    st.builds(
        lambda k, m, a: f"depthwise {k}{a}{m}", _SIZE, _opt(st.integers(1, 3), "multiplier"), _ACTS
    ),
    st.builds(
        lambda f, k, a: f"separable {f} {k}{a} padding=same", st.integers(1, 5), _SIZE, _ACTS
    ),
    st.builds(
        lambda f, k, s, a: f"deconv {f} {k}{a}{s}",
        st.integers(1, 4),
        _SIZE,
        _opt(st.sampled_from(["1", "2"]), "strides"),
        _ACTS,
    ),
    st.builds(
        lambda w, k, s: f"{w} {k}{s}",
        st.sampled_from(["maxpool", "avgpool", "maxpool2d"]),
        st.sampled_from(["1", "2", "2x1"]),
        _opt(st.sampled_from(["1", "2"]), "strides"),
    ),
    st.builds(lambda p: f"zeropad {p}", st.sampled_from(["0", "1", "1x2", "0x1x2x3"])),
    st.sampled_from(
        [
            "batchnorm",
            "batchnorm momentum=0.9 epsilon=0.01",
            "relu",
            "relu max_value=6",
            "relu negative_slope=0.1 threshold=0.5",
            "activation tanh",
            "dropout 0.25",
            "dropout 0",
        ]
    ),
)
_head = st.one_of(
    st.just(""),
    st.builds(lambda u, a: f" | flatten | dense {u}{a}", st.integers(1, 9), _ACTS),
    st.builds(
        lambda w, u: f" | {w} | dense {u} bias=false",
        st.sampled_from(["globalavgpool", "globalmaxpool"]),
        st.integers(1, 9),
    ),
)


@st.composite
def valid_specs(draw) -> str:
    height, width = draw(st.integers(6, 14)), draw(st.integers(6, 14))
    channels = draw(st.integers(1, 4))
    body = draw(st.lists(_spatial, min_size=0, max_size=4))
    text = " | ".join([f"input {height}x{width}x{channels}", *body]) + draw(_head)
    return draw(st.sampled_from([text, text.replace(" | ", "|"), "  " + text + " "]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(valid_specs())
def test_random_specs_round_trip(text):
    try:
        model = parse_spec(text)
    except SpecError as error:
        # Random stacks may shrink the input below a kernel; those are construction errors,
        # reported at a segment, never a grammar failure.
        assert "cannot build" in error.message, error
        assume(False)
    canonical = format_spec(model)
    again = parse_spec(canonical)
    assert architecture(again) == architecture(model)
    assert again.output_shape == model.output_shape
    assert format_spec(again) == canonical


@pytest.mark.parametrize(
    "words",
    [
        "input 9x9x2 | conv1d 4 3",
        "input 12x3 | conv1d 4 3 relu padding=causal dilation=2 | globalmaxpool1d",
        "input 6x6x6x2 | conv3d 4 3x1x2 strides=2 | maxpool3d 2 | globalavgpool",
        "input 16x4 | maxpool1d 2 | avgpool1d 2 padding=same | globalavgpool1d",
        "input 784 | reshape 28x28x1 | conv2d 8 3 groups=1 | reshape -1x8 | dense 3",
        "input 8x8x4 | conv2d 8 3 groups=2 | deconv 2 3 strides=2 output_padding=1",
        "input 8x8x4 | conv2d 8 3 data_format=channels_first",
    ],
)
def test_more_layers_round_trip(words):
    try:
        model = parse_spec(words)
    except SpecError as error:
        assert "cannot build" in error.message  # e.g. channels_first on a channels_last input
        return
    canonical = format_spec(model)
    assert architecture(parse_spec(canonical)) == architecture(model)
    assert format_spec(parse_spec(canonical)) == canonical


def test_canonical_form_collapses_sizes_and_defaults():
    text = "input 10x10x3|conv2d 4 3x3 activation=relu strides=1x1 padding=valid use_bias=true"
    assert format_spec(parse_spec(text)) == "input 10x10x3 | conv2d 4 3 relu"


# ----- errors ---------------------------------------------------------------------------------


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"spec error at column {info.value.column} (")
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.mark.parametrize(
    "text, column, token, expected",
    [
        ("input 28x28x1 | conv2d 32 3 relu | conv2x 64 3", 36, "conv2x", "unknown layer 'conv2x'"),
        ("conv2d 32 3 stride=2", 13, "stride=2", "did you mean 'strides'"),
        ("input 28x28x1 | conv2d x 3", 24, "x", "positive integer"),
        ("input 28x28x1 |  conv2d 32 3x3x3", 28, "3x3x3", "1 or 2 sizes"),
        ("input 28x28x1 | conv2d 32 3 relu 5", 34, "5", "unexpected argument '5'"),
        ("input 28x28x1 | conv2d 32 3 same", 29, "same", "padding=same"),
        ("input 28x28x1 | conv2d 32 3 rellu", 29, "rellu", "unknown activation"),
        ("dense 10 | dropout 1.5", 20, "1.5", "between 0 and 1"),
        ("conv2d 8 3 padding=full", 20, "full", "valid or same"),
        ("conv2d 8 3 | | dense 1", 14, "|", "empty layer"),
        ("conv2d 8 3 |", 12, "|", "empty layer"),
        ("conv2d 8 3 bias=false bias=true", 23, "bias=true", "given twice"),
        ("batchnorm momentum=high", 20, "high", "number"),
    ],
)
def test_malformed_specs_point_at_the_column(text, column, token, expected):
    error = _error(text)
    assert (error.column, error.token) == (column, token)
    assert text[column - 1 :].startswith(token)
    assert expected in error.message


def test_unknown_layer_lists_the_words():
    error = _error("input 28x28x1 | conv2d 32 3 relu | conv2x 64 3")
    assert error.column == 36
    for word in LAYER_WORDS:
        assert word in error.message


def test_value_column_points_after_the_equals_sign():
    error = _error("conv2d 8 3 padding=full")
    assert error.column == len("conv2d 8 3 padding=") + 1


def test_missing_arguments_and_empty_spec():
    assert "needs KERNEL" in _error("input 4x4x1 | conv2d 32").message
    assert _error("input 4x4x1 | conv2d 32").column == 15
    assert "empty spec" in _error("   ").message
    assert "only be the first" in _error("dense 3 | input 4").message


def test_construction_errors_name_the_segment():
    error = _error("input 5x5x1 | conv2d 8 7 relu")
    assert error.column == 15
    assert error.token == "conv2d 8 7 relu"
    assert "cannot build conv2d (segment 2)" in error.message
    error = _error("input 28x28x1 | conv2d 32 3 groups=2")
    assert "groups" in error.message


def test_non_string_and_unsupported_layers():
    with pytest.raises(TypeError):
        parse_spec(42)
    model = Sequential([L.Input((4,)), L.Dense(2, activation=lambda x: x)])
    with pytest.raises(ValueError, match="custom activation"):
        format_spec(model)
