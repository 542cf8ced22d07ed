"""Model specs: a one-line text form of a Sequential model, for the CLI, the web page and tests.

The seed's network, then the classic MNIST head::

    input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu | maxpool 2 | flatten | dense 10 softmax

Grammar
-------
::

    spec     := segment ( "|" segment )*
    segment  := LAYER argument*
    argument := VALUE                      positional, in the layer's order (below)
              | KEY "=" VALUE              option; positional arguments may be named too

Words are separated by spaces; ``|`` separates layers. An optional ``input SHAPE`` segment
comes first and fixes the shape of one sample (no batch axis); without it the model is
built on first use. Values:

- ``N``: a positive integer (``32``); ``F``: a number (``0.5``, ``1e-3``);
- ``K``: a size, one integer for every axis or one per axis joined by ``x``
  (``3`` = ``3x3`` for 2D layers; ``3x5``; ``3x3x3`` for 3D);
- ``SHAPE``: sizes joined by ``x`` (``28x28x1``, ``784``; ``reshape`` allows one ``-1``);
- ``ACT``: an activation name (``relu``, ``softmax``, ``tanh``, ``sigmoid``, ...);
- ``BOOL``: ``true`` or ``false``.

Layers (positional arguments in order, ``[...]`` optional), the Keras layer each builds,
and its options with their defaults::

    input SHAPE           Input
    conv2d N K [ACT]      Conv2D              strides=1 padding=valid dilation=1 groups=1
                                              bias=true
    conv1d N K [ACT]      Conv1D              as conv2d; padding may also be causal
    conv3d N K [ACT]      Conv3D              as conv2d
    depthwise K [ACT]     DepthwiseConv2D     multiplier=1 strides=1 padding=valid
                                              dilation=1 bias=true
    separable N K [ACT]   SeparableConv2D     as depthwise
    deconv N K [ACT]      Conv2DTranspose     strides=1 padding=valid dilation=1
                                              output_padding=none bias=true
    dense N [ACT]         Dense               bias=true
    flatten               Flatten
    reshape SHAPE         Reshape
    activation ACT        Activation
    relu                  ReLU                max_value=none negative_slope=0.0 threshold=0.0
    dropout F             Dropout
    maxpool [K]           MaxPooling2D        strides=K padding=valid       (K defaults to 2)
    avgpool [K]           AveragePooling2D    strides=K padding=valid
    maxpool1d, maxpool3d, avgpool1d, avgpool3d: the 1D and 3D pooling layers, as above
    globalavgpool         GlobalAveragePooling2D    keepdims=false
    globalmaxpool         GlobalMaxPooling2D        keepdims=false
    globalavgpool1d, globalmaxpool1d: GlobalAveragePooling1D, GlobalMaxPooling1D
    zeropad [P]           ZeroPadding2D       P = 1 (default), 1x2 (rows x cols) or
                                              1x1x2x2 (top x bottom x left x right)
    batchnorm             BatchNormalization  momentum=0.99 epsilon=0.001 axis=-1
                                              center=true scale=true

Every layer also takes ``name=NAME``, and conv/pool/flatten layers take
``data_format=channels_first``. Options may also be spelled with the Keras argument name
(``dilation_rate=2``, ``depth_multiplier=2``, ``use_bias=false``, ``kernel_size=3``,
``activation=relu``). Aliases: ``maxpool2d``, ``avgpool2d``, ``globalavgpool2d``,
``globalmaxpool2d``, ``conv2dtranspose``.

More examples::

    input 32x32x3 | conv2d 64 3 strides=2 padding=same | batchnorm | relu | globalavgpool
    input 28x28x32 | depthwise 3 multiplier=2 | separable 64 3 relu | deconv 32 3 strides=2
    input 64x8 | conv1d 16 5 relu padding=causal dilation=2 | globalmaxpool1d | dense 1
    input 784 | reshape 28x28x1 | zeropad 1 | conv2d 8 3 tanh | avgpool 2 | dropout 0.5

``format_spec(model)`` writes the canonical spec of a model: layer words as above, every
positional argument except a linear activation, options only where they differ from the
default, sizes collapsed to one number when equal on every axis. It describes the
architecture only (no weights, initializers, seeds, or auto-generated names), and
``parse_spec(format_spec(model))`` builds layers of the same classes with the same configs.

Errors: a malformed spec raises :class:`SpecError` (a ``ValueError``) with a one-line
message giving the 1-based column and what was expected::

    spec error at column 24 ('conv2x'): unknown layer 'conv2x'; expected one of: ...
"""

from convlens.spec.formatter import format_spec
from convlens.spec.forms import LAYER_WORDS
from convlens.spec.parser import SpecError, parse_spec

__all__ = ["SpecError", "parse_spec", "format_spec", "LAYER_WORDS", "GRAMMAR"]

GRAMMAR = __doc__
