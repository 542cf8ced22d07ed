"""The web page's one question, as plain data: a spec in, everything convlens says about it out.

``explain_request(data)`` takes the decoded JSON of ``POST /api/explain`` and returns a
JSON-ready dict. It only calls the library --
``parse_spec``, ``model.summary``, ``explain_model``, ``conv_layer_svg``, ``trace`` -- and
never opens a file or runs code: a spec is data, so a ``.py`` (or any file) path is refused.

Request keys:

- ``spec`` (required): a model spec such as ``input 28x28x1 | conv2d 32 3 relu``;
- ``seed`` (default 0): the model is built inside ``convlens.utils.session(seed=seed)``
  (the generator ``set_random_seed(seed)`` would install, names from zero) and the traced
  input is ``sample_input(model, seed)``, so one seed always gives one page;
- ``layer`` (default: the last conv layer): the layer to trace, an index or a name;
- ``index`` (default: the centre of that layer's output, channel 0): the output position,
  no batch axis, e.g. ``[5, 7, 3]`` or ``"5,7,3"``.

A malformed request raises :class:`ApiError` (status 400) with the message, and for a
malformed spec the 1-based column and the token there. A trace that cannot be made (an
index out of range, a layer trace does not support) does not hide the rest of the answer:
the response carries ``trace_error`` instead of ``trace``.

Each request builds its model in a fresh session (names from ``conv2d``, the seed's
weights). A session lives in a context variable of the worker thread that runs it, so
concurrent requests and the caller's generator and name counts never see each other.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np

from convlens.budget import Budget
from convlens.utils import session

__all__ = ["ApiError", "GRAPH_KEY", "MAX_PARAMS", "MAX_SPEC_CHARS", "WEB_BUDGET", "examples",
           "explain_request", "graph_entry", "graph_spec", "jsonable", "model_figures",
           "model_input", "model_session", "read_int", "read_position", "read_seed",
           "request_object", "seeded_model", "shape_list", "trace_entry"]

MAX_SPEC_CHARS = 2_000
# The web page's budget, checked from the spec before any weight exists: a model the page
# answers within seconds and well under 1 GB of memory, whatever is sent (the classic MNIST
# CNN has 1.2M parameters, 86k activation values and 12M multiply-adds per sample). The
# command line and Python use the library's generous defaults.
WEB_BUDGET = Budget(max_params=5_000_000, max_activation_values=2_000_000,
                    max_multiply_adds=100_000_000, max_layers=100, max_input_values=500_000)
MAX_PARAMS = WEB_BUDGET.max_params
MAX_TRACE_MACS = WEB_BUDGET.max_multiply_adds
_FILE_SUFFIXES = (".py", ".pyw", ".keras", ".h5", ".json", ".pkl", ".npz")
_INTEGER = re.compile(r"^\s*-?[0-9]{1,12}\s*$", re.ASCII)
# A Functional model has no spec: the page names an uploaded one by this and its name.
GRAPH_KEY = "uploaded graph"
_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")


class ApiError(ValueError):
    """A request the API refuses; ``payload()`` is the JSON error body."""

    def __init__(self, message: str, status: int = 400, field: str | None = None,
                 column: int | None = None, token: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.column = column
        self.token = token

    def payload(self) -> dict:
        error = {"message": str(self), "field": self.field}
        if self.column is not None:
            error.update(column=self.column, token=self.token)
        return {"error": error}


def examples() -> dict:
    """The example specs the page offers (the seed's two models come from ``convlens.demo``),
    the spec it opens with, the spec grammar (``convlens.spec.GRAMMAR``) and the MNIST test
    digits of ``convlens.datasets.digits.page_digits`` (``images``: each 784 values 0-255, row
    by row; ``labels``; ``source``: the 50 shipped, or more from the test set on disk)."""
    from convlens.datasets.digits import page_digits
    from convlens.demo import model_a, model_b
    from convlens.spec import GRAMMAR, format_spec

    images, labels, source = page_digits()

    seed = format_spec(model_a())
    return {
        "initial": seed,
        "grammar": GRAMMAR,
        "digits": {"images": images.reshape(len(images), -1).tolist(),
                   "labels": labels.tolist(), "source": source},
        "examples": [
            {"title": "The seed question", "spec": seed,
             "note": "Why does the second layer output 24x24x64 and not 24x24x(32*64)?"},
            {"title": "5x5, no bias, 3 channels", "spec": format_spec(model_b()),
             "note": "The answer's variant: each filter is 5x5x3, then 5x5x32."},
            {"title": "Strides and padding",
             "spec": "input 32x32x3 | zeropad 1 | conv2d 16 3 relu strides=2 | "
                     "conv2d 32 3 relu padding=same dilation=2 | maxpool 2 | "
                     "conv2d 64 3 strides=2 padding=same | globalavgpool | dense 10 softmax",
             "note": "How stride, padding and dilation change the output size."},
            {"title": "Conv2D on 26x26x32", "spec": "input 26x26x32 | conv2d 64 3",
             "note": "Each of the 64 filters spans all 32 channels: 24x24x64."},
            {"title": "Depthwise x64 on 26x26x32",
             "spec": "input 26x26x32 | depthwise 3 multiplier=64",
             "note": "Each 3x3 filter on each channel separately: 24x24x2048, the misconception."},
        ],
    }


def read_int(value, name: str) -> int:
    """``value`` as an int (a JSON integer or a string of ASCII digits), or an ``ApiError``."""
    if isinstance(value, bool):
        raise ApiError(f"`{name}` must be an integer; received {value!r}.", field=name)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    raise ApiError(f"`{name}` must be an integer; received {value!r}.", field=name)


def _spec_text(data: dict) -> str:
    spec = data.get("spec")
    if not isinstance(spec, str) or not spec.strip():
        raise ApiError("`spec` is required: a model spec such as "
                       "'input 28x28x1 | conv2d 32 3 relu'.", field="spec")
    if len(spec) > MAX_SPEC_CHARS:
        raise ApiError(f"`spec` is {len(spec):,} characters; the web page takes at most "
                       f"{MAX_SPEC_CHARS:,}.", field="spec")
    if spec.strip().lower().endswith(_FILE_SUFFIXES) or "/" in spec or "\\" in spec:
        raise ApiError("the web page takes a spec, never a file: it does not open paths or run "
                       "Python files. Type the layers, e.g. 'input 28x28x1 | conv2d 32 3 relu'; "
                       "for a .py or .keras model use the command line: convlens explain FILE.",
                       field="spec")
    return spec


def _parse(spec: str):
    from convlens.spec import SpecError, parse_spec

    try:
        return parse_spec(spec, budget=WEB_BUDGET)
    except SpecError as error:
        raise ApiError(str(error), field="spec", column=error.column, token=error.token) from None
    except (ValueError, TypeError) as error:
        # A well-formed spec the layers refuse (e.g. a kernel larger than its input).
        raise ApiError(" ".join(str(error).split()), field="spec") from None
    except (MemoryError, OverflowError):
        raise ApiError("this model's weights do not fit in memory; make it smaller.",
                       field="spec") from None


def shape_list(shape) -> list:
    """A shape without its batch axis, as a list; a list of shapes (a merge's inputs, a
    model's outputs) as a list of those."""
    if any(isinstance(d, (tuple, list)) for d in shape):
        return [shape_list(one) for one in shape]
    return [None if d is None else int(d) for d in shape[1:]]


def _svg(layer) -> str | None:
    from convlens.viz import conv_layer_svg

    try:
        return conv_layer_svg(layer)
    except TypeError:  # documented: not a 2D convolution layer
        return None


def _layer_entry(layer, explanation) -> dict:
    contrast = explanation.contrast
    return {
        "index": explanation.index,
        "name": layer.name,
        "class_name": type(layer).__name__,
        "input_shape": shape_list(explanation.input_shape),
        "output_shape": shape_list(layer.output_shape),
        "params": int(layer.count_params()),
        "params_formula": explanation.params_formula,
        "html": explanation.to_html(level=3),
        "svg": _svg(layer),
        "contrast": None if contrast is None else jsonable(contrast.to_dict()),
    }


def jsonable(value):
    """``value`` with NumPy arrays and scalars turned into lists and Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def read_position(model, data: dict) -> tuple[int, tuple]:
    """The request's ``layer`` (index or name; default the last conv layer) as an index into
    ``model.layers``, and its ``index`` (default the centre, channel 0) as a tuple."""
    from convlens.explain.derivation import resolve_layer_index
    from convlens.explain.report import centre_index, last_conv_index

    layer = data.get("layer")
    if layer is None or layer == "":
        layer = last_conv_index(model)
        if layer is None:
            layer = len(model.layers) - 1
    elif not (isinstance(layer, str) and not _INTEGER.match(layer)):
        layer = read_int(layer, "layer")
    position = resolve_layer_index(model, layer)
    index = data.get("index")
    if index is None or index == "" or index == []:
        index = centre_index(model.layers[position])
    elif isinstance(index, str):
        index = [read_int(part, "index") for part in index.replace(" ", "").split(",")]
    elif isinstance(index, list):
        index = [read_int(part, "index") for part in index]
    else:
        raise ValueError(f"`index` must be a list of integers such as [5, 7, 3]; received "
                         f"{index!r}.")
    return position, tuple(index)


def check_trace_cost(total_macs) -> None:
    if total_macs is not None and total_macs > MAX_TRACE_MACS:
        raise ValueError(f"the model needs {total_macs:,} multiply-adds per sample; the web "
                         f"page traces models of at most {MAX_TRACE_MACS:,}. Use the command "
                         "line: convlens explain SPEC --trace I,J,C.")


def trace_entry(result) -> dict:
    """The JSON of a ``Trace``: where, the value and its check, and the trace as HTML."""
    return {
        "layer": result.layer_index,
        "layer_name": result.layer_name,
        "axis_names": list(result.axis_names),
        "index": list(result.index),
        "output_shape": shape_list(result.output_shape),
        "value": float(result.value),
        "forward_value": float(result.forward_value),
        "matches": bool(result.matches),
        "html": result.to_html(level=3),
    }


def _trace(model, data: dict, x, total_macs) -> dict:
    from convlens.explain import trace

    position, index = read_position(model, data)
    check_trace_cost(total_macs)
    return trace_entry(trace(model, position, index, x))


def model_input(model, data: dict, seed: int) -> np.ndarray:
    """The request's ``input`` as a batch of one for ``model``:

    - absent, or ``{"seed": s}``: ``sample_input(model, s)``, uniform [0, 1) (``s`` defaults
      to the request's ``seed``), the input the CLI's ``--trace`` uses;
    - ``{"digit": k}``: MNIST test digit ``k`` of ``datasets.digits.page_digits`` scaled
      to [0, 1], for a model taking 28x28 (``(28, 28, 1)``, ``(28, 28)``, ``(1, 28, 28)``);
    - ``{"pixels": [[...], ...]}``: the values themselves, nested as the input shape (a
      trailing channel axis of 1 may be left out).
    """
    from convlens.explain.report import sample_input

    choice = data.get("input")
    shape = tuple(int(d) for d in model.input_shape[1:])
    if choice is None:
        return sample_input(model, seed)
    if not isinstance(choice, dict) or len(choice) != 1:
        raise ApiError('`input` must be one of {"digit": K}, {"pixels": [...]} or {"seed": S}; '
                       f"received {str(choice)[:80]}.", field="input")
    (kind, value), = choice.items()
    if kind == "seed":
        chosen = read_int(value, "input.seed")
        if not 0 <= chosen < 2**32:
            raise ApiError(f"`input.seed` must be in [0, 2**32); received {chosen}.",
                           field="input")
        return sample_input(model, chosen)
    if kind == "digit":
        from convlens.datasets.digits import page_digits

        images, _, _ = page_digits()
        number = read_int(value, "input.digit")
        if not 0 <= number < len(images):
            raise ApiError(f"`input.digit` must be in [0, {len(images) - 1}]; received "
                           f"{number}.", field="input")
        if shape not in ((28, 28, 1), (28, 28), (1, 28, 28)):
            raise ApiError(f"an MNIST digit is 28x28x1; this model takes inputs of shape "
                           f"{shape}. Send {{\"pixels\": ...}} or {{\"seed\": S}} instead.",
                           field="input")
        return (images[number].astype(np.float32) / 255.0).reshape(1, *shape)
    if kind == "pixels":
        try:
            pixels = np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError):
            raise ApiError("`input.pixels` must be numbers nested as the input shape "
                           f"{shape}.", field="input") from None
        if pixels.shape != shape and (*pixels.shape, 1) != shape:
            raise ApiError(f"`input.pixels` has shape {pixels.shape}; this model takes "
                           f"{shape}.", field="input")
        if not np.all(np.isfinite(pixels)):
            raise ApiError("`input.pixels` holds a value that is not a finite number.",
                           field="input")
        return pixels.reshape(1, *shape)
    raise ApiError(f"unknown input kind {kind[:40]!r}: use digit, pixels or seed.",
                   field="input")


def request_object(data) -> dict:
    """``data`` if it is a JSON object, else an ``ApiError`` showing what one looks like."""
    if not isinstance(data, dict):
        raise ApiError("the request must be a JSON object such as {\"spec\": \"input 28x28x1 | "
                       "conv2d 32 3\"}.")
    return data


def read_seed(data: dict) -> int:
    seed = read_int(data.get("seed", 0), "seed")
    if not 0 <= seed < 2**32:
        raise ApiError(f"`seed` must be in [0, 2**32); received {seed}.", field="seed")
    return seed


def _built_model(spec: str):
    model = _parse(spec)
    if not model.built:
        raise ApiError("the model has no input shape, so its sizes are unknown; start the spec "
                       "with an input segment, e.g. 'input 28x28x1 | ...'.", field="spec",
                       column=1, token=spec.split()[0] if spec.split() else "")
    params = model.count_params()
    if params > MAX_PARAMS:
        raise ApiError(f"the model has {params:,} parameters; the web page explains models of "
                       f"at most {MAX_PARAMS:,}. Use the command line: convlens explain SPEC.",
                       field="spec")
    return model


@contextmanager
def model_session(data: dict, store=None):
    """Inside: ``(model, seed)`` -- the request's spec built with the request's seed, in a
    fresh session that stays current (for readers that build layers) until the block ends.
    When ``store`` (a ``jobs.ModelStore``) holds a model the request's ``session`` trained or
    uploaded for this spec, that model is used instead of fresh weights."""
    request_object(data)
    spec = _spec_text(data)
    seed = read_seed(data)
    session_id = data.get("session")
    kept = store.get(session_id, spec) if store is not None and isinstance(session_id, str) \
        else None
    # Names counted from zero (``conv2d``, ``conv2d_1``... as a fresh Keras session names them)
    # and weights from the seed; the process's own generator and names come back afterwards.
    if kept is None and spec.strip().startswith(GRAPH_KEY):
        raise ApiError(f"'{spec.strip()[:120]}' is a model uploaded to this page, and the server "
                       "no longer holds it (it keeps the models of the most recent page "
                       "sessions): upload the .keras file again.", status=410, field="spec")
    with session(seed=seed):
        yield (kept if kept is not None else _built_model(spec)), seed


def model_figures(model, **limits):
    """``budget.check_budget`` of a built model, a chain or a graph (its calls in run order):
    its figures, or a ``BudgetError`` past ``limits`` (the library's defaults when none)."""
    from convlens.budget import check_budget, check_graph_budget

    graph = getattr(model, "graph", None)
    if graph is None:
        return check_budget(model.layers, model.input_shape, **limits)
    calls = [(node.layer, [t.shape for t in node.inputs] if node.list_input
              else node.inputs[0].shape) for node in graph.nodes]
    return check_graph_budget(calls, [t.shape for t in model.inputs], **limits)


def graph_spec(model) -> str:
    """The name the page gives an uploaded Functional model in place of a spec."""
    name = _NAME_CHARACTERS.sub("_", str(model.name))[:60] or "model"
    return f"{GRAPH_KEY} {name}"


def graph_entry(model) -> dict:
    """Who reads whom (``edges``: ``[source, target]`` indices into ``model.layers``, for a
    chain too) and, for a model that is not a plain chain, its drawing (``svg``)."""
    from convlens.viz import model_edges, model_graph_svg

    chain = getattr(model, "graph", None) is None or model.sequential_like
    return {"edges": [list(edge) for edge in model_edges(model)],
            "svg": None if chain else model_graph_svg(model)}


def seeded_model(data: dict, store=None):
    """``(model, seed)`` of the request: its spec built with its seed in a fresh session (or
    the session's kept model, see :func:`model_session`)."""
    with model_session(data, store) as (model, seed):
        return model, seed


def explain_request(data, state=None) -> dict:
    """Answer one explain request (see the module docstring); raise ``ApiError`` if malformed.
    ``state`` (a ``jobs.ServerState``) supplies the page session's trained model, if any."""
    with model_session(data, None if state is None else state.store) as (model, seed):
        return _answer(model, data, seed)


def _answer(model, data: dict, seed: int) -> dict:
    from convlens.explain import explain_model
    from convlens.explain.render import to_html
    from convlens.spec import format_spec
    from convlens.summary import summary_text

    params = model.count_params()
    explanation = explain_model(model, contrast=True)
    try:
        spec = format_spec(model)
    except (ValueError, TypeError):  # a Functional model: named, not spelled out
        spec = data["spec"]
    response = {
        "spec": spec,
        "seed": seed,
        "model_name": model.name,
        "input_shape": shape_list(model.input_shape),
        "output_shape": shape_list(model.output_shape),
        "total_params": int(params),
        "summary": summary_text(model),
        "overview_html": to_html([explanation.overview()], level=3),
        "layers": [_layer_entry(layer, e) for layer, e in zip(model.layers, explanation.layers)],
        "graph": graph_entry(model),
        "trace": None,
        "trace_error": None,
    }
    try:
        response["trace"] = _trace(model, data, model_input(model, data, seed),
                                   explanation.total_macs)
    except ApiError as error:
        response["trace_error"] = str(error)
    except (ValueError, TypeError) as error:
        response["trace_error"] = " ".join(str(error).split())
    return response
