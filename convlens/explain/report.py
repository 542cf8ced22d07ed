"""One self-contained HTML page explaining a model: summary, derivations, pictures, a trace.

``write_report(model, path)`` writes the page atomically; ``report_html(model)`` returns
it as a string. The page has no external resources -- no scripts, no fonts, no CDN: the
CSS is inline and the pictures are inline SVG and ``data:`` PNG URIs -- so it opens
offline and can be mailed as one file.

For each model the page shows:

1. the Keras summary table (``model.summary()`` text, in ``<pre>``) and the model's spec;
2. the explanation, ``explain_model(model, contrast=True).to_html()``;
3. per 2D conv layer: the SVG of input volume, one filter and output stack; the kernel
   grid; the feature maps for the sample input;
4. the trace of one output value of the last conv layer (its centre position, channel 0)
   for the sample input, recomputed from its terms and checked against the forward pass.

The sample input is ``x`` if given, else ``sample_input(model)``: uniform [0, 1) values
from a fixed seed, so the same model always gives the same page.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from convlens.kinds import kind_of
from convlens.session import check_seed
from convlens.summary import summary_text

__all__ = ["report_html", "write_report", "sample_input", "last_conv_index"]

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5em; color: #1d2b36; line-height: 1.45; }
h1 { border-bottom: 3px solid #e8590c; padding-bottom: .3em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #c9d3dc; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 12.5px;
      line-height: 1.25; border: 1px solid #e1e6eb; }
code { background: #f1f3f5; padding: 0 .25em; font-size: 92%; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: .2em .6em; text-align: right; }
th { background: #eef2f6; }
.convlens-block h4, .convlens-block h5 { margin-bottom: .2em; }
.convlens-layer, .convlens-trace { border-left: 3px solid #dbe8f6; padding-left: 1em;
                                   margin: 1em 0; }
figure { margin: 1em 0; }
figcaption { font-size: 13px; color: #44515c; }
.pictures img, .pictures svg { max-width: 100%; height: auto; border: 1px solid #e1e6eb; }
.spec { font-family: monospace; background: #fff7e6; padding: .4em .6em; }
.ok { color: #2b8a3e; } .bad { color: #c92a2a; }
nav ul { columns: 2; }
"""


def sample_input(model, seed: int = 0) -> np.ndarray | list[np.ndarray]:
    """A deterministic input batch of one for ``model``: uniform [0, 1) float32 (a list of
    them, in ``model.inputs`` order, for a model of several inputs)."""
    shape = model.input_shape
    several = isinstance(shape, list)
    shapes = shape if several else [shape]
    if shape is None or any(d is None for each in shapes for d in each[1:]):
        raise ValueError(
            f"Model '{model.name}' has no fixed input shape ({shape}); pass an input x or start "
            "the model with Input((28, 28, 1))."
        )
    generator = np.random.default_rng(check_seed(seed))
    arrays = [generator.random((1, *each[1:]), dtype=np.float32) for each in shapes]
    return arrays if several else arrays[0]


def _is_conv(layer) -> bool:
    return kind_of(layer).picture is not None


def last_conv_index(model) -> int | None:
    """Index in ``model.layers`` of the last convolution (Conv*, Depthwise, Separable,
    Transpose): the layer the report and the CLI trace by default."""
    indices = [i for i, layer in enumerate(model.layers) if _is_conv(layer)]
    return indices[-1] if indices else None


def centre_index(layer) -> tuple:
    """The output position at the centre of ``layer``'s output, channel 0 (no batch axis)."""
    shape = layer.output_shape[1:]
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return (0, *(d // 2 for d in shape[1:]))
    return (*(d // 2 for d in shape[:-1]), 0)


def _png_img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}"/>'


def _figure(content: str, caption: str) -> str:
    return f"<figure>{content}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _svg_inline(svg: str) -> str:
    # Drop nothing but the XML declaration (there is none); ids are not used, so several
    # SVGs can share one page.
    return svg.strip()


def _model_section(model, number: int, heading: str | None, x, layer=None, index=None) -> str:
    from convlens.explain import explain_model, trace
    from convlens.explain.derivation import resolve_layer_index
    from convlens.spec import format_spec
    from convlens.viz import conv_layer_svg, feature_maps_png, kernel_grid_png

    anchor = f"model-{number}"
    title = heading or f"Model '{model.name}'"
    out = [f'<section id="{anchor}">', f"<h2>{html.escape(title)}</h2>"]
    if not model.built:
        out.append(
            "<p>This model is not built (no input shape), so it has no sizes to explain. "
            "Start it with <code>Input((28, 28, 1))</code>.</p></section>"
        )
        return "\n".join(out)
    if model.graph is None:  # the spec grammar is linear: a graph has no spec line
        try:
            spec = format_spec(model)
            out.append(f'<p>Spec: <span class="spec">{html.escape(spec)}</span></p>')
        except ValueError:
            pass
    out.append("<h3>Summary (as Keras prints it)</h3>")
    out.append(f"<pre>{html.escape(summary_text(model))}</pre>")

    out.append("<h3>How every number is computed</h3>")
    chosen = None if layer is None else resolve_layer_index(model, layer)
    out.append(explain_model(model, contrast=True, layers=chosen).to_html())

    if x is None:
        try:
            x = sample_input(model)
            x_note = "a fixed random input (uniform 0..1, seed 0)"
        except ValueError:
            x, x_note = None, ""
    else:
        several = isinstance(model.input_shape, list) and isinstance(x, (list, tuple))
        x = ([np.asarray(each, dtype=np.float32)[:1] for each in x] if several
             else np.asarray(x, dtype=np.float32)[:1])
        x_note = "the input you gave (first sample)"

    conv_layers = [(i, each) for i, each in enumerate(model.layers)
                   if _is_conv(each) and chosen in (None, i)]
    if conv_layers:
        out.append("<h3>Pictures of the convolution layers</h3>")
    for position, layer in conv_layers:
        out.append(
            f'<div class="pictures"><h4>{position}. {html.escape(layer.name)} '
            f"({type(layer).__name__})</h4>"
        )
        if len(layer.kernel_size) == 2:
            out.append(
                _figure(
                    _svg_inline(conv_layer_svg(layer)),
                    "Input volume, one filter spanning its channels, output stack; "
                    "the highlighted map is the one this filter makes.",
                )
            )
        try:
            out.append(
                _figure(
                    _png_img(kernel_grid_png(layer), f"kernels of {layer.name}"),
                    "The kernels, one tile per filter (the title says what a tile shows).",
                )
            )
        except ValueError as error:
            out.append(f"<p>No kernel grid: {html.escape(str(error))}</p>")
        if x is not None:
            try:
                png = feature_maps_png(model, position, x)
                out.append(
                    _figure(
                        _png_img(png, f"feature maps of {layer.name}"),
                        f"The output maps of this layer for {x_note}.",
                    )
                )
            except ValueError as error:
                out.append(f"<p>No feature maps: {html.escape(str(error))}</p>")
        out.append("</div>")

    position = last_conv_index(model) if chosen is None else chosen
    if position is not None and x is not None:
        traced = model.layers[position]
        result = trace(model, position, centre_index(traced) if index is None else index, x)
        verdict = (
            '<p class="ok">Recomputed from its terms, the value equals the forward pass '
            f"({result.value:.8g}).</p>"
            if result.matches
            else f'<p class="bad">Recomputed value differs from the forward pass by '
            f"{result.abs_diff:.3g}.</p>"
        )
        out.append(f"<h3>One output value, traced ({html.escape(x_note)})</h3>")
        out.append(result.to_html())
        out.append(verdict)
    out.append("</section>")
    return "\n".join(out)


def report_html(model, x=None, title: str | None = None, headings=None, layer=None,
                index=None) -> str:
    """The whole self-contained HTML page for a model (or a list of models) as a string.

    Args:
        model: a built ``Sequential``, or a list of them (one section each).
        x: the sample input (a batch; the first sample is used; a list of batches for a model
            of several inputs), or a list with one per model; default: ``sample_input(model)``.
        title: the page title; default ``"convlens report: <model name>"``.
        headings: one heading per model (optional).
        layer: explain, draw and trace only this layer (an index or a name; one model).
        index: the output position to trace (default: the centre, channel 0).
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise ValueError("report_html needs at least one model.")
    several_inputs = len(models) == 1 and models[0].built and isinstance(
        models[0].input_shape, list)
    if isinstance(x, (list, tuple)) and not several_inputs:
        inputs = list(x)  # one per model
    else:
        inputs = [x] * len(models)
    if len(inputs) != len(models):
        raise ValueError(f"got {len(inputs)} inputs for {len(models)} models; pass one each.")
    headings = list(headings) if headings is not None else [None] * len(models)
    if len(headings) != len(models):
        raise ValueError(f"got {len(headings)} headings for {len(models)} models.")
    if (layer is not None or index is not None) and len(models) != 1:
        raise ValueError("layer= and index= choose a layer of one model; received "
                         f"{len(models)} models.")
    page_title = title or "convlens report: " + ", ".join(m.name for m in models)
    sections = [
        _model_section(m, number, heading, sample, layer, index)
        for number, (m, heading, sample) in enumerate(zip(models, headings, inputs), start=1)
    ]
    nav = ""
    if len(models) > 1:
        items = "".join(
            f'<li><a href="#model-{n}">{html.escape(h or m.name)}</a></li>'
            for n, (m, h) in enumerate(zip(models, headings), start=1)
        )
        nav = f"<nav><ul>{items}</ul></nav>"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        f"<title>{html.escape(page_title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(page_title)}</h1>\n"
        "<p>Every number on this page is computed from the model object by convlens; "
        "the page needs no network.</p>\n" + nav + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def write_report(model, path, x=None, title: str | None = None, headings=None, layer=None,
                 index=None) -> Path:
    """Write ``report_html(model, x, title, headings, layer, index)`` to ``path`` atomically;
    return it."""
    from convlens.fileio import atomic_write

    page = report_html(model, x=x, title=title, headings=headings, layer=layer, index=index)
    return atomic_write(os.fspath(path), page)
