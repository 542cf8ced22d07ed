"""The seed question's two models, as its Keras programs wrote them.

Model A is the question's program with the second layer it asks about::

    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation='relu', input_shape=(28, 28, 1)))
    model.add(Conv2D(64, (3, 3), activation='relu'))

Model B is the answer's variant (3 input channels, 5x5 filters, no bias)::

    model = Sequential([
        Convolution2D(32, 5, activation='relu', use_bias=False, input_shape=(28, 28, 3)),
        Convolution2D(64, 5, activation='relu', use_bias=False),
    ])

``answer()`` is the answer to the seed question in under 30 lines, every number computed
from model A (weights from ``session(seed=0)``, as the web page's seed 0) and one real MNIST
test digit shipped with convlens. ``run_demo(full=True)`` prints both summaries (exactly
``model.summary()``), the weight shapes as the seed's loop prints them and both
explanations. Both write the HTML report.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from convlens.layers import Conv2D, Convolution2D
from convlens.models import Sequential

__all__ = ["model_a", "model_b", "weight_shape_lines", "answer", "run_demo", "DEFAULT_HTML"]

DEFAULT_HTML = "convlens-demo.html"


def model_a() -> Sequential:
    """28x28x1 -> Conv2D(32, 3x3, relu) -> Conv2D(64, 3x3, relu): the question's network."""
    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    return model


def model_b() -> Sequential:
    """28x28x3 -> Convolution2D(32, 5, no bias) -> Convolution2D(64, 5, no bias)."""
    return Sequential(
        [
            Convolution2D(32, 5, activation="relu", use_bias=False, input_shape=(28, 28, 3)),
            Convolution2D(64, 5, activation="relu", use_bias=False),
        ]
    )


def weight_shape_lines(model: Sequential) -> list[str]:
    """What the seed's loop prints, one line per weight, with the layer and weight named::

    for l in model.layers:
        if len(l.get_weights()) > 0:
            print(l.get_weights()[0].shape)   # [1] would be the biases
    """
    lines = []
    for layer in model.layers:
        for variable, array in zip(layer.weights, layer.get_weights()):
            lines.append(f"{layer.name}.{variable.name}: {array.shape}")
    return lines


def answer(digit: int = 0) -> str:
    """The seed question answered on model A, in its own numbers (under 30 lines)."""
    from convlens.datasets.digits import sample_digits
    from convlens.explain import explain_layer, trace
    from convlens.explain.report import centre_index
    from convlens.shapes import format_shape
    from convlens.utils import session

    with session(seed=0):
        model = model_a()
        explanation = explain_layer(model.layers[1], contrast=True)
    first, second = model.layers
    contrast = explanation.contrast
    images, labels, _ = sample_digits()
    x = (images[digit].astype("float32") / 255.0).reshape(1, 28, 28, 1)
    index = centre_index(second)
    result = trace(model, 1, index, x)
    partial = ", ".join(f"{v:.4g}" for v in result.partial_sums[:3])
    total = float(result.partial_sums.sum(dtype="float64"))
    kernel = "x".join(str(k) for k in second.kernel.shape[:-1])
    window = "x".join(str(k) for k in second.kernel_size)
    lines = [
        "The seed question: Conv2D(32, 3) then Conv2D(64, 3) on 28x28x1 images. Why is the",
        f"second output {format_shape(second.output_shape)} and not "
        f"(None, 24, 24, {contrast.in_channels}*{contrast.filters})?",
        "",
        *(f"  {layer.name:<9} {format_shape(layer.input_shape):<19} -> "
          f"{format_shape(layer.output_shape):<19} kernel {layer.kernel.shape}, "
          f"{layer.count_params():,} parameters" for layer in (first, second)),
        "",
        f"Each of {second.name}'s {second.filters} filters is a {kernel} block: it spans all "
        f"{contrast.in_channels} input channels",
        "and sums over them, giving one number per position. So:",
        f"  {second.filters} maps, not {contrast.in_channels}*{contrast.filters} = "
        f"{contrast.in_channels * contrast.filters:,}",
        f"  parameters: {explanation.params_formula}",
        "",
        f"The picture behind '{contrast.in_channels}*{contrast.filters}' is a real layer, "
        f"{contrast.separate_layer}:",
        f"  output {format_shape(contrast.separate_output_shape)} from the same "
        f"{contrast.separate_kernel_weights:,} kernel weights; summing its maps per filter",
        f"  gives {second.name}'s output (max |difference| {contrast.max_abs_diff:.1e}).",
        "",
        f"One value, on an MNIST test digit (a {labels[digit]}) with seed-0 weights:",
        f"  {second.name}{list(index)} = sum over the {len(result.partial_sums)} channels of "
        f"({window} window * its kernel slice) + bias",
        f"  = ({partial}, ...) summed = {total:.6g}, + bias {result.bias:.4g} = "
        f"{result.pre_activation:.6g}",
        f"  relu -> {result.value:.6g}; the forward pass gives {result.forward_value:.6g}"
        f" ({'equal' if result.matches else 'DIFFERENT'})",
        "",
        "convlens demo --full: both models' summaries and every layer explained;",
        "convlens serve: the same on a web page, with every feature map drawn.",
    ]
    return "\n".join(lines)


def run_demo(
    html_path: str | os.PathLike | None = DEFAULT_HTML,
    out: Callable[[str], object] = print,
    pictures_dir: str | os.PathLike | None = None,
    full: bool = True,
) -> str | None:
    """Print the seed's answer (``full=False``) or both models and their explanations;
    write the HTML report.

    ``out`` receives each block of text; ``model.summary()`` itself prints to stdout as
    Keras's does. With ``pictures_dir``, each layer's SVG and PNG pictures go there too,
    drawn from the same models (so their layer names match the summaries). Returns the
    absolute path of the report, or None if ``html_path`` is None.
    """
    from convlens.explain import explain_model
    from convlens.utils import session

    if not full:
        out(answer())
    with session(seed=0):
        models = [
            ("Model A: the question's network (28x28x1, two 3x3 conv layers)", model_a()),
            ("Model B: the answer's variant (28x28x3, two 5x5 conv layers, no bias)",
             model_b()),
        ]
    for heading, model in models if full else []:
        out(f"{heading}\n{'=' * len(heading)}")
        model.summary()
        out("Weight shapes (kernel: kh, kw, input channels, filters):")
        out("\n".join("  " + line for line in weight_shape_lines(model)))
        out("")
        out(str(explain_model(model, contrast=True)))
        out("")
    if pictures_dir is not None:
        for label, (_, model) in zip("ab", models):
            write_pictures(model, pictures_dir, f"model_{label}")
    if html_path is None:
        return None
    from convlens.explain.report import write_report

    path = write_report(
        [model for _, model in models],
        html_path,
        title="convlens demo: how subsequent convolution layers work",
        headings=[heading for heading, _ in models],
    )
    return os.path.abspath(path)


def write_pictures(model: Sequential, folder: str | os.PathLike, prefix: str) -> None:
    """``<prefix>_layer<i>.svg``, ``_kernels.png`` and ``_features.png`` for each layer."""
    from convlens.explain.report import sample_input
    from convlens.fileio import atomic_write
    from convlens.viz import conv_layer_svg, feature_maps_png, kernel_grid_png

    os.makedirs(folder, exist_ok=True)
    x = sample_input(model)
    for index, layer in enumerate(model.layers):
        stem = os.path.join(folder, f"{prefix}_layer{index}")
        atomic_write(stem + ".svg", conv_layer_svg(layer))
        kernel_grid_png(layer, stem + "_kernels.png")
        feature_maps_png(model, index, x, stem + "_features.png")
