"""Datasets with the ``keras.datasets`` interface: ``convlens.datasets.mnist.load_data()``."""

from convlens.datasets import mnist

__all__ = ["mnist"]
