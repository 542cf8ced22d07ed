"""The API's routes and their OpenAPI description (served at ``/openapi.json``).

``API_ROUTES`` maps each ``POST`` path to the function answering its decoded JSON body and
the largest body it takes; ``openapi()`` describes the same routes, so the schema cannot
list a route the server does not have.
"""

from __future__ import annotations

from convlens.web.api import MAX_SPEC_CHARS, explain_request
from convlens.web.views import feature_maps_request, summary_request, trace_request

__all__ = ["API_ROUTES", "openapi"]

_BODY = 64 * 1024

API_ROUTES = {
    "/api/summary": (summary_request, _BODY),
    "/api/explain": (explain_request, _BODY),
    "/api/trace": (trace_request, _BODY),
    "/api/feature-maps": (feature_maps_request, _BODY),
}

_DESCRIPTIONS = {
    "/api/summary": ("The summary Keras prints, and each layer's shapes and parameters.",
                     ["spec", "seed"]),
    "/api/explain": ("Everything convlens says about the model: the summary, each layer's "
                     "explanation (HTML), picture (SVG) and contrast, and one traced value.",
                     ["spec", "seed", "input", "layer", "index"]),
    "/api/trace": ("One output value recomputed from its input window and weights, checked "
                   "against the forward pass; for a conv layer also the traced filter's "
                   "per-channel maps (summed plus bias: the pre-activation) and the contrast "
                   "with the DepthwiseConv2D that keeps them apart.",
                   ["spec", "seed", "input", "layer", "index"]),
    "/api/feature-maps": ("Every layer's output for the input (channels last, rounded to 6 "
                          "decimals), each Conv2D kernel, and the prediction of a softmax "
                          "classifier.", ["spec", "seed", "input"]),
}

_PROPERTIES = {
    "spec": {"type": "string", "maxLength": MAX_SPEC_CHARS,
             "description": "a model spec, e.g. 'input 28x28x1 | conv2d 32 3 relu'",
             "example": "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu"},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1, "default": 0,
             "description": "the weights are drawn from this seed in a fresh session"},
    "input": {"description": "the input: absent or {seed} (uniform [0, 1) from that seed), "
                             "{digit} (one of the 50 MNIST test digits shipped with convlens) "
                             "or {pixels} (the values, nested as the input shape)",
              "oneOf": [
                  {"type": "object", "properties": {"seed": {"type": "integer"}},
                   "required": ["seed"], "additionalProperties": False},
                  {"type": "object", "properties": {"digit": {"type": "integer", "minimum": 0,
                                                              "maximum": 49}},
                   "required": ["digit"], "additionalProperties": False},
                  {"type": "object", "properties": {"pixels": {"type": "array"}},
                   "required": ["pixels"], "additionalProperties": False},
              ]},
    "layer": {"oneOf": [{"type": "integer"}, {"type": "string"}],
              "description": "the layer to trace: index into model.layers or name (default: "
                             "the last conv layer)"},
    "index": {"type": "array", "items": {"type": "integer"},
              "description": "the output position, no batch axis, e.g. [5, 7, 3] (default: "
                             "the centre, channel 0)"},
}

_ERROR = {"description": "refused: the message says what was wrong",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi() -> dict:
    """The OpenAPI 3.1 description of ``API_ROUTES``."""
    paths = {}
    for path in API_ROUTES:
        summary, keys = _DESCRIPTIONS[path]
        schema = {"type": "object", "required": ["spec"],
                  "properties": {key: _PROPERTIES[key] for key in keys}}
        paths[path] = {"post": {
            "summary": summary,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}},
            "responses": {"200": {"description": "the answer, as JSON",
                                  "content": {"application/json": {}}},
                          **{code: _ERROR for code in ("400", "403", "405", "413", "415",
                                                       "503", "504")}},
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
