"""The API's routes and their OpenAPI description (served at ``/openapi.json``).

``API_ROUTES`` maps each ``POST`` path to the function answering its decoded JSON body and
the largest body it takes; ``openapi()`` describes the same routes, so the schema cannot
list a route the server does not have.
"""

from __future__ import annotations

from convlens.web.api import MAX_SPEC_CHARS, explain_request
from convlens.web.files import MAX_UPLOAD_BYTES, download_request, upload_request
from convlens.web.views import feature_maps_request, summary_request, trace_request

__all__ = ["API_ROUTES", "TRAIN_PATH", "openapi"]

_BODY = 64 * 1024
# Calls that take an input's pixels: up to WEB_BUDGET.max_input_values values as JSON.
_WITH_PIXELS = 4 * 2**20


def _cancel(data, state):
    from convlens.web.api import request_object

    return state.trainer.cancel(request_object(data))


API_ROUTES = {
    "/api/summary": (summary_request, _BODY),
    "/api/explain": (explain_request, _WITH_PIXELS),
    "/api/trace": (trace_request, _WITH_PIXELS),
    "/api/feature-maps": (feature_maps_request, _WITH_PIXELS),
    "/api/train/cancel": (_cancel, _BODY),
    "/api/model": (upload_request, (MAX_UPLOAD_BYTES * 4) // 3 + 4096),
    "/api/model/download": (download_request, _BODY),
}
# Streams its progress as Server-Sent Events (the app handles it, not the worker pool).
TRAIN_PATH = "/api/train"

_DESCRIPTIONS = {
    "/api/summary": ("The summary Keras prints, and each layer's shapes and parameters.",
                     ["spec", "seed", "session"]),
    "/api/explain": ("Everything convlens says about the model: the summary, each layer's "
                     "explanation (HTML), picture (SVG) and contrast, and one traced value.",
                     ["spec", "seed", "input", "layer", "index", "session"]),
    "/api/trace": ("One output value recomputed from its input window and weights, checked "
                   "against the forward pass; for a conv layer also the traced filter's "
                   "per-channel maps (summed plus bias: the pre-activation) and the contrast "
                   "with the DepthwiseConv2D that keeps them apart.",
                   ["spec", "seed", "input", "layer", "index", "session"]),
    "/api/feature-maps": ("Every layer's output for the input (channels last, rounded to 6 "
                          "decimals), each Conv2D kernel, the prediction of a softmax "
                          "classifier, and who reads whom (graph.edges; graph.svg draws a "
                          "Functional model that is not a chain). With `layer`, only that "
                          "layer's maps and those of the layers it reads.",
                          ["spec", "seed", "input", "layer", "session"]),
    "/api/train": ("Train the spec's model (28x28x1 to 10 classes) on the MNIST 5k subset. "
                   "The answer is a text/event-stream: 'batch' and 'epoch' events with loss "
                   "and accuracy, then 'done' (or 'error'). One job at a time: 409 while one "
                   "runs. The trained model is kept in the page session.",
                   ["spec", "seed", "session", "epochs", "samples", "batch_size"]),
    "/api/train/cancel": ("Stop the session's training job after its current batch.",
                          ["session"]),
    "/api/model": ("Upload a .keras model (Sequential, or Functional with one input: the "
                   "answer's spec is then 'uploaded graph NAME', sent as `spec` by later "
                   "calls), or .weights.h5 weights for the session's model of `spec`, as "
                   "base64 JSON; the model is kept in the page session.",
                   ["spec", "seed", "session", "filename", "data"]),
    "/api/model/download": ("The session's model (trained, uploaded, or the spec's) as a "
                            ".keras file (application/octet-stream).",
                            ["spec", "seed", "session"]),
}

_PROPERTIES = {
    "spec": {"type": "string", "maxLength": MAX_SPEC_CHARS,
             "description": "a model spec, e.g. 'input 28x28x1 | conv2d 32 3 relu', or the "
                            "name /api/model gave an uploaded graph ('uploaded graph NAME'; "
                            "410 once the server no longer holds it)",
             "example": "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu"},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1, "default": 0,
             "description": "the weights are drawn from this seed in a fresh session"},
    "input": {"description": "the input: absent or {seed} (uniform [0, 1) from that seed), "
                             "{digit} (one of the MNIST test digits /api/examples lists: the 50 "
                             "shipped with convlens, or 100 from the test set when CONVLENS_DATA "
                             "or the dataset cache holds it) or {pixels} (the values, nested "
                             "as the input shape)",
              "oneOf": [
                  {"type": "object", "properties": {"seed": {"type": "integer"}},
                   "required": ["seed"], "additionalProperties": False},
                  {"type": "object", "properties": {"digit": {"type": "integer", "minimum": 0,
                                                              "maximum": 99}},
                   "required": ["digit"], "additionalProperties": False},
                  {"type": "object", "properties": {"pixels": {"type": "array"}},
                   "required": ["pixels"], "additionalProperties": False},
              ]},
    "layer": {"oneOf": [{"type": "integer"}, {"type": "string"}],
              "description": "the layer: index into model.layers or name (to trace, default "
                             "the last conv layer; for feature-maps, the one layer to send)"},
    "session": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$",
                "description": "the page session: its trained or uploaded model is used"},
    "epochs": {"type": "integer", "minimum": 1, "maximum": 20, "default": 1},
    "samples": {"type": "integer", "minimum": 100, "maximum": 5000, "default": 1000},
    "batch_size": {"type": "integer", "minimum": 1, "maximum": 512, "default": 32},
    "filename": {"type": "string", "description": "ends in .keras or .weights.h5"},
    "data": {"type": "string", "contentEncoding": "base64",
             "maxLength": (MAX_UPLOAD_BYTES * 4) // 3 + 4},
    "index": {"type": "array", "items": {"type": "integer"},
              "description": "the output position, no batch axis, e.g. [5, 7, 3] (default: "
                             "the centre, channel 0)"},
}

_ERROR = {"description": "refused: the message says what was wrong",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi() -> dict:
    """The OpenAPI 3.1 description of ``API_ROUTES``."""
    paths = {}
    for path in [*API_ROUTES, TRAIN_PATH]:
        summary, keys = _DESCRIPTIONS[path]
        schema = {"type": "object", "required": [k for k in ("spec", "session") if k in keys],
                  "properties": {key: _PROPERTIES[key] for key in keys}}
        paths[path] = {"post": {
            "summary": summary,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}},
            "responses": {"200": {"description": "the answer, as JSON",
                                  "content": {"application/json": {}}},
                          **{code: _ERROR for code in ("400", "403", "405", "410", "413",
                                                       "415", "503", "504")}},
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "convlens", "version": "1",
                 "description": "The local web page's API. Calls are POSTs with "
                                "Content-Type: application/json, from this server's own "
                                "page or a client with no Origin."},
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["message"], "properties": {
                "message": {"type": "string"}, "field": {"type": ["string", "null"]},
                "column": {"type": "integer"}, "token": {"type": "string"}}}}}}},
    }
