"""Layers with Keras 3 names, arguments and weight layouts."""

from convlens.graph import KerasTensor

# Registered, not exported (Keras keeps them out of keras.layers): x + 3 and its siblings,
# ConvNeXt's LayerScale and StochasticDepth.
from convlens.layers import convnext, operations  # noqa: F401
from convlens.layers.activation import ELU, LeakyReLU, PReLU, Softmax
from convlens.layers.base import Layer
from convlens.layers.conv import (
    Conv,
    Conv1D,
    Conv2D,
    Conv3D,
    Convolution1D,
    Convolution2D,
    Convolution3D,
)
from convlens.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from convlens.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    ReLU,
    Reshape,
    ZeroPadding2D,
)
from convlens.layers.depthwise import (
    DepthwiseConv1D,
    DepthwiseConv2D,
    SeparableConv1D,
    SeparableConv2D,
)
from convlens.layers.layer_normalization import GroupNormalization, LayerNormalization
from convlens.layers.merge import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
)
from convlens.layers.normalization import BatchNormalization
from convlens.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalAvgPool3D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalMaxPool3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPool1D,
    MaxPool2D,
    MaxPool3D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from convlens.layers.preprocessing import Normalization, Rescaling
from convlens.layers.reshaping import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Identity,
    Permute,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding3D,
)
from convlens.layers.spatial_dropout import SpatialDropout1D, SpatialDropout2D, SpatialDropout3D

__all__ = [
    "Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract",
    "Activation", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D",
    "AvgPool2D", "AvgPool3D", "BatchNormalization", "Conv", "Conv1D", "Conv2D",
    "Conv2DTranspose", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D", "Dense",
    "DepthwiseConv2D", "Dropout", "Flatten", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAvgPool2D", "GlobalMaxPool2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Input",
    "InputLayer", "KerasTensor", "Layer", "MaxPool1D", "MaxPool2D", "MaxPool3D", "MaxPooling1D",
    "MaxPooling2D", "MaxPooling3D", "ReLU", "Reshape", "SeparableConv2D", "ZeroPadding2D",
    "Cropping1D", "Cropping2D", "Cropping3D", "ELU", "GroupNormalization", "Identity",
    "LayerNormalization", "LeakyReLU", "Normalization", "PReLU", "Permute", "Rescaling",
    "Softmax", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "UpSampling1D",
    "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding3D", "GlobalAveragePooling3D",
    "GlobalMaxPooling3D", "GlobalAvgPool1D", "GlobalAvgPool3D", "GlobalMaxPool1D",
    "GlobalMaxPool3D", "Conv1DTranspose", "Conv3DTranspose", "DepthwiseConv1D", "SeparableConv1D",
]
