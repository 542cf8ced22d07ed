"""Pictures: the SVG parses and carries the layer's real sizes; PNGs have the promised size."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.spec import parse_spec
from convlens.viz import conv_layer_svg, feature_maps_png, grid_pixel_size, kernel_grid_png
from convlens.viz.png import kernel_tiles

SVG = "{http://www.w3.org/2000/svg}"


def svg_text(svg: str) -> str:
    root = ET.fromstring(svg)
    return " ".join(node.text or "" for node in root.iter(f"{SVG}text"))


def read_png(data: bytes) -> np.ndarray:
    import matplotlib.image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def test_seed_second_layer_svg_shows_real_sizes():
    model = parse_spec("input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu")
    text = svg_text(conv_layer_svg(model.layers[1]))
    for label in ("26 x 26 x 32", "3 x 3 x 32", "24 x 24 x 64", "64 filters"):
        assert label in text


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(5, 40),
    channels=st.integers(1, 70),
    filters=st.integers(1, 300),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same"]),
)
def test_conv_svg_labels_match_the_layer(size, channels, filters, kernel, stride, padding):
    kernel = min(kernel, size)
    model = parse_spec(
        f"input {size}x{size}x{channels} | conv2d {filters} {kernel} "
        f"strides={stride} padding={padding}"
    )
    layer = model.layers[0]
    _, height, width, out_channels = layer.output_shape
    text = svg_text(conv_layer_svg(layer))
    assert f"{size} x {size} x {channels}" in text
    assert f"{kernel} x {kernel} x {channels}" in text
    assert f"{height} x {width} x {out_channels}" in text
    assert f"{filters} filters" in text


@pytest.mark.parametrize(
    "spec, filter_label, output_label",
    [
        ("input 10x10x8 | depthwise 3 multiplier=2", "3 x 3 x 1", "8 x 8 x 16"),
        ("input 10x10x8 | separable 5 3", "3 x 3 x 1", "8 x 8 x 5"),
        ("input 6x6x4 | deconv 3 3 strides=2", "3 x 3 x 4", "13 x 13 x 3"),
        ("input 9x9x4 | conv2d 6 3 groups=2", "3 x 3 x 2", "7 x 7 x 6"),
    ],
)
def test_other_conv_kinds(spec, filter_label, output_label):
    text = svg_text(conv_layer_svg(parse_spec(spec).layers[0]))
    assert filter_label in text and output_label in text


def test_svg_rejects_non_conv_and_unbuilt_layers():
    from convlens.layers import Conv2D

    with pytest.raises(TypeError):
        conv_layer_svg(parse_spec("input 4 | dense 3").layers[0])
    with pytest.raises(ValueError, match="not built"):
        conv_layer_svg(Conv2D(3, 3))


@pytest.mark.parametrize(
    "spec, tiles",
    [
        ("input 12x12x1 | conv2d 7 3", 7),
        ("input 12x12x5 | conv2d 20 3", 20),
        ("input 12x12x3 | depthwise 3 multiplier=2", 6),
        ("input 16x3 | conv1d 5 4", 5),
    ],
)
def test_kernel_grid_size_and_content(tmp_path, spec, tiles):
    layer = parse_spec(spec).layers[0]
    path = tmp_path / "kernels.png"
    data = kernel_grid_png(layer, path)
    assert path.read_bytes() == data
    image = read_png(data)
    width, height = grid_pixel_size(tiles)
    assert image.shape[:2] == (height, width)
    assert image[..., :3].std() > 0.01


def test_kernel_tiles_say_channel_zero_or_mean():
    single = parse_spec("input 8x8x1 | conv2d 4 3").layers[0]
    many = parse_spec("input 8x8x6 | conv2d 4 3").layers[0]
    tiles, _, what = kernel_tiles(single)
    assert "channel 0" in what
    np.testing.assert_array_equal(tiles[2], single.kernel.value[:, :, 0, 2])
    tiles, _, what = kernel_tiles(many)
    assert "mean over the 6" in what
    np.testing.assert_allclose(tiles[1], many.kernel.value[:, :, :, 1].mean(axis=2))


def test_feature_maps_png(tmp_path):
    model = parse_spec("input 14x14x1 | conv2d 9 3 tanh | maxpool 2 | flatten | dense 2")
    x = np.random.default_rng(0).random((1, 14, 14, 1), dtype=np.float32)
    for layer in (0, 1):
        image = read_png(feature_maps_png(model, layer, x, tmp_path / f"maps{layer}.png"))
        assert image.shape[:2] == grid_pixel_size(9)[::-1]
        assert image[..., :3].std() > 0.01
    with pytest.raises(ValueError, match="spatial"):
        feature_maps_png(model, 3, x)
    with pytest.raises(ValueError, match="out of range"):
        feature_maps_png(model, 7, x)
    with pytest.raises(ValueError, match="Add a batch axis|incompatible"):
        feature_maps_png(model, 0, x[0])


def test_many_maps_are_capped():
    model = parse_spec("input 6x6x1 | conv2d 80 3")
    x = np.ones((1, 6, 6, 1), dtype=np.float32)
    image = read_png(feature_maps_png(model, 0, x, max_maps=16))
    assert image.shape[:2] == grid_pixel_size(16)[::-1]


def test_a_narrow_kernel_grid_keeps_its_whole_title_inside_the_picture():
    import io

    from PIL import Image

    from convlens.demo import model_a
    from convlens.viz import kernel_grid_png
    from convlens.viz.png import TITLE_PX

    picture = np.asarray(Image.open(io.BytesIO(kernel_grid_png(model_a().layers[0]))))
    band = picture[:TITLE_PX, :, :3]
    inked = np.flatnonzero((band < 200).any(axis=(0, 2)))  # columns holding title text
    assert inked.size and inked[0] > 2 and inked[-1] < band.shape[1] - 3


def _keras_sources(entry) -> set[str]:
    """The layer names a Keras config's ``inbound_nodes`` read (any nesting)."""
    found = set()

    def visit(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") \
                if isinstance(value.get("config"), dict) else None
            if history:
                found.add(history[0])
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(entry.get("inbound_nodes", []))
    return found


@pytest.mark.parametrize("name", ["residual_block", "small_unet"])
def test_model_graph_svg_draws_keras_connections_with_branches_side_by_side(name):
    import xml.etree.ElementTree as ElementTree

    keras = pytest.importorskip("keras")
    from convlens.viz import graph_layout, model_edges, model_graph_svg
    from tests import graphs

    reference, model = graphs.pair(getattr(graphs, name), keras)
    names = [layer.name for layer in model.layers]
    expected = {(source, entry["name"]) for entry in reference.get_config()["layers"]
                for source in _keras_sources(entry)}
    assert {(names[s], names[t]) for s, t in model_edges(model)} == expected
    layout = graph_layout(model)
    boxes = {box.name: box for box in layout.boxes}
    for source, target in expected:  # every arrow points down
        assert boxes[source].row < boxes[target].row, (source, target)
    rows = {}
    for box in layout.boxes:
        rows.setdefault(box.row, []).append(box.x)
    for xs in rows.values():  # boxes of one row do not overlap
        xs.sort()
        assert all(b - a >= 200 for a, b in zip(xs, xs[1:]))
    branch = ("branch_a", "shortcut") if name == "residual_block" else ("down", "pool")
    merge = "add" if name == "residual_block" else "skip"
    if name == "residual_block":  # the two branches leave the input side by side
        assert boxes[branch[0]].row == boxes[branch[1]].row
        assert boxes[branch[0]].x != boxes[branch[1]].x
    svg = ElementTree.fromstring(model_graph_svg(model))
    space = "{http://www.w3.org/2000/svg}"
    groups = svg.findall(f"{space}g")
    assert [g.get("data-name") for g in groups] == names
    arrows = {(int(p.get("data-from")), int(p.get("data-to")))
              for p in svg.findall(f"{space}path") if p.get("class") == "graph-edge"}
    assert {(names[s], names[t]) for s, t in arrows} == expected
    assert len([t for t in expected if t[1] == merge]) == 2


def test_layer_output_in_a_graph_is_that_layers_output_not_the_chain_of_layers():
    import convlens.layers as L
    from convlens.models import Model
    from convlens.viz.png import layer_output

    x = L.Input((5, 5, 2))
    left = L.Conv2D(3, 3, padding="same", name="left")(x)
    right = L.Conv2D(3, 1, name="right")(x)  # reads the input, not 'left'
    model = Model(x, left * right)
    data = np.random.default_rng(0).standard_normal((1, 5, 5, 2)).astype(np.float32)
    # The product's layer is 'multiply' only in a fresh session: take its name from the model.
    for name in ("right", model.layers[-1].name):
        expected = Model(x, model.get_layer(name).output).predict(data, verbose=0)
        np.testing.assert_allclose(layer_output(model, name, data), expected, rtol=1e-6)
