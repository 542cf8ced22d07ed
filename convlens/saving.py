"""``keras.saving`` for convlens: whole-model ``.keras`` files."""

from convlens.io.keras_format import save_model
from convlens.models import load_model

__all__ = ["load_model", "save_model"]
