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

``run_demo()`` prints both summaries (exactly ``model.summary()``), the weight shapes as
the seed's loop prints them, both explanations, and writes the HTML report.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from convlens.layers import Conv2D, Convolution2D
from convlens.models import Sequential

__all__ = ["model_a", "model_b", "weight_shape_lines", "run_demo", "DEFAULT_HTML"]

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


def run_demo(
    html_path: str | os.PathLike | None = DEFAULT_HTML,
    out: Callable[[str], object] = print,
    pictures_dir: str | os.PathLike | None = None,
) -> str | None:
    """Print the seed's two models and their explanations; write the HTML report.

    ``out`` receives each block of text; ``model.summary()`` itself prints to stdout as
    Keras's does. With ``pictures_dir``, each layer's SVG and PNG pictures go there too,
    drawn from the same models (so their layer names match the summaries). Returns the
    absolute path of the report, or None if ``html_path`` is None.
    """
    from convlens.explain import explain_model

    models = [
        ("Model A: the question's network (28x28x1, two 3x3 conv layers)", model_a()),
        ("Model B: the answer's variant (28x28x3, two 5x5 conv layers, no bias)", model_b()),
    ]
    for heading, model in models:
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
