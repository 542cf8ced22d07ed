"""convlens: a Keras-compatible convolutional network library on NumPy that explains itself.

Use it as Keras: ``from convlens.models import Sequential``,
``from convlens.layers import Conv2D``, or ``import convlens as keras``.
"""

from convlens import activations, initializers, layers, models, utils
from convlens.layers import Input, InputLayer, Layer
from convlens.models import Sequential

__version__ = "0.1.0"

__all__ = [
    "Input", "InputLayer", "Layer", "Sequential", "activations", "initializers", "layers",
    "models", "utils", "__version__",
]
