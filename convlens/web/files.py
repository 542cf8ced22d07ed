"""Models in and out of the page: upload a ``.keras`` or ``.weights.h5`` file, download the
session's model as ``.keras``.

An upload is a JSON body ``{"session", "filename", "data": <base64>}`` (the API takes JSON
only), at most ``MAX_UPLOAD_BYTES`` of file. The bytes go to a private temporary folder and
through the library's loaders (``load_model``, ``model.load_weights``), which read files as
data and never run code from them; the model is then held to the page's budget. A Sequential
model (or a Functional chain) is kept under its spec; any other Functional model of one input
under ``"uploaded graph NAME"`` (``api.graph_spec``), which the page sends in place of a spec;
a model of several inputs is refused (the page feeds one). A ``.weights.h5`` file is loaded
into the session's model for the request's spec: the spec's fresh model, or the graph the
session uploaded (the file has no architecture). The model is kept in the page session
(``jobs.ModelStore``), so every other call of that session explores it.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path

from convlens.web.api import ApiError, model_session, request_object
from convlens.web.jobs import read_session

__all__ = ["MAX_UPLOAD_BYTES", "Download", "download_request", "upload_request"]

MAX_UPLOAD_BYTES = 16 * 2**20
# A model description: Keras writes a few KB per layer, and the page takes 100 layers.
MAX_CONFIG_BYTES = 2**20


class Download:
    """A file answer: the app sends ``data`` as an attachment named ``filename``."""

    def __init__(self, data: bytes, filename: str):
        self.data = data
        self.filename = filename


def _file_bytes(data: dict) -> tuple[str, bytes]:
    filename = data.get("filename")
    if not isinstance(filename, str) or not filename.lower().endswith((".keras", ".weights.h5")):
        raise ApiError("`filename` must end in .keras (a whole model) or .weights.h5 (weights "
                       f"for the spec); received {str(filename)[:80]!r}.", field="filename")
    encoded = data.get("data")
    if not isinstance(encoded, str):
        raise ApiError("`data` must be the file's bytes in base64.", field="data")
    if len(encoded) > (MAX_UPLOAD_BYTES * 4) // 3 + 4:
        raise ApiError(f"the file is larger than {MAX_UPLOAD_BYTES:,} bytes.", status=413,
                       field="data")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("`data` is not valid base64.", field="data") from None
    return filename, raw


def _check_budget(model) -> None:
    from convlens.budget import BudgetError
    from convlens.web.api import WEB_BUDGET, model_figures

    try:
        model_figures(model, **WEB_BUDGET.limits())
    except BudgetError as error:
        raise ApiError(f"the uploaded model is over the page's budget: {error}",
                       status=413) from None


def _check_keras_config(path: Path) -> None:
    """Hold a ``.keras`` file's model to the page's budget before the loader builds it: the
    loader's own limits are the library's generous ones."""
    import json
    import zipfile

    from convlens.io.keras_format import model_from_config
    from convlens.web.api import WEB_BUDGET

    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise ApiError(f"the file's config.json is {info.file_size:,} bytes; the page "
                               f"takes at most {MAX_CONFIG_BYTES:,}.", status=413, field="data")
            config = json.loads(archive.read(info).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(f"not a .keras file the page can read: {error}", field="data") from None
    if not isinstance(config, dict):
        raise ApiError("the file's config.json is not a JSON object.", field="data")
    model_from_config(config, "config.json", budget=WEB_BUDGET)  # refuses before allocating


def _check_explorable(model) -> None:
    """A built model of one input (what the page can feed), or an ``ApiError`` saying so."""
    if not model.built:
        raise ApiError("the file holds a model with no input shape; the page explores built "
                       "models (start it with Input(...) or an input_shape).", field="data")
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        names = ", ".join(f"{t.name} {tuple(t.shape[1:])}" for t in inputs)
        raise ApiError(f"the model '{model.name}' has {len(inputs)} inputs ({names}); the page "
                       "explores models with one input (an image, a digit or a seeded pattern)."
                       " Explore it in Python or with convlens explain FILE.", field="data")


def _spec_of(model) -> str:
    """The spec of a Sequential model (or a Functional chain), else the graph's page name."""
    from convlens.spec import format_spec
    from convlens.web.api import graph_spec

    if getattr(model, "graph", None) is not None and not model.sequential_like:
        return graph_spec(model)
    try:
        return format_spec(model)
    except (ValueError, TypeError):
        return graph_spec(model)


def _load_weights(model, path: Path) -> None:
    """``model.load_weights(path)``, leaving the model as it was if the file is refused (an
    uploaded graph is the session's only copy)."""
    before = model.get_weights()
    try:
        model.load_weights(os.fspath(path))
    except BaseException:
        model.set_weights(before)
        raise


def upload_request(data, state) -> dict:
    """Load the uploaded file (see the module docstring); answer its spec and summary."""
    from convlens.models import load_model
    from convlens.summary import summary_text

    request_object(data)
    session = read_session(data, required=True)
    filename, raw = _file_bytes(data)
    with tempfile.TemporaryDirectory(prefix="convlens-upload-") as folder:
        # The user's file name is not used on disk: only its kind.
        path = Path(folder) / ("model.keras" if filename.lower().endswith(".keras")
                               else "model.weights.h5")
        path.write_bytes(raw)
        try:
            if path.suffix == ".keras":
                _check_keras_config(path)
                model = load_model(os.fspath(path), compile=False)
                _check_explorable(model)
                _check_budget(model)
                spec = _spec_of(model)
            else:
                # Weights for the session's model: the spec's, or the graph it uploaded.
                with model_session(data, state.store) as (model, _):
                    spec = data["spec"]
                    _load_weights(model, path)
        except ApiError:
            raise
        except (ValueError, TypeError, KeyError, OSError) as error:
            message = " ".join(str(error).replace(folder, "").split())
            raise ApiError(f"cannot load {filename[:80]!r}: {message}", field="data") from None
    state.store.put(session, spec, model)
    return {"spec": spec, "summary": summary_text(model), "filename": filename[:200]}


def download_request(data, state) -> Download:
    """The session's model (trained, uploaded, or the spec's seeded one) as ``.keras``."""
    request_object(data)
    with model_session(data, state.store) as (model, _):
        with tempfile.TemporaryDirectory(prefix="convlens-download-") as folder:
            path = Path(folder) / "model.keras"
            model.save(os.fspath(path))
            return Download(path.read_bytes(), "convlens-model.keras")
