"""Files and other frameworks: Keras weight files (``.weights.h5``), whole-model files
(``.keras``) and PyTorch import (``from_torch``, which imports ``torch`` only when it runs)."""

from convlens.io.torch_import import from_torch

__all__ = ["from_torch"]
