"""PyTorch -> convlens: ``from_torch(module, input_shape)`` rebuilds a ``torch.nn.Sequential``.

The result takes the SAME input as the torch module, channels first (``(N, C, H, W)``), and
returns the same numbers: convolution and pooling layers get ``data_format='channels_first'``,
``BatchNormalization`` gets ``axis=1``, and every weight is moved to Keras's layout:

* ``Conv{1,2,3}d`` weight ``(out, in // groups, *k)`` -> kernel ``(*k, in // groups, out)``;
* ``ConvTranspose2d`` weight ``(in, out, kh, kw)`` -> kernel ``(kh, kw, out, in)``;
* ``Linear`` weight ``(out, in)`` -> kernel ``(in, out)``;
* ``BatchNorm`` ``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance``; ``epsilon = eps``; ``momentum = 1 - torch momentum`` (torch moves the
  running statistics by ``momentum * batch``, Keras keeps ``momentum * moving``).

``nn.Flatten`` flattens a ``(N, C, H, W)`` tensor in C-major order. Keras's
``Flatten(data_format='channels_first')`` would first move the channels last (so that a
channels_first model flattens like a channels_last one), which is NOT torch's order, so the
import uses ``Flatten()`` (channels_last, a plain reshape of the NCHW tensor) and the following
``Linear`` weights need no permutation.

Padding: torch's symmetric ``padding=p`` becomes Keras ``'valid'`` (p = 0) or ``'same'`` when
Keras's ``same`` pads exactly ``p`` on both sides for this input size; otherwise the zeros are
added by a ``ZeroPadding2D`` before a ``'valid'`` convolution (for 1-D and 3-D convolutions the
axis is padded through ``Reshape`` -> ``ZeroPadding2D`` -> ``Reshape``). Pooling is only
converted where Keras's ``valid``/``same`` pooling computes the same windows and divisors;
anything else is a ``ValueError`` that names the module, its position and why.

Only live modules are read (``module.named_parameters`` and buffers): no file is opened, so
nothing is unpickled. To import saved weights, build the module in Python and load them with
``module.load_state_dict(torch.load(path, weights_only=True))`` first -- ``weights_only=True``
keeps ``torch.load`` from running code stored in the file.

Example:
    >>> import torch
    >>> from convlens.io import from_torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    >>> model = from_torch(net, (1, 8, 8))
    >>> model.output_shape
    (None, 144)
    >>> [type(layer).__name__ for layer in model.layers]
    ['Conv2D', 'Activation', 'Flatten']
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from convlens import layers as cl
from convlens.models import Sequential
from convlens.shapes import (
    conv_output_length,
    deconv_padding_amounts,
    format_shape,
    padding_amounts,
)

__all__ = ["from_torch"]

# torch activation class name -> convlens activation name (same function, same constants).
ACTIVATIONS = {
    "ReLU": "relu", "ReLU6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "SiLU": "silu",
    "Mish": "mish", "Softsign": "softsign", "LogSigmoid": "log_sigmoid", "SELU": "selu",
    "Hardsigmoid": "hard_sigmoid", "Hardswish": "hard_silu",
}


class _Unsupported(ValueError):
    """Why one module can't be converted; ``from_torch`` adds the module's name and index."""


def import_torch(feature: str = "convlens.io.from_torch"):
    """``torch``, or an ImportError saying that ``feature`` needs it."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a test dependency here
        raise ImportError(
            f"{feature} needs PyTorch: pip install torch (the CPU wheel is enough)."
        ) from None
    return torch


_torch = import_torch


def _flatten(module, prefix: str = "") -> list[tuple[str, object]]:
    """``(dotted name, module)`` for every leaf, nested ``Sequential``s opened in order."""
    torch = _torch()
    items = []
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, torch.nn.Sequential):
            items += _flatten(child, path + ".")
        else:
            items.append((path, child))
    return items


def _array(tensor) -> np.ndarray:
    """A torch tensor (or an array, from ONNX) as float32 NumPy."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor, dtype=np.float32)


def to_channels_first(ndim: int) -> tuple[int, ...]:
    """The permutation ``(N, *spatial, C)`` -> ``(N, C, *spatial)``."""
    return (0, ndim - 1, *range(1, ndim - 1))


def to_channels_last(ndim: int) -> tuple[int, ...]:
    """The permutation ``(N, C, *spatial)`` -> ``(N, *spatial, C)``."""
    return (0, *range(2, ndim), 1)


def _tuple(value, rank: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


class ChainConverter:
    """Walks the flattened modules, tracking the batch shape, and collects convlens layers.

    Each method reads torch's attribute names (``kernel_size``, ``stride``, ``padding``, ...)
    from the object it is given: a torch module, or the stand-in ``from_onnx`` makes of an
    ONNX node.

    ``channels_last`` is True between a ``Permute`` to channels first and the ``Permute`` back
    (what ``to_torch`` writes around channels_last layers): torch then holds
    ``moveaxis(x, -1, 1)`` of the convlens tensor ``x``, so its convolutions become
    channels_last layers.
    """

    def __init__(self, input_shape: tuple):
        self.shape = (None, *input_shape)  # the convlens tensor's (torch's unless permuted)
        self.layers: list = []
        self.channels_last = False
        self.non_negative = False  # every value >= 0 (after a ReLU, say)

    @property
    def data_format(self) -> str:
        return "channels_last" if self.channels_last else "channels_first"

    @property
    def spatial(self) -> tuple:
        return self.shape[1:-1] if self.channels_last else self.shape[2:]

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.channels_last else self.shape[1]

    def expect_torch_order(self, module) -> None:
        if self.channels_last:
            raise _Unsupported(
                f"{type(module).__name__} works on torch's channels-first tensor here, after a "
                "Permute to channels first, where the convlens layers hold it channels last: "
                "only convolutions, pooling, BatchNorm, padding, dropout and activations "
                "convert there. Permute back first."
            )

    def add(self, layer, weights=None) -> None:
        self.shape = layer.build_from_shape(self.shape)
        if weights is not None:
            layer.set_weights(weights)
        self.layers.append(layer)
        self.non_negative = keeps_non_negative(layer, self.non_negative)

    def expect_rank(self, module, rank: int) -> None:
        if len(self.shape) != rank + 2:
            raise _Unsupported(
                f"{type(module).__name__} expects a {rank + 2}-D input (N, C, *{rank} spatial "
                f"axes); here it receives shape {format_shape(self.shape)}."
            )

    # ----- zero padding ------------------------------------------------------------------
    def zero_pad(self, pads: tuple) -> None:
        """Add ``pads[i] = (before, after)`` zeros to spatial axis ``i`` (channels_first)."""
        if not any(before or after for before, after in pads):
            return
        if len(pads) == 2:
            self.add(cl.ZeroPadding2D(pads, data_format=self.data_format))
            return
        for axis, (before, after) in enumerate(pads):
            if not (before or after):
                continue
            dims = self.shape[1:]  # (C, *spatial) or (*spatial, C)
            position = axis if self.channels_last else axis + 1
            outer = math.prod(dims[:position])
            inner = math.prod(dims[position + 1:])
            # (N, outer, length, inner): the padded axis becomes the "height" of a 2-D image
            self.add(cl.Reshape((outer, dims[position], inner)))
            self.add(cl.ZeroPadding2D(((before, after), (0, 0)), data_format="channels_first"))
            padded = list(dims)
            padded[position] += before + after
            self.add(cl.Reshape(tuple(padded)))

    def keras_padding(self, module, spatial, kernel, strides, dilation, padding) -> str:
        """'valid' or 'same' for torch's symmetric ``padding``, or explicit zeros then 'valid'."""
        if padding == "valid":
            return "valid"
        if padding == "same":
            # torch puts the odd zero at the end, as Keras's 'same' does (stride 1 only).
            return "same"
        pads = _tuple(padding, len(spatial))
        if not any(pads):
            return "valid"
        same = tuple(padding_amounts(n, k, "same", s, d)
                     for n, k, s, d in zip(spatial, kernel, strides, dilation))
        if all(pair == (p, p) for pair, p in zip(same, pads)):
            return "same"
        self.zero_pad(tuple((p, p) for p in pads))
        return "valid"

    # ----- layers ------------------------------------------------------------------------
    def conv(self, module) -> None:
        rank = len(module.kernel_size)
        self.expect_rank(module, rank)
        if module.padding_mode != "zeros":
            raise _Unsupported(
                f"padding_mode={module.padding_mode!r} has no Keras equivalent (Keras pads "
                "with zeros only); use padding_mode='zeros'."
            )
        if max(module.stride) > 1 and max(module.dilation) > 1:
            raise _Unsupported(
                f"stride={module.stride} together with dilation={module.dilation}: Keras "
                "convolutions refuse strides > 1 combined with dilation_rate > 1."
            )
        padding = self.keras_padding(module, self.spatial, module.kernel_size, module.stride,
                                     module.dilation, module.padding)
        layer = getattr(cl, f"Conv{rank}D")(
            module.out_channels, module.kernel_size, strides=module.stride, padding=padding,
            data_format=self.data_format, dilation_rate=module.dilation, groups=module.groups,
            use_bias=module.bias is not None,
        )
        weight = _array(module.weight)  # (out, in // groups, *k)
        kernel = np.transpose(weight, (*range(2, rank + 2), 1, 0))  # (*k, in // groups, out)
        weights = [kernel] + ([_array(module.bias)] if module.bias is not None else [])
        self.add(layer, weights)

    def conv_transpose(self, module, crop=None) -> None:
        """``crop``: a following ZeroPad2d's negative amounts, (before, after) per axis."""
        self.expect_rank(module, 2)
        if module.padding_mode != "zeros":
            raise _Unsupported(f"padding_mode={module.padding_mode!r}: only 'zeros' converts.")
        if module.groups != 1:
            raise _Unsupported(
                f"groups={module.groups}: convlens's Conv2DTranspose has no groups."
            )
        if max(module.stride) > 1 and max(module.dilation) > 1:
            raise _Unsupported(
                f"stride={module.stride} together with dilation={module.dilation}: Keras "
                "refuses strides > 1 combined with dilation_rate > 1."
            )
        # torch keeps full[p : full - p + output_padding] of the full output, then the crop
        crops = tuple(
            (p + before, p - extra + after) for p, extra, (before, after) in zip(
                module.padding, module.output_padding, crop or ((0, 0), (0, 0)))
        )
        found = _keras_transpose_padding(self.spatial, module.kernel_size, module.stride,
                                         module.dilation, crops)
        if found is None:
            raise _Unsupported(
                f"padding={module.padding}, output_padding={module.output_padding}"
                + (f" and a crop of {crop}" if crop else "") + f" crop the full output by "
                f"{crops} (before, after) per axis, which neither of Keras's 'valid' and "
                "'same' (with or without output_padding) does for this input."
            )
        padding, extra = found
        layer = cl.Conv2DTranspose(
            module.out_channels, module.kernel_size, strides=module.stride, padding=padding,
            output_padding=extra, data_format=self.data_format, dilation_rate=module.dilation,
            use_bias=module.bias is not None,
        )
        # (in, out, kh, kw) -> (kh, kw, out, in)
        kernel = np.transpose(_array(module.weight), (2, 3, 1, 0))
        weights = [kernel] + ([_array(module.bias)] if module.bias is not None else [])
        self.add(layer, weights)

    def linear(self, module) -> None:
        self.expect_torch_order(module)
        if self.shape[-1] != module.in_features:
            raise _Unsupported(
                f"in_features={module.in_features}, but its input has shape "
                f"{format_shape(self.shape)} (last axis {self.shape[-1]})."
            )
        layer = cl.Dense(module.out_features, use_bias=module.bias is not None)
        weights = [_array(module.weight).T]  # (out, in) -> (in, out)
        if module.bias is not None:
            weights.append(_array(module.bias))
        self.add(layer, weights)

    def pool(self, module, mode: str, rank: int, minus_inf_pads=None) -> None:
        """``minus_inf_pads``: the (before, after) pairs of a -inf ConstantPad just before."""
        self.expect_rank(module, rank)
        kernel = _tuple(module.kernel_size, rank)
        strides = _tuple(module.stride if module.stride not in (None, ()) else kernel, rank)
        pads = _tuple(module.padding, rank)
        if minus_inf_pads is not None:
            if any(pads) or module.ceil_mode:
                raise _Unsupported("a -inf ConstantPad before it converts only with padding=0 "
                                   "and ceil_mode=False.")
            same = tuple(padding_amounts(n, k, "same", s)
                         for n, k, s in zip(self.spatial, kernel, strides))
            if tuple(minus_inf_pads) != same:
                raise _Unsupported(
                    f"the -inf padding {minus_inf_pads} before it is not Keras's 'same' "
                    f"padding {same} for input {format_shape(self.shape)}."
                )
            self.add(getattr(cl, f"MaxPooling{rank}D")(
                kernel, strides=strides, padding="same", data_format=self.data_format))
            return
        if mode == "max":
            if any(d != 1 for d in _tuple(module.dilation, rank)):
                raise _Unsupported(f"dilation={module.dilation}: Keras pools without dilation.")
            if module.return_indices:
                raise _Unsupported("return_indices=True returns two tensors.")
        else:
            if getattr(module, "divisor_override", None):
                raise _Unsupported(f"divisor_override={module.divisor_override}: Keras divides "
                                   "by the number of cells.")
        allowed = {"valid", "same"}
        for n, k, s, p in zip(self.spatial, kernel, strides, pads):
            allowed &= _pool_modes(n, k, s, p, module.ceil_mode)
            if mode == "average" and p and module.count_include_pad:
                # Keras's 'same' divides by the real cells only (count_include_pad=False).
                allowed.discard("same")
        if not allowed and mode == "max" and self.non_negative and not module.ceil_mode and all(
                p <= k // 2 for p, k in zip(pads, kernel)):
            # torch's -inf padding never wins; on values >= 0 neither do zeros, so torch's
            # windows are Keras's 'valid' windows of the zero-padded input
            self.zero_pad(tuple((p, p) for p in pads))
            self.add(getattr(cl, f"MaxPooling{rank}D")(kernel, strides=strides, padding="valid",
                                                       data_format=self.data_format))
            return
        if not allowed:
            raise _Unsupported(
                f"kernel_size={module.kernel_size}, stride={module.stride}, "
                f"padding={module.padding}, ceil_mode={module.ceil_mode}"
                + (f", count_include_pad={module.count_include_pad}" if mode == "average" else "")
                + f" on input {format_shape(self.shape)}: Keras's 'valid' and 'same' pooling "
                "give different windows or divisors. Keras expresses padding=0 windows that fit "
                "and the windows of 'same' (with count_include_pad=False for averages)."
            )
        padding = "valid" if "valid" in allowed else "same"
        name = {"max": "MaxPooling", "average": "AveragePooling"}[mode]
        self.add(getattr(cl, f"{name}{rank}D")(
            kernel, strides=strides, padding=padding, data_format=self.data_format))

    def adaptive_pool(self, module, mode: str, rank: int, flatten_next: bool) -> bool:
        """Global pooling for output size 1, else fixed windows when they tile the input."""
        self.expect_rank(module, rank)
        size = _tuple(module.output_size, rank)
        spatial = self.spatial
        size = tuple(n if o is None else o for n, o in zip(spatial, size))
        if all(o == 1 for o in size):
            name = {"max": "GlobalMaxPooling", "average": "GlobalAveragePooling"}[mode]
            self.add(getattr(cl, f"{name}{rank}D")(
                data_format=self.data_format, keepdims=not flatten_next))
            if flatten_next:
                self.channels_last = False  # (N, C) either way
            return flatten_next  # the Flatten after it is absorbed
        if any(n % o for n, o in zip(spatial, size)):
            raise _Unsupported(
                f"output_size={module.output_size} on input {format_shape(self.shape)}: "
                "only output size 1 or sizes that divide the input evenly convert."
            )
        window = tuple(n // o for n, o in zip(spatial, size))
        name = {"max": "MaxPooling", "average": "AveragePooling"}[mode]
        self.add(getattr(cl, f"{name}{rank}D")(window, data_format=self.data_format))
        return False

    def batch_norm(self, module, rank: int) -> None:
        if len(self.shape) not in ((2, 3) if rank == 1 else (rank + 2,)):
            raise _Unsupported(
                f"{type(module).__name__} receives shape {format_shape(self.shape)}."
            )
        if not module.track_running_stats or module.running_mean is None:
            raise _Unsupported(
                "track_running_stats=False normalises with batch statistics even at inference; "
                "Keras's BatchNormalization uses its moving statistics."
            )
        momentum = 0.99 if module.momentum is None else 1.0 - module.momentum
        axis = -1 if self.channels_last else 1
        layer = cl.BatchNormalization(axis=axis, momentum=momentum, epsilon=module.eps,
                                      center=module.affine, scale=module.affine)
        weights = []
        if module.affine:
            weights += [_array(module.weight), _array(module.bias)]
        weights += [_array(module.running_mean), _array(module.running_var)]
        self.add(layer, weights)

    def softmax(self, module, name: str) -> None:
        dim = module.dim
        ndim = len(self.shape)
        if self.channels_last and dim is not None and dim % ndim == 1:
            self.add(cl.Activation(name))  # torch's channel axis is convlens's last one
            return
        self.expect_torch_order(module)
        if dim is None or dim % ndim != ndim - 1:
            raise _Unsupported(
                f"dim={dim} on input {format_shape(self.shape)}: Keras's {name} works on the "
                f"last axis (dim=-1 or dim={ndim - 1})."
            )
        self.add(cl.Activation(name))

    def upsample(self, module) -> None:
        """``nn.Upsample`` by whole factors: Keras's UpSampling1D/2D/3D (nearest; bilinear in
        2D with ``align_corners=False``, the same half-pixel centres as Keras's resize)."""
        rank = len(self.spatial)
        if module.size is not None or module.scale_factor is None:
            raise _Unsupported("size=...: convert only scale_factor upsampling (Keras's "
                               "UpSampling layers take a factor).")
        factors = module.scale_factor
        factors = tuple(factors) if isinstance(factors, (tuple, list)) else (factors,) * rank
        if any(float(f) != int(f) or f < 1 for f in factors):
            raise _Unsupported(f"scale_factor={module.scale_factor}: only whole factors >= 1.")
        factors = tuple(int(f) for f in factors)
        mode = module.mode
        if mode == "bilinear" and rank == 2 and not module.align_corners:
            interpolation = "bilinear"
        elif mode == "nearest":
            interpolation = "nearest"
        else:
            raise _Unsupported(f"mode={mode!r}, align_corners={module.align_corners}: Keras "
                               "upsamples nearest, or bilinear in 2D with align_corners=False.")
        if rank == 2:
            self.add(cl.UpSampling2D(factors, data_format=self.data_format,
                                     interpolation=interpolation))
        elif rank == 3:
            self.add(cl.UpSampling3D(factors, data_format=self.data_format))
        else:
            self.expect_torch_order(module)
            raise _Unsupported("a 1D upsampling of torch's (N, C, L) tensor: Keras's "
                               "UpSampling1D repeats along axis 1 of (N, steps, C).")

    def flatten(self, module) -> None:
        self.expect_torch_order(module)
        end = module.end_dim % len(self.shape)
        if module.start_dim % len(self.shape) != 1 or end != len(self.shape) - 1:
            raise _Unsupported(
                f"start_dim={module.start_dim}, end_dim={module.end_dim}: only "
                "Flatten(start_dim=1, end_dim=-1) converts."
            )
        if len(self.shape) > 2:
            # A plain reshape of the channels_first tensor: torch's C-major order.
            self.add(cl.Flatten(data_format="channels_last"))

    def zero_pad_module(self, module, rank: int) -> None:
        self.expect_rank(module, rank)
        pairs, value = _constant_pads(module)
        if value != 0.0:
            raise _Unsupported(f"value={value}: only zero padding converts (and -inf right "
                               "before a MaxPool with Keras's 'same' amounts).")
        if any(a < 0 for pair in pairs for a in pair):
            raise _Unsupported(f"padding={tuple(module.padding)}: negative padding (cropping) "
                               "converts only right after a ConvTranspose2d.")
        self.zero_pad(pairs)

    def dropout(self, module, spatial: int) -> None:
        if spatial and len(self.shape) == spatial + 2 and self.channels_last:
            noise = (None, *([1] * spatial), self.channels)
            self.add(cl.Dropout(module.p, noise_shape=noise))
        elif spatial and len(self.shape) == spatial + 2:
            noise = (None, self.shape[1], *([1] * spatial))
            self.add(cl.Dropout(module.p, noise_shape=noise))
        else:
            self.add(cl.Dropout(module.p))


    def permute(self, module) -> None:
        ndim = len(self.shape)
        if ndim > 2 and not self.channels_last and module.dims == to_channels_first(ndim):
            self.channels_last = True
        elif self.channels_last and module.dims == to_channels_last(ndim):
            self.channels_last = False
        else:
            raise _Unsupported(
                f"dims={module.dims} on a {ndim}-D input: only the move of the last axis to "
                "axis 1 and back (what to_torch writes around channels_last layers) converts."
            )
        # self.shape stays the convlens tensor's: only torch's view of it moved

    def flattens_channels_last(self, module) -> bool:
        """Add Keras's channels_first Flatten if ``module`` moves the channels last."""
        ndim = len(self.shape)
        if self.channels_last or ndim < 3 or module.dims != to_channels_last(ndim):
            return False
        self.add(cl.Flatten(data_format="channels_first"))
        return True

    def unflatten(self, module) -> None:
        self.expect_torch_order(module)
        if len(self.shape) != 2 or module.dim not in (1, -1):
            raise _Unsupported(f"dim={module.dim} on input {format_shape(self.shape)}: only "
                               "unflattening axis 1 of a 2-D input converts (a Reshape).")
        self.add(cl.Reshape(tuple(module.unflattened_size)))

    def hardtanh(self, module) -> None:
        if module.min_val != 0.0:
            raise _Unsupported(f"min_val={module.min_val}: only Hardtanh(0, max_val) converts "
                               "(a ReLU with max_value).")
        self.add(cl.ReLU(max_value=module.max_val))


def _keras_transpose_padding(spatial, kernel, strides, dilation, crops):
    """Keras's (padding, output_padding) that crops the full output by ``crops``, or None."""
    options = [(padding, None) for padding in ("valid", "same")]
    options += [(padding, extra) for padding in ("valid", "same")
                for extra in itertools.product(*(range(s) for s in strides))]
    for padding, extra in options:
        got = tuple(
            deconv_padding_amounts(n, k, padding, s, d, None if extra is None else e)
            for n, k, s, d, e in zip(spatial, kernel, strides, dilation, extra or kernel)
        )
        if got == tuple(crops):
            return padding, extra
    return None


_NON_NEGATIVE = {"relu", "relu6", "sigmoid", "softplus", "hard_sigmoid", "softmax",
                 "exponential"}


def keeps_non_negative(layer, before: bool) -> bool:
    """Whether every value is >= 0 after ``layer``, given whether it was before."""
    kind = type(layer).__name__
    if kind == "ReLU":
        return layer.negative_slope == 0 and layer.threshold >= 0
    activation = getattr(layer, "activation", None)
    if kind in ("Activation", "Conv1D", "Conv2D", "Conv3D", "Dense"):
        return activation is not None and activation.name in _NON_NEGATIVE
    # values are moved, padded with zeros or pooled: signs are kept
    return before and kind in ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
                               "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
                               "ZeroPadding2D", "Reshape", "Flatten", "Dropout")


def _pool_modes(n: int, k: int, s: int, p: int, ceil_mode: bool) -> set:
    """Which Keras paddings give torch's windows along one axis of size ``n``."""
    padded = n + 2 * p - k
    out = (-(-padded // s) if ceil_mode else padded // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1  # torch drops a last window that would start in the right padding
    modes = set()
    if p == 0 and out == conv_output_length(n, k, "valid", s):
        modes.add("valid")
    if out == conv_output_length(n, k, "same", s) and padding_amounts(n, k, "same", s)[0] == p:
        modes.add("same")
    return modes


def _convert(conv: ChainConverter, module, modules: list, position: int) -> int:
    """Convert ``module`` (at ``position``); return how many following modules it absorbed."""
    torch = _torch()
    nn = torch.nn
    kind = type(module).__name__
    next_module = modules[position + 1][1] if position + 1 < len(modules) else None
    flatten_next = isinstance(next_module, nn.Flatten) and next_module.start_dim == 1 and (
        next_module.end_dim == -1)
    from convlens.io.torch_modules import Permute

    pads = _constant_pads(module)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        conv.conv(module)
    elif isinstance(module, nn.ConvTranspose2d):
        crop = _constant_pads(next_module)
        if crop is not None and crop[1] == 0.0 and all(a <= 0 for pair in crop[0] for a in pair):
            conv.conv_transpose(module, tuple((-a, -b) for a, b in crop[0]))
            return 1
        conv.conv_transpose(module)
    elif pads is not None and pads[1] == -np.inf and isinstance(
            next_module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        conv.pool(next_module, "max", len(pads[0]), minus_inf_pads=pads[0])
        return 1
    elif isinstance(module, Permute) and flatten_next and conv.flattens_channels_last(module):
        return 1  # Keras's Flatten(data_format="channels_first") moves the channels last too
    elif isinstance(module, Permute):
        conv.permute(module)
    elif isinstance(module, nn.Unflatten):
        conv.unflatten(module)
    elif isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        conv.hardtanh(module)
    elif isinstance(module, nn.Linear):
        conv.linear(module)
    elif isinstance(module, nn.Upsample):
        conv.upsample(module)
    elif kind in ACTIVATIONS:
        conv.add(cl.Activation(ACTIVATIONS[kind]))
    elif isinstance(module, nn.GELU):
        if module.approximate != "none":
            raise _Unsupported(f"approximate={module.approximate!r}: convlens's gelu is exact "
                               "(erf); use approximate='none'.")
        conv.add(cl.Activation("gelu"))
    elif isinstance(module, nn.ELU):
        if module.alpha != 1.0:
            raise _Unsupported(f"alpha={module.alpha}: convlens's elu has alpha=1.")
        conv.add(cl.Activation("elu"))
    elif isinstance(module, nn.LeakyReLU):
        conv.add(cl.ReLU(negative_slope=module.negative_slope))
    elif isinstance(module, nn.Softplus):
        if module.beta != 1.0:
            raise _Unsupported(f"beta={module.beta}: convlens's softplus has beta=1.")
        conv.add(cl.Activation("softplus"))
    elif isinstance(module, nn.Softmax):
        conv.softmax(module, "softmax")
    elif isinstance(module, nn.LogSoftmax):
        conv.softmax(module, "log_softmax")
    elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        conv.pool(module, "max", _RANKS[type(module).__name__[-2:]])
    elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        conv.pool(module, "average", _RANKS[type(module).__name__[-2:]])
    elif isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        rank = 1 if isinstance(module, nn.AdaptiveAvgPool1d) else 2
        return int(conv.adaptive_pool(module, "average", rank, flatten_next))
    elif isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
        if module.return_indices:
            raise _Unsupported("return_indices=True returns two tensors.")
        rank = 1 if isinstance(module, nn.AdaptiveMaxPool1d) else 2
        return int(conv.adaptive_pool(module, "max", rank, flatten_next))
    elif isinstance(module, nn.Flatten):
        conv.flatten(module)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        rank = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}[type(module)]
        conv.batch_norm(module, rank)
    elif pads is not None:
        conv.zero_pad_module(module, len(pads[0]))
    elif isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        spatial = {nn.Dropout1d: 1, nn.Dropout2d: 2, nn.Dropout3d: 3}.get(type(module), 0)
        conv.dropout(module, spatial)
    elif isinstance(module, nn.Identity):
        pass
    elif any(True for _ in module.children()):
        raise _Unsupported(
            "it is a module with its own forward(), which from_torch does not read: it reads "
            "a torch.nn.Sequential of layers (nested Sequentials are opened)."
        )
    else:
        raise _Unsupported(
            "convlens has no equivalent layer. Supported: Conv1d/2d/3d, ConvTranspose2d, "
            "Linear, Flatten, Unflatten, BatchNorm1d/2d/3d, MaxPool1d/2d/3d, AvgPool1d/2d/3d, "
            "AdaptiveAvg/MaxPool1d/2d, ZeroPad1d/2d/3d, ConstantPad1d/2d/3d (value 0), "
            "Dropout*, Identity, Hardtanh(0, max), to_torch's Permute and the activations "
            + ", ".join(sorted([*ACTIVATIONS, "GELU", "ELU", "LeakyReLU", "Softplus", "Softmax",
                                "LogSoftmax"])) + "."
        )
    return 0


def convert_module(converter: ChainConverter, module) -> None:
    """Convert one torch module into ``converter``'s layers (no look-ahead at what follows)."""
    _convert(converter, module, [("", module)], 0)


_RANKS = {"1d": 1, "2d": 2, "3d": 3}


def _constant_pads(module):
    """``(((before, after) per spatial axis, first axis first), value)`` of a torch
    ZeroPad/ConstantPad module, else None."""
    name = type(module).__name__
    if not name.startswith(("ZeroPad", "ConstantPad")) or name[-2:] not in _RANKS:
        return None
    rank = _RANKS[name[-2:]]
    amounts = tuple(module.padding)  # (left, right[, top, bottom[, front, back]])
    if len(amounts) != 2 * rank:
        return None
    pairs = [(amounts[2 * i], amounts[2 * i + 1]) for i in range(rank)]
    return tuple(reversed(pairs)), float(getattr(module, "value", 0.0))


def from_torch(module, input_shape, name: str | None = None) -> Sequential:
    """A convlens model computing what the torch ``module`` computes in eval mode.

    Args:
        module: a ``torch.nn.Sequential`` of layers (nested ones are flattened) or one
            supported layer, which give a ``Sequential``; any other module (its own
            ``forward()``) is traced with ``torch.fx`` into a Functional ``Model``
            (:mod:`convlens.io.torch_trace`).
            It is only read: its mode (train/eval) and weights are left as they are;
            BatchNorm uses its running statistics and Dropout is off at inference, as in
            ``module.eval()``.
        input_shape: one sample's shape, channels first and without the batch axis, as torch
            sees it: ``(1, 28, 28)`` for MNIST images, ``(C, L)`` for Conv1d.
        name: the model's name (default ``sequential``, numbered as Keras does).

    Returns:
        A built ``Sequential`` (or ``Model``) whose ``predict(x)`` on the channels-first
        ``x`` equals ``module.eval()(torch.from_numpy(x))``.

    Raises:
        ValueError: a module or an argument that convlens can't reproduce exactly, naming
            the module, its index in the flattened list and its torch name.
    """
    torch = _torch()
    if isinstance(module, (str, bytes)) or hasattr(module, "__fspath__"):
        raise TypeError(
            "from_torch takes a live torch.nn.Module, not a file: build the module in Python and "
            "load saved weights with module.load_state_dict(torch.load(path, weights_only=True))."
        )
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"from_torch expects a torch.nn.Sequential; received {type(module).__name__}."
        )
    if isinstance(input_shape, int) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
        for d in input_shape
    ):
        raise ValueError(
            "from_torch: `input_shape` must be one sample's shape, channels first and without "
            f"the batch axis, e.g. (1, 28, 28); received input_shape={input_shape!r}."
        )
    input_shape = tuple(int(d) for d in input_shape)
    if isinstance(module, torch.nn.Sequential):
        modules = _flatten(module)
    else:
        modules = [(type(module).__name__, module)]
    from convlens.io import torch_modules, torch_trace  # torch_modules imports torch

    if isinstance(module, torch_modules.Graph):  # what to_torch writes for a Functional model
        return torch_trace.from_graph(module, input_shape, name, chain_layers)
    if any(any(True for _ in child.children()) for _, child in modules):
        # a module with its own forward()
        return torch_trace.from_traced(torch, module, input_shape, name, ChainConverter,
                                       convert_module)
    return Sequential([cl.Input(input_shape)] + chain_layers(modules, input_shape), name=name)


def chain_layers(modules, input_shape: tuple, where: str = "") -> list:
    """The convlens layers of ``modules`` (``(path, module)`` pairs run one after another, or a
    ``torch.nn.Sequential``) for one input sample of ``input_shape``."""
    if not isinstance(modules, list):
        modules = _flatten(modules, where)
    converter = ChainConverter(input_shape)
    position = 0
    while position < len(modules):
        path, child = modules[position]
        try:
            position += 1 + _convert(converter, child, modules, position)
        except ValueError as error:
            raise ValueError(
                f"from_torch: cannot convert module {position} '{path}' "
                f"({type(child).__name__}): {_one_line(error)}"
            ) from None
    if converter.channels_last:
        raise ValueError(
            "from_torch: the module ends in the channels-first order of a Permute to channels "
            "first without the Permute back; convlens can't return that order."
        )
    return converter.layers


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 400 else text[:397] + "..."
