"""The HTML report: one self-contained page that parses, embeds its pictures, fetches nothing."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from convlens.demo import model_a, model_b, weight_shape_lines
from convlens.explain.report import (
    centre_index,
    last_conv_index,
    report_html,
    sample_input,
    write_report,
)
from convlens.spec import parse_spec


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.resources: list[str] = []
        self.images: list[str] = []
        self.svgs = 0
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "svg":
            self.svgs += 1
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.resources.append(value)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def page() -> str:
    model = parse_spec(
        "input 16x16x1 | conv2d 4 3 relu | conv2d 6 3 relu | maxpool 2 | flatten | dense 3 softmax"
    )
    return report_html(model, title="tiny")


def test_page_parses_and_has_the_parts(page):
    parser = parse(page)
    assert {"html", "head", "style", "pre", "figure", "section"} <= parser.tags
    assert page.count("<!DOCTYPE html>") == 1
    assert "Total params" in page  # the Keras summary, in <pre>
    assert "convlens-explanation" in page  # the explain fragment
    assert "Trace of conv2d" in page and 'class="ok"' in page


def test_no_external_resources(page):
    parser = parse(page)
    for value in parser.resources:
        assert not re.match(r"\s*(https?:)?//", value), value
        assert value.startswith(("data:image/png;base64,", "#")), value
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)


def test_pictures_are_embedded(page):
    parser = parse(page)
    assert parser.svgs == 2  # one per conv layer
    assert len(parser.images) == 4  # kernels and feature maps per conv layer
    for src in parser.images:
        data = base64.b64decode(src.split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_is_atomic_and_complete(tmp_path):
    model = parse_spec("input 8x8x2 | conv2d 3 3")
    path = tmp_path / "report.html"
    path.write_text("old")
    written = write_report(model, path, x=np.ones((1, 8, 8, 2), dtype=np.float32))
    assert written == path
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not [p for p in tmp_path.iterdir() if p.name != "report.html"]


def test_models_without_conv_or_input_still_render():
    dense = parse_spec("input 5 | dense 3 relu | dense 2")
    parse(report_html(dense))
    unbuilt = parse_spec("conv2d 3 3")
    assert "not built" in report_html(unbuilt)


def test_demo_models_and_two_model_page():
    a, b = model_a(), model_b()
    assert a.layers[1].kernel.shape == (3, 3, 32, 64) and a.output_shape == (None, 24, 24, 64)
    assert b.layers[0].kernel.shape == (5, 5, 3, 32) and b.count_params() == 53_600
    assert weight_shape_lines(b) == [
        f"{b.layers[0].name}.kernel: (5, 5, 3, 32)",
        f"{b.layers[1].name}.kernel: (5, 5, 32, 64)",
    ]
    page = report_html([a, b], headings=["A", "B"])
    parser = parse(page)
    assert parser.svgs == 4
    assert "#model-2" in parser.resources


def test_helpers():
    model = parse_spec("input 9x7x2 | conv2d 3 3 | flatten | dense 2")
    assert last_conv_index(model) == 0
    assert centre_index(model.layers[0]) == (3, 2, 0)
    x = sample_input(model)
    assert x.shape == (1, 9, 7, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x, sample_input(model))
    with pytest.raises(ValueError, match="inputs for"):
        report_html([model, model], x=[x])


def test_the_traced_value_of_a_transposed_or_separable_last_conv():
    for spec in ("input 6x6x2 | conv2d 3 3 | deconv 2 3 strides=2 | flatten | dense 2",
                 "input 6x6x2 | conv2d 3 3 | separable 4 3 relu | flatten | dense 2"):
        model = parse_spec(spec)
        assert last_conv_index(model) == 1
        page = report_html(model, title="up")
        assert f"Trace of {model.layers[1].name}" in page and 'class="ok"' in page
