"""Files and other frameworks: Keras weight files (``.weights.h5``), whole-model files
(``.keras``), PyTorch both ways (``from_torch``, ``to_torch``) and ONNX both ways
(``export_onnx``, ``from_onnx``).

``torch`` and ``onnx`` are imported only when those functions run.
"""

from convlens.io.onnx_export import export_onnx
from convlens.io.onnx_import import from_onnx
from convlens.io.torch_export import load_torch_weights, to_torch
from convlens.io.torch_import import from_torch

__all__ = ["export_onnx", "from_onnx", "from_torch", "load_torch_weights", "to_torch"]
