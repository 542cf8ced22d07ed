"""PNG grids of a layer's kernels and of its feature maps (matplotlib, Agg, no pyplot).

Figures are made with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly,
so nothing here touches pyplot's global state or the user's chosen backend.

Every grid has ``columns = ceil(sqrt(n))`` tiles per row; its exact pixel size is
``grid_pixel_size(n, tile_px)``: ``columns * tile_px + 2 * MARGIN_PX`` wide and
``rows * tile_px + TITLE_PX + MARGIN_PX`` high.
"""

from __future__ import annotations

import io
import math

import numpy as np

from convlens.kinds import kind_of

__all__ = [
    "kernel_grid_png",
    "feature_maps_png",
    "grid_pixel_size",
    "kernel_tiles",
    "resolve_layer",
]

DPI = 100
TILE_PX = 64
MARGIN_PX = 10
TITLE_PX = 56


def grid_pixel_size(n: int, tile_px: int = TILE_PX) -> tuple[int, int]:
    """(width, height) in pixels of a grid of ``n`` tiles."""
    columns = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / columns))
    return columns * tile_px + 2 * MARGIN_PX, rows * tile_px + TITLE_PX + MARGIN_PX


def _resize(tile: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Nearest-neighbour resize, so that a 3x3 kernel fills its tile with 9 crisp squares."""
    tile = np.asarray(tile, dtype=np.float64)
    row_index = np.arange(rows) * tile.shape[0] // rows
    column_index = np.arange(columns) * tile.shape[1] // columns
    return tile[row_index][:, column_index]


def _render(
    tiles: list[np.ndarray],
    labels: list[str],
    title: str,
    cmap: str,
    vmin: float,
    vmax: float,
    tile_px: int,
) -> bytes:
    # The grid is composed as one pixel-exact RGBA array and drawn with figimage: one image
    # and a few texts render far faster than one axes per tile.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    n = len(tiles)
    width, height = grid_pixel_size(n, tile_px)
    columns = max(1, math.ceil(math.sqrt(n)))
    colour_map = matplotlib.colormaps[cmap]
    norm = Normalize(vmin=vmin, vmax=vmax, clip=True)
    canvas = np.ones((height, width, 4))
    pad, label_px = 3, 10
    inner = tile_px - 2 * pad - label_px
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top = TITLE_PX + row * tile_px + label_px + pad
        left = MARGIN_PX + column * tile_px + pad
        canvas[top - 1 : top + inner + 1, left - 1 : left + inner + 1] = (0.2, 0.25, 0.3, 1.0)
        canvas[top : top + inner, left : left + inner] = colour_map(
            norm(_resize(tile, inner, inner))
        )
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    figure.figimage(canvas, xo=0, yo=0, origin="upper")
    heading = figure.text(0.5, 1 - 6 / height, title, ha="center", va="top", fontsize=7.5)
    # A narrow grid gets a smaller title font, so that no line runs past the picture's edges.
    renderer = figure.canvas.get_renderer()
    for _ in range(12):
        if heading.get_window_extent(renderer=renderer).width <= width - 12:
            break
        heading.set_fontsize(heading.get_fontsize() * 0.9)
    # One label per row (the first tile's), tiles run left to right: text is the slow part.
    for index in range(0, n, columns):
        x = MARGIN_PX + pad
        y = TITLE_PX + (index // columns) * tile_px + pad - 1
        text = f"{labels[index]} .. {index + min(columns, n - index) - 1}"
        figure.text(x / width, 1 - y / height, text, ha="left", va="top", fontsize=6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _save(data: bytes, path) -> bytes:
    if path is not None:
        from convlens.fileio import atomic_write

        atomic_write(path, data)
    return data


def kernel_tiles(layer, channel: int | None = None) -> tuple[list[np.ndarray], list[str], str]:
    """The 2D tiles of a built conv layer's kernels, their labels, and what a tile shows."""
    picture = kind_of(layer).picture
    if picture is None:
        raise TypeError(
            f"kernel_grid_png draws convolution kernels; layer {getattr(layer, 'name', layer)!r} "
            f"is a {type(layer).__name__}."
        )
    if not layer.built:
        raise ValueError(f"Layer '{layer.name}' is not built yet, so it has no kernel to draw.")
    if picture in ("depthwise", "separable"):
        kernel = (layer.depthwise if picture == "separable" else layer).kernel.value
        if kernel.ndim == 3:  # 1D (k, C_in, multiplier): one row per filter
            kernel = kernel[None]
        kh, kw, channels, multiplier = kernel.shape
        tiles = [kernel[:, :, c, m] for c in range(channels) for m in range(multiplier)]
        labels = [f"ch {c} #{m}" for c in range(channels) for m in range(multiplier)]
        what = "each tile is the filter of one input channel (depthwise: no channel sum)"
        return tiles, labels, what
    kernel = layer.kernel.value
    if picture == "transpose":
        kernel = np.swapaxes(kernel, -2, -1)  # (*k, filters, C_in) -> (*k, C_in, filters)
    if kernel.ndim == 3:  # Conv1D (k, C_in, filters): one row per filter
        kernel = kernel[None]
    elif kernel.ndim == 5:
        raise ValueError(
            f"kernel_grid_png draws 1D and 2D kernels; layer '{layer.name}' is "
            f"{type(layer).__name__} with a {kernel.ndim - 2}D kernel."
        )
    depth = kernel.shape[2]
    filters = kernel.shape[3]
    if channel is not None:
        if not 0 <= channel < depth:
            raise ValueError(
                f"channel={channel} is out of range: the filters of layer '{layer.name}' span "
                f"{depth} input channel(s), 0 to {depth - 1}."
            )
        tiles = [kernel[:, :, channel, f] for f in range(filters)]
        what = f"input channel {channel} of each {depth}-channel filter"
    elif depth == 1:
        tiles = [kernel[:, :, 0, f] for f in range(filters)]
        what = "channel 0 (the only input channel) of each filter"
    else:
        tiles = [kernel[:, :, :, f].mean(axis=2) for f in range(filters)]
        what = f"mean over the {depth} input channels each filter spans"
    return tiles, [f"filter {f}" for f in range(filters)], what


def kernel_grid_png(
    layer, path=None, *, channel: int | None = None, max_tiles: int = 64, tile_px: int = TILE_PX
) -> bytes:
    """A PNG grid of a conv layer's kernels, one tile per filter, on one shared colour scale.

    Each tile is channel 0 when the filters span one input channel, otherwise the mean over
    the channels a filter spans (or ``channel=c``); the title says which. At most
    ``max_tiles`` tiles are drawn (the title says how many of how many). If ``path`` is
    given, the PNG is also written there atomically. Returns the PNG bytes.
    """
    tiles, labels, what = kernel_tiles(layer, channel)
    total = len(tiles)
    tiles, labels = tiles[:max_tiles], labels[:max_tiles]
    limit = float(max(np.abs(np.stack(tiles)).max(), 1e-12))
    shown = f"{len(tiles)} of {total}" if total > len(tiles) else f"{total}"
    kh, kw = tiles[0].shape
    title = (
        f"{layer.name} ({type(layer).__name__}): {shown} kernels {kh} x {kw}\n{what}; "
        f"colour scale -{limit:.3g} (blue) .. +{limit:.3g} (red)"
    )
    data = _render(tiles, labels, title, "RdBu_r", -limit, limit, tile_px)
    return _save(data, path)


def resolve_layer(model, layer):
    """``layer`` as a layer of ``model``: an index into ``model.layers``, a name, or the layer."""
    layers = model.layers
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(layers) <= layer < len(layers):
            raise ValueError(
                f"layer index {layer} is out of range: model '{model.name}' has {len(layers)} "
                f"layers, indices 0 to {len(layers) - 1}."
            )
        return layers[layer]
    if isinstance(layer, str):
        for candidate in layers:
            if candidate.name == layer:
                return candidate
        names = ", ".join(candidate.name for candidate in layers)
        raise ValueError(f"model '{model.name}' has no layer named {layer!r}; layers: {names}.")
    if any(candidate is layer for candidate in layers):
        return layer
    raise ValueError(f"{layer!r} is not a layer of model '{model.name}'.")


def layer_output(model, layer, x) -> np.ndarray:
    """The output of ``layer`` (inference mode) for the batch ``x``."""
    target = resolve_layer(model, layer)
    return target.call(model.layer_input(target, x), training=False)  # a chain or a graph


def feature_maps_png(
    model, layer, x, path=None, *, max_maps: int = 64, tile_px: int = TILE_PX
) -> bytes:
    """A PNG grid of ``layer``'s output maps for the first sample of ``x``, one per channel.

    ``layer`` is an index into ``model.layers``, a layer name, or the layer. The maps share
    one colour scale (the title gives it). If ``path`` is given the PNG is also written
    there atomically. Returns the PNG bytes.
    """
    target = resolve_layer(model, layer)
    output = layer_output(model, target, x)[0]
    if getattr(target, "data_format", "channels_last") == "channels_first" and output.ndim > 1:
        output = np.moveaxis(output, 0, -1)
    if output.ndim == 2:  # (steps, channels): one row per map
        output = output[None]
    if output.ndim != 3:
        raise ValueError(
            f"feature_maps_png needs a layer with spatial output maps; layer '{target.name}' "
            f"outputs shape {target.output_shape}."
        )
    channels = output.shape[-1]
    count = min(channels, max_maps)
    tiles = [output[:, :, c] for c in range(count)]
    low, high = float(output[..., :count].min()), float(output[..., :count].max())
    if high <= low:
        high = low + 1.0
    shown = f"{count} of {channels}" if channels > count else f"{channels}"
    height, width = output.shape[:2]
    title = (
        f"{target.name} ({type(target).__name__}): {shown} feature maps {height} x {width}\n"
        f"for one input; shared scale {low:.3g} (dark) .. {high:.3g} (bright)"
    )
    data = _render(tiles, [f"map {c}" for c in range(count)], title, "viridis", low, high, tile_px)
    return _save(data, path)
