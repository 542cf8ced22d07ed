"""The web page: the ASGI app called directly (hand-written scope/receive/send) for every
route, the page's static files checked without a browser, and `convlens serve` for real."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from convlens.cli import main
from convlens.explain.report import sample_input
from convlens.layers import Conv2D
from convlens.spec import format_spec, parse_spec
from convlens.utils import clear_session, set_random_seed
from convlens.web import MAX_BODY_BYTES, STATIC_DIR, create_app

SEED_SPEC = "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu"


def call(method: str, path: str, body: bytes = b"", query: str = "", headers=None,
         chunks=None, app=None):
    """One request through the ASGI app; returns (status, headers dict, body bytes)."""
    app = app or create_app()
    messages = list(chunks) if chunks is not None else [body]
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(messages) - 1}
        for i, chunk in enumerate(messages)
    ]
    sent = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    if headers is None:
        headers = [(b"host", b"127.0.0.1:8000")]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        if method == "POST":
            headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http", "method": method, "path": path, "query_string": query.encode(),
        "headers": headers,
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    assert start["type"] == "http.response.start"
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body_out


def post_json(data, app=None):
    status, headers, body = call("POST", "/api/explain", json.dumps(data).encode(), app=app)
    assert headers["content-type"].startswith("application/json")
    return status, json.loads(body)


def seeded_model(spec: str, seed: int = 0):
    """The model the API documents: weights drawn after set_random_seed(seed), layer names
    counted from zero as in a fresh session."""
    clear_session()
    set_random_seed(seed)
    return parse_spec(spec)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
            if name == "id":
                self.ids.add(value)


def parsed_index() -> _Links:
    status, headers, body = call("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    parser = _Links()
    parser.feed(body.decode("utf-8"))
    return parser


# ----- the page and its files -----------------------------------------------------------------


def test_index_is_served_and_loads_only_local_files():
    page = parsed_index()
    assert page.urls, "the page should load its script and style"
    for url in page.urls:
        if url == "#":  # the download link: the script fetches the file
            continue
        assert not re.match(r"^(https?:)?//", url), url
        assert url.startswith("/static/") or url == "/openapi.json", url
        status, _, body = call("GET", url)
        assert status == 200 and body, url
    assert {"/static/app.js", "/static/style.css"} <= set(page.urls)


def test_static_files_have_content_types_and_no_external_urls():
    for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        status, headers, body = call("GET", f"/static/{name}")
        assert status == 200 and headers["content-type"].startswith(kind)
        assert body == (STATIC_DIR / name).read_bytes()
        assert b"http://" not in body and b"https://" not in body and b"@import" not in body
    _, headers, _ = call("GET", "/")
    assert "default-src 'self'" in headers["content-security-policy"]


def test_element_ids_used_by_the_scripts_exist_in_index_html():
    scripts = "".join(path.read_text() for path in STATIC_DIR.glob("*.js"))
    used = set(re.findall(r"""(?:\$|byId)\(\s*["']([\w-]+)["']\s*\)""", scripts))
    assert {"spec", "summary", "layers", "trace-layer", "trace-index", "spec-error", "maps",
            "cell", "kernels", "digits", "draw", "play"} <= used
    script = (STATIC_DIR / "app.js").read_text()
    missing = used - parsed_index().ids
    assert not missing, f"app.js uses ids that index.html lacks: {sorted(missing)}"
    # The JSON keys app.js reads are keys the API returns.
    _, data = post_json({"spec": SEED_SPEC})
    for key in re.findall(r"data\.(\w+)", script):
        assert key in data or key in ("error", "examples", "grammar", "initial", "digits"), key


def test_examples_come_from_the_library_and_all_parse():
    status, _, body = call("GET", "/api/examples")
    data = json.loads(body)
    assert status == 200 and data["initial"] == SEED_SPEC
    from convlens.demo import model_a, model_b

    specs = [example["spec"] for example in data["examples"]]
    assert format_spec(model_a()) in specs and format_spec(model_b()) in specs
    for spec in specs:
        status, answer = post_json({"spec": spec})
        assert status == 200 and answer["trace_error"] is None, (spec, answer)
    _, _, body = call("GET", "/api/examples", app=create_app("input 8x8x2 | conv2d 4 3"))
    assert json.loads(body)["initial"] == "input 8x8x2 | conv2d 4 3"


# ----- /api/explain ---------------------------------------------------------------------------


def test_explain_the_seed_returns_the_models_own_numbers():
    status, data = post_json({"spec": SEED_SPEC})
    assert status == 200
    model = seeded_model(SEED_SPEC)
    second = model.layers[1]
    layer = data["layers"][1]
    assert layer["params"] == second.count_params() == 18_496
    assert layer["output_shape"] == list(second.output_shape[1:]) == [24, 24, 64]
    assert f"{second.count_params():,}" in layer["html"]
    assert data["total_params"] == model.count_params()
    # The summary is the library's own summary text for this spec.
    chunks = []
    model.summary(print_fn=lambda text, *a, **k: chunks.append(text))
    assert data["summary"] == "".join(chunks)
    assert "conv2d_1 (Conv2D)" in data["summary"]  # names counted from a fresh session
    # The conv picture and the misconception, both computed from the layer.
    assert layer["svg"].lstrip().startswith("<svg") and "3 x 3 x 32" in layer["svg"]
    contrast = layer["contrast"]
    assert contrast["separate_output_shape"][1:] == [24, 24, 32 * 64]
    assert contrast["separate_kernel_weights"] == int(np.prod(second.kernel.shape))
    assert "DepthwiseConv2D" in layer["html"]


def test_trace_value_equals_the_forward_pass_for_the_same_seed():
    for seed, index in [(0, None), (3, [5, 7, 3])]:
        body = {"spec": SEED_SPEC, "seed": seed, "layer": 1}
        if index is not None:
            body["index"] = index
        status, data = post_json(body)
        assert status == 200 and data["trace_error"] is None
        trace = data["trace"]
        model = seeded_model(SEED_SPEC, seed)
        x = sample_input(model, seed=seed)
        forward = model.predict(x, verbose=0)[0]
        expected_index = tuple(index) if index else (12, 12, 0)
        assert tuple(trace["index"]) == expected_index
        assert trace["axis_names"] == ["row", "col", "channel"]
        assert abs(trace["value"] - float(forward[expected_index])) <= 1e-5
        assert trace["matches"] is True
        assert f"{trace['value']:.7g}" in trace["html"]


def test_layer_by_name_and_index_as_text_match_numbers():
    _, named = post_json({"spec": SEED_SPEC, "layer": "conv2d_1", "index": "5,7,3", "seed": "2"})
    _, posted = post_json({"spec": SEED_SPEC, "layer": 1, "index": [5, 7, 3], "seed": 2})
    assert named["trace"]["value"] == posted["trace"]["value"]


def test_the_api_leaves_the_process_random_state_alone():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    from convlens import utils

    with utils.session(seed=4):
        assert Conv2D(1, 1).name == "conv2d"
        generator = utils.rng()
        generator.random()
        post_json({"spec": SEED_SPEC, "seed": 9})
        assert np.random.random() == before
        # the library's own generator and layer-name counts go on as if no request had run
        assert utils.rng() is generator
        assert utils.rng().random() == np.random.default_rng(4).random(2)[1]
        assert Conv2D(1, 1).name == "conv2d_1"


def test_malformed_spec_is_a_400_naming_the_column():
    spec = "input 28x28x1 | conv2x 32 3"
    status, data = post_json({"spec": spec})
    assert status == 400
    error = data["error"]
    assert error["column"] == spec.index("conv2x") + 1
    assert error["token"] == "conv2x"
    assert f"column {error['column']}" in error["message"]
    assert "Traceback" not in json.dumps(data)


def test_other_bad_requests_are_400_json():
    cases = [
        {"spec": ""},
        {"spec": "conv2d 32 3"},  # no input shape
        {"spec": "input 2x2x1 | conv2d 4 5"},  # kernel larger than the input
        {"spec": SEED_SPEC, "seed": "x"},
        {"spec": "model.py"},
        {"spec": "../../etc/passwd"},
        {"spec": "x" * 5000},
        ["not", "an", "object"],
    ]
    for case in cases:
        status, data = post_json(case)
        assert status == 400, case
        assert data["error"]["message"], case
    status, _, body = call("POST", "/api/explain", b"{not json")
    assert status == 400 and "not JSON" in json.loads(body)["error"]["message"]


def test_a_bad_trace_keeps_the_explanation_and_names_the_valid_range():
    status, data = post_json({"spec": SEED_SPEC, "layer": 1, "index": [30, 0, 0]})
    assert status == 200 and data["trace"] is None
    assert "[0, 23]" in data["trace_error"]
    assert data["layers"][1]["params"] == 18_496


def test_py_paths_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran.txt"
    script = tmp_path / "model.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    status, data = post_json({"spec": str(script)})
    assert status == 400 and "never a file" in data["error"]["message"]
    assert not marker.exists()
    assert main(["serve", str(script)]) == 2
    assert not marker.exists()


# ----- refusals -------------------------------------------------------------------------------


def test_path_traversal_and_hidden_files_in_static_are_404():
    for path in ["/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/app.py",
                 "/static/../../../etc/passwd", "/static/.hidden", "/static/",
                 "/static/sub/app.js", "/static//etc/passwd", "/static/app.js/"]:
        status, headers, _ = call("GET", path)
        assert status == 404, path
        assert headers["content-type"].startswith("application/json")


def test_oversized_bodies_are_413():
    big = json.dumps({"spec": SEED_SPEC, "pad": "x" * MAX_BODY_BYTES}).encode()
    status, _, body = call("POST", "/api/summary", big)
    assert status == 413 and "larger" in json.loads(body)["error"]["message"]
    # Streamed without a Content-Length: counted as it arrives.
    chunks = [b"x" * 8192] * (MAX_BODY_BYTES // 8192 + 2)
    headers = [(b"host", b"localhost"), (b"content-type", b"application/json")]
    status, _, _ = call("POST", "/api/summary", chunks=chunks, headers=headers)
    assert status == 413
    # Calls that take pixels take more, up to their own cap.
    from convlens.web.routes import API_ROUTES

    cap = API_ROUTES["/api/feature-maps"][1]
    assert cap > MAX_BODY_BYTES
    status, _, _ = call("POST", "/api/feature-maps", b" " * (cap + 1))
    assert status == 413


def test_unknown_routes_are_404_and_writes_are_refused():
    for path in ["/nope", "/api", "/api/explain/x", "/index.htm"]:
        assert call("GET", path)[0] == 404, path
    assert call("PUT", "/api/explain", b"{}")[0] == 405
    assert call("GET", "/api/explain", query="spec=input+4x4x1")[0] == 405
    assert call("POST", "/", b"x")[0] == 405
    assert call("DELETE", "/static/app.js")[0] == 404


def test_lifespan_events_are_answered():
    app, sent = create_app(), []
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive():
        return events.pop(0)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# ----- the command ----------------------------------------------------------------------------


def test_serve_refuses_a_malformed_spec_in_one_line(capsys):
    assert main(["serve", "input 28x28x1 | conv2x 3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "column 17" in err and "Traceback" not in err


def test_serve_without_uvicorn_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'convlens[web]'" in err


def test_convlens_serve_answers_over_http(running_server):
    spec = "input 10x10x2 | conv2d 4 3 relu"
    with running_server(spec) as base:
        with urllib.request.urlopen(base + "/", timeout=5) as response:
            page = response.read().decode()
        assert 'src="/static/app.js"' in page
        with urllib.request.urlopen(base + "/api/examples", timeout=5) as response:
            assert json.loads(response.read())["initial"] == spec
        request = urllib.request.Request(
            base + "/api/explain", data=json.dumps({"spec": spec}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            data = json.loads(response.read())
        assert data["layers"][0]["params"] == 3 * 3 * 2 * 4 + 4
        assert data["trace"]["matches"] is True
        bad = urllib.request.Request(base + "/api/explain", data=b'{"spec": "input 4x4 | x"}',
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            urllib.request.urlopen(bad, timeout=5)
            raise AssertionError("a malformed spec should be refused")
        except urllib.error.HTTPError as error:
            assert error.code == 400 and json.loads(error.read())["error"]["column"] == 13


def test_every_static_file_is_packaged():
    # pyproject ships web/static/* (one level): the page must not need files in sub-folders.
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^convlens = \[.*"web/static/\*"', section, re.M)
    entries = list(STATIC_DIR.iterdir())
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in entries}
    assert all(p.is_file() for p in entries)


# ----- /api/summary, /api/feature-maps, /api/trace, /openapi.json ------------------------------


def post(path: str, data):
    status, headers, body = call("POST", path, json.dumps(data).encode())
    assert headers["content-type"].startswith("application/json")
    return status, json.loads(body)


def test_summary_is_the_libraries_summary_of_the_seeded_model():
    status, data = post("/api/summary", {"spec": SEED_SPEC, "seed": 4})
    model = seeded_model(SEED_SPEC, 4)
    chunks = []
    model.summary(print_fn=lambda text, *a, **k: chunks.append(text))
    assert status == 200 and data["summary"] == "".join(chunks)
    assert [layer["params"] for layer in data["layers"]] == [320, 18_496]
    assert data["layers"][1]["input_shape"] == [26, 26, 32]


def test_feature_maps_are_the_layer_outputs_for_a_shipped_digit():
    from convlens.datasets.digits import sample_digits

    spec = SEED_SPEC + " | maxpool 2 | flatten | dense 10 softmax"
    status, data = post("/api/feature-maps", {"spec": spec, "seed": 1, "input": {"digit": 4}})
    assert status == 200
    model = seeded_model(spec, 1)
    x = (sample_digits()[0][4] / 255.0).astype(np.float32).reshape(1, 28, 28, 1)
    np.testing.assert_allclose(data["input"]["values"], x[0], atol=1e-6)
    h = x
    for layer, entry in zip(model.layers, data["layers"]):
        h = layer.call(h)
        assert entry["shape"] == list(h.shape[1:]) and entry["name"] == layer.name
        np.testing.assert_allclose(entry["maps"], h[0], atol=1e-6)
        assert entry["low"] == pytest.approx(float(h.min())) and \
            entry["high"] == pytest.approx(float(h.max()))
    np.testing.assert_allclose(data["layers"][1]["kernel"], model.layers[1].kernel.value,
                               atol=1e-6)
    probabilities = model.predict(x, verbose=0)[0]
    assert data["prediction"]["class"] == int(np.argmax(probabilities))
    np.testing.assert_allclose(data["prediction"]["probabilities"], probabilities, atol=1e-6)


def test_inputs_as_pixels_or_a_seed_and_their_refusals():
    pixels = np.linspace(0, 1, 36, dtype=np.float32).reshape(6, 6)
    status, data = post("/api/feature-maps", {"spec": "input 6x6x1 | conv2d 2 3",
                                               "input": {"pixels": pixels.tolist()}})
    model = seeded_model("input 6x6x1 | conv2d 2 3")
    expected = model.predict(pixels.reshape(1, 6, 6, 1), verbose=0)[0]
    assert status == 200
    np.testing.assert_allclose(data["layers"][0]["maps"], expected, atol=1e-6)
    status, data = post("/api/feature-maps", {"spec": "input 6x6x1 | conv2d 2 3",
                                               "input": {"seed": 5}})
    expected = model.predict(sample_input(model, seed=5), verbose=0)[0]
    np.testing.assert_allclose(data["layers"][0]["maps"], expected, atol=1e-6)
    for bad in ({"digit": 50}, {"digit": 0, "seed": 1}, {"pixels": [[1, 2], [3]]},
                {"pixels": [[0.5] * 5] * 6}, {"pixels": "x"}, {"colour": 1}, [1], 3):
        status, data = post("/api/feature-maps", {"spec": "input 6x6x1 | conv2d 2 3",
                                                   "input": bad})
        assert status == 400 and data["error"]["field"] == "input", bad
    status, data = post("/api/feature-maps", {"spec": "input 8x8x3 | conv2d 2 3",
                                               "input": {"digit": 1}})
    assert status == 400 and "28x28x1" in data["error"]["message"]


def test_trace_gives_the_filters_per_channel_maps_summing_to_the_value():
    from convlens.explain import trace

    body = {"spec": SEED_SPEC, "seed": 2, "layer": 1, "index": [5, 7, 3], "input": {"digit": 9}}
    status, data = post("/api/trace", body)
    assert status == 200
    model = seeded_model(SEED_SPEC, 2)
    from convlens.datasets.digits import sample_digits

    x = (sample_digits()[0][9] / 255.0).astype(np.float32).reshape(1, 28, 28, 1)
    expected = trace(model, 1, (5, 7, 3), x)
    assert data["trace"]["value"] == pytest.approx(expected.value, abs=1e-7)
    np.testing.assert_allclose(data["terms"]["partial_sums"], expected.partial_sums, atol=1e-6)
    split = data["filter_maps"]
    assert split["filter"] == 3 and split["input_channels"] == list(range(32))
    np.testing.assert_allclose(split["channel_maps"][5][7], expected.partial_sums, atol=1e-5)
    assert split["pre_activation"][5][7] == pytest.approx(expected.pre_activation, abs=1e-5)
    assert split["positions"][0][5] == [5, 6, 7] and split["positions"][1][7] == [7, 8, 9]
    assert data["contrast"]["separate_output_shape"] == [None, 24, 24, 2048]
    status, data = post("/api/trace", {**body, "index": [30, 0, 0]})
    assert status == 400 and "[0, 23]" in data["error"]["message"]


def test_openapi_describes_every_api_route():
    from convlens.web.routes import API_ROUTES, TRAIN_PATH

    status, _, body = call("GET", "/openapi.json")
    schema = json.loads(body)
    assert status == 200 and schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {*API_ROUTES, TRAIN_PATH}
    for path, methods in schema["paths"].items():
        assert set(methods) == {"post"}, path
        body_schema = methods["post"]["requestBody"]["content"]["application/json"]["schema"]
        required = body_schema["required"]
        assert set(required) <= set(body_schema["properties"]) and required, path
        if required == ["spec"]:  # answered for a spec alone
            status, _, _ = call("POST", path, json.dumps({"spec": "input 4x4x1"}).encode())
            assert status == 200, path


def test_the_page_shows_no_python_attribute_names():
    _, data = post_json({"spec": SEED_SPEC, "layer": 1, "index": [5, 7, 3]})
    shown = data["trace"]["html"] + "".join(layer["html"] for layer in data["layers"])
    assert "more channel(s), not printed" in shown
    assert not re.search(r"\(see \.\w+", shown)
