"""The page's pictures in real headless Chromium (Playwright driving Debian's chromium): the
feature maps drawn on canvases are predict's activations, a clicked cell's per-channel sums
are trace's, the window slides, and the page is not blank."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

from convlens.datasets.digits import sample_digits
from convlens.explain import trace
from convlens.explain.maps import layer_outputs
from tests.test_web import seeded_model as seeded
from tests.test_web_security import server

SEED_SPEC = "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu"
MNIST_SPEC = ("input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu | maxpool 2 | flatten | "
              "dense 10 softmax")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def digit(k: int) -> np.ndarray:
    return (sample_digits()[0][k].astype(np.float32) / 255.0).reshape(1, 28, 28, 1)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = next((path for path in map(shutil.which, BROWSERS) if path), None)
    assert executable, "no Chromium found: ./dev test installs the Debian package 'chromium'"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def base_url():
    with server() as (port, _):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    errors = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.set_default_timeout(60_000)
    yield opened
    context.close()
    assert not errors, errors


def open_page(page, base_url, spec: str, digit_index: int):
    from urllib.parse import quote

    page.goto(f"{base_url}/#spec={quote(spec)}")
    page.wait_for_selector("#cell .channel-card")
    page.click(f'#digits button[data-digit="{digit_index}"]')
    marker = json.dumps({'digit': digit_index}, separators=(',', ':'))
    page.wait_for_selector(f"#maps[data-input='{marker}']")


def canvas_grey(page, layer: str, channel: int) -> np.ndarray:
    """The red channel of every pixel of one map's canvas (grey: r = g = b)."""
    data = page.evaluate(
        """([layer, channel]) => {
            const c = document.querySelector(
                `#maps canvas[data-layer="${layer}"][data-channel="${channel}"]`);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            return {w: c.width, h: c.height, px: Array.from(d)};
        }""", [layer, str(channel)])
    pixels = np.array(data["px"], dtype=np.int64).reshape(data["h"], data["w"], 4)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 3] == 255).all()
    return pixels[..., 0]


def test_every_layers_maps_are_predicts_activations(page, base_url):
    open_page(page, base_url, MNIST_SPEC, 7)
    model = seeded(MNIST_SPEC)
    x = digit(7)
    outputs = layer_outputs(model, x)
    for index, output in enumerate(outputs):
        maps = output[0]
        count = page.locator(f'#maps canvas[data-layer="{index}"]').count()
        assert count == (maps.shape[-1] if maps.ndim == 3 else 1), index
        if maps.ndim != 3:
            continue
        low, high = float(maps.min()), float(maps.max())
        for channel in (0, maps.shape[-1] // 2, maps.shape[-1] - 1):
            expected = np.round(255 * (maps[..., channel] - low) / (high - low))
            shown = canvas_grey(page, str(index), channel)
            assert np.abs(shown - expected).max() <= 1, (index, channel)
    # The input itself, and the prediction of the classifier.
    assert np.abs(canvas_grey(page, "input", 0) - np.round(255 * x[0, ..., 0])).max() <= 1
    predicted = int(np.argmax(model.predict(x, verbose=0)[0]))
    assert page.get_attribute("#predicted-class", "data-class") == str(predicted)


def test_a_clicked_cell_shows_each_channels_window_and_the_traces_partial_sums(page, base_url):
    open_page(page, base_url, SEED_SPEC, 3)
    row, col, channel = 5, 7, 3
    target = page.locator('#maps canvas[data-layer="1"][data-channel="3"]')
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    page.mouse.click(box["x"] + (col + 0.5) * box["width"] / 24,
                     box["y"] + (row + 0.5) * box["height"] / 24)
    page.wait_for_selector(f"#cell-position:has-text('[{row}, {col}, {channel}]')")
    model = seeded(SEED_SPEC)
    expected = trace(model, 1, (row, col, channel), digit(3))
    page.wait_for_function(
        "v => Number(document.getElementById('cell-check').dataset.value) === v",
        arg=float(expected.value))
    cards = page.locator("#cell .channel-card[data-channel]")
    assert cards.count() == 32
    windows = page.eval_on_selector_all(
        "#cell .channel-card .mark.window", "ms => ms.map(m => [m.dataset.rows, m.dataset.cols])")
    assert windows == [[f"{row},{row + 2}", f"{col},{col + 2}"]] * 32
    partials = page.eval_on_selector_all(
        "#cell .partial-value", "vs => vs.map(v => Number(v.dataset.value))")
    np.testing.assert_allclose(partials, expected.partial_sums, rtol=1e-5, atol=1e-6)
    shown = float(page.get_attribute("#cell-sum", "data-value"))
    assert abs(shown - expected.value) <= 1e-6 and expected.matches
    assert abs(float(page.get_attribute("#cell-sum", "data-pre")) - expected.pre_activation) \
        <= 1e-5
    # The misconception beside it, in the layer's own numbers.
    contrast = page.inner_text("#contrast")
    assert "DepthwiseConv2D(kernel_size=3, depth_multiplier=64)" in contrast
    assert "2,048 maps" in contrast and "18,432" in contrast
    assert "18,496" in page.inner_text("#answer")


def test_play_slides_the_window_and_pause_checks_the_position(page, base_url):
    open_page(page, base_url, SEED_SPEC, 0)
    start = page.inner_text("#cell-position")
    page.click("#play")
    page.wait_for_function("s => document.getElementById('cell-position').textContent !== s",
                           arg=start)
    page.click("#play")  # pause: the position shown is traced
    text = page.inner_text("#cell-position")
    position = [int(v) for v in text.split("[", 1)[1].split("]", 1)[0].split(",")]
    model = seeded(SEED_SPEC)
    expected = trace(model, 1, tuple(position), digit(0))
    page.wait_for_function(
        "v => Number(document.getElementById('cell-check').dataset.value) === v",
        arg=float(expected.value))
    windows = page.eval_on_selector_all("#cell .mark.window", "ms => ms.map(m => m.dataset.rows)")
    assert set(windows) == {f"{position[0]},{position[0] + 2}"}


def test_the_kernels_are_drawn_as_every_channel_slice_and_the_page_is_not_blank(page, base_url):
    from PIL import Image

    open_page(page, base_url, SEED_SPEC, 1)
    size = page.eval_on_selector('#kernels canvas[data-layer="1"]', "c => [c.width, c.height]")
    assert size == [64 * 4, 32 * 4]  # 64 filters across, 32 slices of 3x3 down, 1 px apart
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    pixels = np.asarray(shot.resize((300, 600))).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    assert colours > 200, colours


def test_a_drawn_digit_goes_through_the_model(page, base_url):
    open_page(page, base_url, SEED_SPEC, 0)
    page.click("#draw-clear")
    pad = page.locator("#draw")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * 0.5,
                        box["y"] + box["height"] * (0.2 + 0.06 * step))
    page.mouse.up()
    page.wait_for_function("() => (document.getElementById('maps').dataset.input || '')"
                           ".startsWith('{\"pixels\"')")
    pixels = np.array(page.evaluate("() => Maps.input.pixels"), dtype=np.float32)
    assert pixels.shape == (28, 28) and pixels.max() == 1.0 and pixels[:, :8].max() == 0.0
    model = seeded(SEED_SPEC)
    maps = model.layers[0].call(pixels.reshape(1, 28, 28, 1))[0]
    low, high = float(maps.min()), float(maps.max())
    expected = np.round(255 * (maps[..., 5] - low) / (high - low))
    assert np.abs(canvas_grey(page, "0", 5) - expected).max() <= 1


SMALL = "input 28x28x1 | conv2d 8 3 relu | maxpool 2 | flatten | dense 10 softmax"


def test_training_draws_the_chart_live_and_the_accuracy_rises(page, base_url):
    open_page(page, base_url, SMALL, 0)
    page.fill("#train-epochs", "2")
    page.fill("#train-samples", "640")
    blank = page.evaluate("() => document.getElementById('train-chart').toDataURL()")
    page.click("#train-start")
    page.wait_for_function("() => Train.points.length > 0")
    page.wait_for_function("() => Train.finished !== null && Train.finished !== undefined",
                           timeout=300_000)
    points = page.evaluate("() => Train.points")
    epochs = page.evaluate("() => Train.epochs")
    assert len(points) == 36 and len(epochs) == 2  # 576 training images, batches of 32
    assert epochs[-1]["accuracy"] > points[0]["accuracy"]
    assert page.evaluate("() => document.getElementById('train-chart').toDataURL()") != blank
    assert "done after 2 epoch(s)" in page.inner_text("#train-status")
    assert page.is_visible("#train-download")


def test_an_uploaded_keras_model_is_explored(page, base_url, tmp_path):
    spec = "input 28x28x1 | conv2d 6 5 relu | flatten | dense 10 softmax"
    model = seeded(spec, 3)
    model.save(str(tmp_path / "mine.keras"))
    open_page(page, base_url, SEED_SPEC, 0)
    page.set_input_files("#upload", str(tmp_path / "mine.keras"))
    page.wait_for_function(f"() => document.getElementById('maps').dataset.spec === {spec!r}")
    assert page.input_value("#spec") == spec
    predicted = int(np.argmax(model.predict(digit(0), verbose=0)[0]))
    page.wait_for_selector(f'#predicted-class[data-class="{predicted}"]')
    assert page.locator('#maps canvas[data-layer="0"]').count() == 6


def test_an_image_is_resized_to_another_models_input(page, base_url, tmp_path):
    from urllib.parse import quote

    from PIL import Image

    spec = "input 16x16x3 | conv2d 4 3 relu"
    gradient = np.zeros((64, 64, 3), np.uint8)
    gradient[..., 0] = np.arange(64)[:, None] * 4  # red grows downwards
    gradient[..., 2] = 200
    Image.fromarray(gradient).save(tmp_path / "picture.png")
    page.goto(f"{base_url}/#spec={quote(spec)}")
    page.wait_for_selector("#image-panel:not([hidden])")
    page.set_input_files("#image-file", str(tmp_path / "picture.png"))
    page.wait_for_function("() => (document.getElementById('maps').dataset.input || '')"
                           ".startsWith('{\"pixels\"')")
    pixels = np.array(page.evaluate("() => Maps.input.pixels"), dtype=np.float32)
    assert pixels.shape == (16, 16, 3)
    assert np.all(np.diff(pixels[:, 0, 0]) >= 0) and pixels[-1, 0, 0] > pixels[0, 0, 0]
    assert np.allclose(pixels[..., 2], 200 / 255, atol=2e-3)
    model = seeded(spec)
    maps = model.layers[0].call(pixels[None])[0]
    low, high = float(maps.min()), float(maps.max())
    expected = np.round(255 * (maps[..., 1] - low) / (high - low))
    assert np.abs(canvas_grey(page, "0", 1) - expected).max() <= 1


def test_an_uploaded_graph_is_drawn_and_a_click_on_a_branch_shows_its_maps_and_sums(
        page, base_url, tmp_path):
    keras = pytest.importorskip("keras")
    from tests import graphs
    from tests.test_viz import _keras_sources

    keras.utils.set_random_seed(2)
    reference = graphs.residual_block(keras.layers, keras.Model, keras.Input)
    reference.save(str(tmp_path / "block.keras"))
    names = [layer.name for layer in reference.layers]
    every = keras.Model(reference.inputs, [layer.output for layer in reference.layers])
    expected = dict(zip(names, (out[0] for out in every.predict(digit(0), verbose=0))))
    open_page(page, base_url, SEED_SPEC, 0)
    page.set_input_files("#upload", str(tmp_path / "block.keras"))
    page.wait_for_selector("#graph-panel:not([hidden]) g.graph-layer")
    assert page.input_value("#spec") == "uploaded graph resnet_block"
    # The graph: a box per layer, an arrow per Keras connection, two into the merge.
    assert page.eval_on_selector_all("#graph g.graph-layer",
                                     "gs => gs.map(g => g.dataset.name)") == names
    arrows = page.eval_on_selector_all(
        "#graph path.graph-edge", "ps => ps.map(p => [p.dataset.from, p.dataset.to])")
    shown = {(names[int(a)], names[int(b)]) for a, b in arrows}
    assert shown == {(source, entry["name"]) for entry in reference.get_config()["layers"]
                     for source in _keras_sources(entry)}
    assert {("branch_b", "add"), ("shortcut", "add")} <= shown
    boxes = page.eval_on_selector_all(
        "#graph g.graph-layer rect", "rs => rs.map(r => r.getBoundingClientRect().top)")
    assert boxes[names.index("branch_a")] == boxes[names.index("shortcut")]  # side by side
    # Click the shortcut branch: its 6 maps (and the input it reads) are Keras's outputs.
    shortcut = names.index("shortcut")
    page.click('#graph g.graph-layer[data-name="shortcut"]')
    page.wait_for_selector(f'#maps[data-focus="{shortcut}"]')
    assert page.locator(f'#maps canvas[data-layer="{shortcut}"]').count() == 6
    maps = expected["shortcut"]
    low, high = float(maps.min()), float(maps.max())
    for channel in (0, 5):
        grey = np.round(255 * (maps[..., channel] - low) / (high - low))
        assert np.abs(canvas_grey(page, str(shortcut), channel) - grey).max() <= 1
    assert page.locator(f'#maps canvas[data-layer="{names.index("branch_b")}"]').count() == 0
    page.wait_for_function(
        "v => Math.abs(Number(document.getElementById('cell-check').dataset.value) - v) < 1e-5",
        arg=float(maps[14, 14, 0]))
    # Click a cell of branch_b (it reads branch_a's 4 channels): the four partial sums.
    branch_b = names.index("branch_b")
    page.click('#graph g.graph-layer[data-name="branch_b"]')
    page.wait_for_selector(f'#maps[data-focus="{branch_b}"]')
    row, col, channel = 3, 5, 2
    target = page.locator(f'#maps canvas[data-layer="{branch_b}"][data-channel="{channel}"]')
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    page.mouse.click(box["x"] + (col + 0.5) * box["width"] / 28,
                     box["y"] + (row + 0.5) * box["height"] / 28)
    page.wait_for_selector(f"#cell-position:has-text('[{row}, {col}, {channel}]')")
    kernel, bias = reference.get_layer("branch_b").get_weights()
    window = np.pad(expected["branch_a"], ((1, 1), (1, 1), (0, 0)))[row:row + 3, col:col + 3]
    per_channel = (window * kernel[..., channel]).sum(axis=(0, 1))
    assert page.locator("#cell .channel-card[data-channel]").count() == 4
    partials = page.eval_on_selector_all(
        "#cell .partial-value", "vs => vs.map(v => Number(v.dataset.value))")
    np.testing.assert_allclose(partials, per_channel, rtol=1e-4, atol=1e-5)
    value = float(page.get_attribute("#cell-sum", "data-value"))
    assert abs(value - expected["branch_b"][row, col, channel]) <= 1e-5
    assert abs(per_channel.sum() + bias[channel] - value) <= 1e-5
    windows = page.eval_on_selector_all(
        "#cell .channel-card .mark.window", "ms => ms.map(m => [m.dataset.rows, m.dataset.cols])")
    assert windows == [[f"{row - 1},{row + 1}", f"{col - 1},{col + 1}"]] * 4
    # A cell of the layer branch_b reads: branch_a is picked, and its cell made of the input.
    branch_a = names.index("branch_a")
    target = page.locator(f'#maps canvas[data-layer="{branch_a}"][data-channel="1"]')
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    page.mouse.click(box["x"] + 12.5 * box["width"] / 28, box["y"] + 10.5 * box["height"] / 28)
    page.wait_for_selector(f'#maps[data-focus="{branch_a}"]')
    page.wait_for_selector("#cell-position:has-text('[10, 12, 1]')")
    assert page.locator("#cell .channel-card[data-channel]").count() == 1
    value = float(page.get_attribute("#cell-sum", "data-value"))
    assert abs(value - expected["branch_a"][10, 12, 1]) <= 1e-5


def test_a_spec_error_marks_the_old_results_stale_and_the_answer_comes_first(page, base_url):
    import re

    open_page(page, base_url, SEED_SPEC, 0)
    summary = page.inner_text("#summary")
    assert not page.is_visible("#stale")
    page.fill("#spec", "input 28x28x1 | conv2d 32 3 relu | nonsense 4")
    page.wait_for_selector("#stale:not([hidden])")
    assert "nonsense" in page.inner_text("#spec-error")
    assert page.inner_text("#summary") == summary  # kept, and marked as the previous spec's
    # The seed question's answer sits above the layer cards, not 3,000 px down after them.
    answer, cards = page.evaluate("() => ['answer', 'layers'].map(id => "
                                  "document.getElementById(id).getBoundingClientRect().top)")
    assert answer < cards
    # No Python attribute names in the words, no 17-digit numbers.
    text = page.inner_text("body")
    assert not re.search(r"see `?\.\w", text) and ".window" not in text
    assert not re.search(r"\d\.\d{12,}", text)
