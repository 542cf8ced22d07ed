"""The table of spec layers: each layer word, its Keras class and its arguments in order.

The parser reads a segment against this table and the formatter writes one from it, so a
layer gains a spec form by one entry in ``FORMS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from convlens import layers as L

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One argument of a segment: its spec key, value kind, Keras keyword and default text."""

    key: str
    kind: str
    kwarg: str
    default: object = REQUIRED  # spec text of the default, None for "absent", or REQUIRED
    positional: bool = False


@dataclass(frozen=True)
class LayerForm:
    word: str
    cls: type
    params: tuple[Param, ...]
    rank: int = 2
    aliases: tuple[str, ...] = ()

    @property
    def positionals(self) -> list[Param]:
        return [p for p in self.params if p.positional]

    def usage(self) -> str:
        parts = [self.word]
        for p in self.positionals:
            parts.append(p.key.upper() if p.default is REQUIRED else f"[{p.key.upper()}]")
        return " ".join(parts)


def _conv_options(causal: bool = False) -> tuple[Param, ...]:
    return (
        Param("strides", "size", "strides", "1"),
        Param("padding", "padding1d" if causal else "padding", "padding", "valid"),
        Param("dilation", "size", "dilation_rate", "1"),
    )


_NAME = Param("name", "name", "name", None)
_FORMAT = Param("data_format", "format", "data_format", "channels_last")
_BIAS = Param("bias", "bool", "use_bias", "true")
_ACT = Param("activation", "activation", "activation", "linear", positional=True)


def _conv(word: str, cls: type, rank: int) -> LayerForm:
    return LayerForm(
        word,
        cls,
        (
            Param("filters", "count", "filters", positional=True),
            Param("kernel", "size", "kernel_size", positional=True),
            _ACT,
            *_conv_options(causal=rank == 1),
            Param("groups", "count", "groups", "1"),
            _BIAS,
            _FORMAT,
            _NAME,
        ),
        rank,
    )


def _pool(word: str, cls: type, rank: int, aliases=()) -> LayerForm:
    return LayerForm(
        word,
        cls,
        (
            Param("pool", "size", "pool_size", "2", positional=True),
            Param("strides", "size", "strides", "pool"),  # "pool": defaults to the pool size
            Param("padding", "padding", "padding", "valid"),
            _FORMAT,
            _NAME,
        ),
        rank,
        aliases,
    )


def _global(word: str, cls: type, rank: int, aliases=()) -> LayerForm:
    return LayerForm(
        word, cls, (Param("keepdims", "bool", "keepdims", "false"), _FORMAT, _NAME), rank, aliases
    )


# A separable conv is a depthwise conv followed by a 1x1 conv of `filters`: its spec is
# depthwise's with `filters` in front.
_DEPTHWISE = (
    Param("kernel", "size", "kernel_size", positional=True),
    _ACT,
    Param("multiplier", "count", "depth_multiplier", "1"),
    *_conv_options(),
    _BIAS,
    _FORMAT,
    _NAME,
)

FORMS: tuple[LayerForm, ...] = (
    LayerForm("input", L.InputLayer, (Param("shape", "dims", "shape", positional=True), _NAME)),
    _conv("conv1d", L.Conv1D, 1),
    _conv("conv2d", L.Conv2D, 2),
    _conv("conv3d", L.Conv3D, 3),
    LayerForm("depthwise", L.DepthwiseConv2D, _DEPTHWISE),
    LayerForm(
        "separable",
        L.SeparableConv2D,
        (Param("filters", "count", "filters", positional=True), *_DEPTHWISE),
    ),
    LayerForm(
        "deconv",
        L.Conv2DTranspose,
        (
            Param("filters", "count", "filters", positional=True),
            Param("kernel", "size", "kernel_size", positional=True),
            _ACT,
            *_conv_options(),
            Param("output_padding", "size0", "output_padding", None),
            _BIAS,
            _FORMAT,
            _NAME,
        ),
        aliases=("conv2dtranspose",),
    ),
    LayerForm(
        "dense", L.Dense, (Param("units", "count", "units", positional=True), _ACT, _BIAS, _NAME)
    ),
    LayerForm("flatten", L.Flatten, (_FORMAT, _NAME)),
    LayerForm(
        "reshape", L.Reshape, (Param("shape", "dims-1", "target_shape", positional=True), _NAME)
    ),
    LayerForm(
        "activation",
        L.Activation,
        (Param("activation", "activation", "activation", positional=True), _NAME),
    ),
    LayerForm(
        "relu",
        L.ReLU,
        (
            Param("max_value", "float?", "max_value", "none"),
            Param("negative_slope", "float", "negative_slope", "0.0"),
            Param("threshold", "float", "threshold", "0.0"),
            _NAME,
        ),
    ),
    LayerForm("dropout", L.Dropout, (Param("rate", "rate", "rate", positional=True), _NAME)),
    _pool("maxpool1d", L.MaxPooling1D, 1),
    _pool("maxpool", L.MaxPooling2D, 2, ("maxpool2d",)),
    _pool("maxpool3d", L.MaxPooling3D, 3),
    _pool("avgpool1d", L.AveragePooling1D, 1),
    _pool("avgpool", L.AveragePooling2D, 2, ("avgpool2d",)),
    _pool("avgpool3d", L.AveragePooling3D, 3),
    _global("globalavgpool1d", L.GlobalAveragePooling1D, 1),
    _global("globalavgpool", L.GlobalAveragePooling2D, 2, ("globalavgpool2d",)),
    _global("globalmaxpool1d", L.GlobalMaxPooling1D, 1),
    _global("globalmaxpool", L.GlobalMaxPooling2D, 2, ("globalmaxpool2d",)),
    LayerForm(
        "zeropad",
        L.ZeroPadding2D,
        (Param("padding", "pad", "padding", "1", positional=True), _FORMAT, _NAME),
    ),
    LayerForm(
        "batchnorm",
        L.BatchNormalization,
        (
            Param("momentum", "float", "momentum", "0.99"),
            Param("epsilon", "float", "epsilon", "0.001"),
            Param("axis", "int", "axis", "-1"),
            Param("center", "bool", "center", "true"),
            Param("scale", "bool", "scale", "true"),
            _NAME,
        ),
    ),
)

_BY_WORD = {word: form for form in FORMS for word in (form.word, *form.aliases)}
_BY_CLASS = {form.cls: form for form in FORMS}
LAYER_WORDS: tuple[str, ...] = tuple(form.word for form in FORMS)
