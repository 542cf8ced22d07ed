"""convlens: a Keras-compatible convolutional network library on NumPy that explains itself.

Use it as Keras: ``from convlens.models import Sequential``,
``from convlens.layers import Conv2D``, or ``import convlens as keras`` (then
``keras.layers``, ``keras.optimizers``, ``keras.datasets.mnist`` … as in Keras).
"""

from convlens import (
    activations,
    callbacks,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    saving,
    utils,
)
from convlens.layers import Input, InputLayer, Layer
from convlens.models import Model, Sequential, load_model

__version__ = "0.1.0"

__all__ = [
    "Input", "InputLayer", "Layer", "Model", "Sequential", "activations", "callbacks",
    "datasets",
    "initializers", "layers", "load_model", "losses", "metrics", "models", "optimizers", "saving",
    "utils", "__version__",
]
