"""convlens: a Keras-compatible convolutional network library on NumPy that explains itself."""

__version__ = "0.1.0"
