"""One convolution layer as a picture: input volume, one 3D filter, output stack (hand-built SVG).

The drawing answers the seed question visually: a ``Conv2D(64, 3)`` on a ``26 x 26 x 32``
input has filters of ``3 x 3 x 32`` -- each one as deep as the input -- and each filter
makes ONE ``24 x 24`` output map, so the output is ``24 x 24 x 64``. Every size written in
the picture is read from the built layer; the drawn proportions are only indicative
(log-scaled so that 1 and 512 channels both fit).

Example:
    >>> from convlens.layers import Conv2D
    >>> layer = Conv2D(64, 3)
    >>> _ = layer.build_from_shape((None, 26, 26, 32))
    >>> svg = conv_layer_svg(layer)
    >>> "24 x 24 x 64" in svg and "3 x 3 x 32" in svg
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

from convlens.kinds import kind_of

__all__ = ["conv_layer_svg", "ConvPicture", "conv_picture"]

_INPUT_FILL = "#dbe8f6"
_FILTER_FILL = "#f5a623"
_OUTPUT_FILL = "#e3f1dc"
_HIGHLIGHT = "#e8590c"
_STROKE = "#33475b"
_FONT = "font-family:Helvetica,Arial,sans-serif"


@dataclass(frozen=True)
class ConvPicture:
    """The sizes a conv picture shows, all read from one built layer."""

    name: str
    kind: str
    in_height: int
    in_width: int
    in_channels: int
    kernel_height: int
    kernel_width: int
    filter_depth: int  # how many input channels one filter spans
    filters: int  # number of output maps
    out_height: int
    out_width: int
    note: str


def _dims(shape, data_format: str) -> tuple[int, int, int]:
    if shape is None or len(shape) != 4:
        raise ValueError(f"expected a 4D (batch, height, width, channels) shape; got {shape}")
    if data_format == "channels_first":
        return shape[2], shape[3], shape[1]
    return shape[1], shape[2], shape[3]


def _size(value) -> str:
    return "?" if value is None else str(value)


def sizes(*values) -> str:
    """``sizes(26, 26, 32)`` -> ``'26 x 26 x 32'``, the label format of every picture."""
    return " x ".join(_size(v) for v in values)


def conv_picture(layer) -> ConvPicture:
    """The sizes to draw for a built 2D convolution layer (Conv2D, DepthwiseConv2D,
    SeparableConv2D, Conv2DTranspose)."""
    kind = type(layer).__name__
    picture = kind_of(layer).picture
    if picture is None or len(layer.kernel_size) != 2:
        raise TypeError(
            f"conv_layer_svg draws 2D convolution layers (Conv2D, DepthwiseConv2D, "
            f"SeparableConv2D, Conv2DTranspose); received {layer!r} of type {kind}."
        )
    if not layer.built or layer.input_shape is None or layer.output_shape is None:
        raise ValueError(
            f"Layer '{layer.name}' is not built, so its sizes are unknown; build the model "
            "first, e.g. start it with Input((28, 28, 1))."
        )
    in_h, in_w, in_c = _dims(layer.input_shape, layer.data_format)
    out_h, out_w, out_c = _dims(layer.output_shape, layer.data_format)
    kh, kw = layer.kernel_size
    if picture == "conv":
        depth = layer.kernel.shape[2]
        if layer.groups > 1:
            note = (
                f"groups={layer.groups}: each filter spans the {depth} channels of its group "
                f"and sums over them"
            )
        else:
            note = (
                f"each filter spans all {depth} input channels and sums over them"
                if depth > 1
                else "each filter spans the single input channel"
            )
    elif picture == "depthwise":
        depth = 1
        note = (
            f"depthwise: each filter sees ONE input channel, no sum across channels "
            f"({in_c} channels x {layer.depth_multiplier} = {out_c} maps)"
        )
    elif picture == "separable":
        depth = 1
        middle = in_c * layer.depth_multiplier
        note = (
            f"separable: {kh} x {kw} x 1 filters per channel, then {out_c} pointwise "
            f"1 x 1 x {middle} filters mix the channels"
        )
    else:
        depth = layer.kernel.shape[3]
        note = f"transposed: each filter spans all {depth} input channels; strides {layer.strides}"
    return ConvPicture(layer.name, kind, in_h, in_w, in_c, kh, kw, depth, out_c, out_h, out_w, note)


# ----- drawing --------------------------------------------------------------------------------


def _spatial_px(n) -> float:
    n = 28 if n is None else max(int(n), 1)
    return max(14.0, min(150.0, 22.0 + 30.0 * math.log2(n + 1) / 2.2))


def _depth_px(n) -> float:
    n = max(int(n or 1), 1)
    return max(5.0, min(90.0, 5.0 + 11.0 * math.log2(n)))


_SLANT = (0.70, 0.50)  # oblique projection of the channel axis: right and up


def _box(x, y, w, h, d, fill, stroke=_STROKE, opacity=1.0, width=1.2, dash=None) -> str:
    """A cuboid: front face (w x h) at (x, y), depth d drawn up and to the right."""
    ox, oy = d * _SLANT[0], d * _SLANT[1]
    front = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    top = [(x, y), (x + ox, y - oy), (x + w + ox, y - oy), (x + w, y)]
    side = [(x + w, y), (x + w + ox, y - oy), (x + w + ox, y + h - oy), (x + w, y + h)]
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    parts = []
    for points, shade in ((top, 0.92), (side, 0.80), (front, 1.0)):
        parts.append(
            f'<polygon points="{_points(points)}" fill="{_shade(fill, shade)}" '
            f'fill-opacity="{opacity:.2f}" stroke="{stroke}" stroke-width="{width}"{extra}/>'
        )
    return "\n".join(parts)


def _shade(colour: str, factor: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{min(255, round(c * factor)):02x}" for c in (red, green, blue))


def _points(points) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def _text(x, y, text, size=13, weight="normal", anchor="middle", fill="#1d2b36") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" font-weight="{weight}" '
        f'text-anchor="{anchor}" fill="{fill}" style="{_FONT}">{escape(text)}</text>'
    )


def _line(x1, y1, x2, y2, colour=_HIGHLIGHT, dash="4 3") -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="1.3" stroke-dasharray="{dash}"/>'
    )


def conv_layer_svg(layer) -> str:
    """An SVG document (text) of a built 2D conv layer: input, one filter, output stack.

    The input volume is ``H x W x C_in``; one filter is drawn as a ``kh x kw x depth`` block
    as deep as the channels it spans; the output stack has one map per filter, with the map
    that this filter makes highlighted. Labels carry the layer's real sizes.

    Raises:
        TypeError: ``layer`` is not a 2D convolution layer.
        ValueError: the layer is not built.
    """
    p = conv_picture(layer)
    top = 96.0  # room above the boxes for the title and the slanted tops
    gap = 70.0

    in_w, in_h, in_d = _spatial_px(p.in_width), _spatial_px(p.in_height), _depth_px(p.in_channels)
    f_scale = 9.0
    f_w = max(14.0, min(60.0, f_scale * p.kernel_width))
    f_h = max(14.0, min(60.0, f_scale * p.kernel_height))
    f_d = _depth_px(p.filter_depth)
    out_w, out_h = _spatial_px(p.out_width), _spatial_px(p.out_height)
    out_d = _depth_px(p.filters)

    title = f"{p.name} ({p.kind}): {p.filters} output maps from filters of " + sizes(
        p.kernel_height, p.kernel_width, p.filter_depth
    )
    x_in = 30.0
    y_in = top + max(in_d, f_d, out_d) * _SLANT[1]
    x_f = x_in + in_w + in_d * _SLANT[0] + gap
    y_f = y_in + (in_h - f_h) / 2
    x_out = x_f + f_w + f_d * _SLANT[0] + gap
    y_out = y_in + (in_h - out_h) / 2
    width = x_out + out_w + out_d * _SLANT[0] + 40.0
    body_bottom = max(y_in + in_h, y_f + f_h, y_out + out_h)
    height = body_bottom + 92.0
    width = max(width, 560.0, 9.2 * len(title) + 40, 6.6 * len(p.note) + 40)

    parts: list[str] = []
    parts.append(_text(width / 2, 26, title, size=15, weight="bold"))
    parts.append(_text(width / 2, 46, p.note, size=12, fill="#44515c"))

    # Input volume, with the filter's window marked on its front face (top-left position).
    parts.append(_box(x_in, y_in, in_w, in_h, in_d, _INPUT_FILL))
    win_w = max(4.0, in_w * p.kernel_width / max(p.in_width or 1, 1))
    win_h = max(4.0, in_h * p.kernel_height / max(p.in_height or 1, 1))
    win_d = in_d * (p.filter_depth / max(p.in_channels, 1))
    parts.append(_box(x_in, y_in, win_w, win_h, win_d, _FILTER_FILL, opacity=0.75, width=1.0))

    # One filter, enlarged, as deep as the channels it spans.
    parts.append(_box(x_f, y_f, f_w, f_h, f_d, _FILTER_FILL, opacity=0.95))
    for x0, y0 in ((x_in + win_w, y_in), (x_in + win_w, y_in + win_h)):
        parts.append(_line(x0, y0, x_f, y_f if y0 == y_in else y_f + f_h))

    # Output stack: outlined slices, the first one (this filter's map) highlighted.
    slices = min(p.filters, 12)
    for index in reversed(range(slices)):
        offset = out_d * (index / max(slices - 1, 1)) if slices > 1 else 0.0
        ox, oy = offset * _SLANT[0], offset * _SLANT[1]
        fill = _HIGHLIGHT if index == 0 else _OUTPUT_FILL
        opacity = 0.85 if index == 0 else 0.9
        parts.append(
            f'<rect x="{x_out + ox:.1f}" y="{y_out - oy:.1f}" width="{out_w:.1f}" '
            f'height="{out_h:.1f}" fill="{fill}" fill-opacity="{opacity}" stroke="{_STROKE}" '
            f'stroke-width="1"/>'
        )
    px = max(6.0, out_w / max(p.out_width or 1, 1))
    parts.append(
        f'<rect x="{x_out:.1f}" y="{y_out:.1f}" width="{px:.1f}" height="{px:.1f}" '
        f'fill="#ffffff" stroke="#1d2b36" stroke-width="1"/>'
    )
    parts.append(_line(x_f + f_w, y_f + f_h / 2, x_out + px / 2, y_out + px / 2))

    # Labels with the real sizes.
    label_y = body_bottom + 28
    parts.append(_text(x_in + in_w / 2, label_y, "input"))
    parts.append(
        _text(
            x_in + in_w / 2,
            label_y + 18,
            sizes(p.in_height, p.in_width, p.in_channels),
            weight="bold",
        )
    )
    parts.append(_text(x_f + f_w / 2, label_y, "one filter"))
    parts.append(
        _text(
            x_f + f_w / 2,
            label_y + 18,
            sizes(p.kernel_height, p.kernel_width, p.filter_depth),
            weight="bold",
        )
    )
    parts.append(_text(x_f + f_w / 2, label_y + 36, f"{p.filters} filters", size=12))
    parts.append(_text(x_out + out_w / 2, label_y, "output"))
    parts.append(
        _text(
            x_out + out_w / 2,
            label_y + 18,
            sizes(p.out_height, p.out_width, p.filters),
            weight="bold",
        )
    )
    parts.append(
        _text(
            x_out + out_w / 2,
            label_y + 36,
            f"one {sizes(p.out_height, p.out_width)} map per filter",
            size=12,
        )
    )

    description = (
        f"Input {sizes(p.in_height, p.in_width, p.in_channels)}; one filter "
        f"{sizes(p.kernel_height, p.kernel_width, p.filter_depth)}; {p.filters} filters; output "
        f"{sizes(p.out_height, p.out_width, p.filters)}."
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">\n'
        f"<title>{escape(title)}</title>\n<desc>{escape(description)}</desc>\n"
        f'<rect width="100%" height="100%" fill="#ffffff"/>\n' + "\n".join(parts) + "\n</svg>\n"
    )
