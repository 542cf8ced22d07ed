"""The local web page as a plain ASGI application (no framework): routes, static files, limits.

Routes:

- ``GET /``: ``static/index.html``; ``GET /static/NAME``: a file directly inside ``static/``
  (no sub-folders, no dot files); ``GET /favicon.ico``: the page's icon;
- ``GET /api/examples``: the example specs, the spec the page starts with, the shipped digits;
- ``GET /openapi.json``: the OpenAPI description of the API;
- ``POST /api/<name>`` with a JSON body: the model questions of ``convlens.web.routes``
  (``summary``, ``explain``, ``trace``, ``feature-maps``), answered in a worker thread.

Who may ask. Every request must name this server in its ``Host`` header: by default a
loopback name or address (``localhost``, ``127.0.0.1``, ``::1``) or the address it listens
on; anything else is 403, which stops DNS-rebinding pages. An API call must be a ``POST``
with ``Content-Type: application/json`` (405/415 otherwise), so a plain cross-site form or
link cannot send one, and an ``Origin`` header other than this server's own is 403.

What they may send. A body of at most ``MAX_BODY_BYTES`` (413), JSON nested at most
``MAX_JSON_DEPTH`` deep with integers of at most ``MAX_INT_DIGITS`` digits (400). Model work
runs off the event loop in a pool of ``workers`` threads; at most ``waiting`` more requests
wait for one (503 past that), and each is answered within ``time_limit`` seconds (504 past
that; the page stays served meanwhile; work that already started keeps its thread until it
ends, so a burst of slow requests meets 503, never an unbounded queue). Every refusal is a JSON
``{"error": {"message": ...}}`` with a 4xx status. Nothing a request sends writes a file or
runs code. Serve it with ``convlens serve`` (uvicorn), or any ASGI server::

    from convlens.web import create_app
    app = create_app(initial_spec="input 28x28x1 | conv2d 32 3 relu")
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from convlens.web.api import ApiError, examples
from convlens.web.files import Download
from convlens.web.jobs import ServerState
from convlens.web.routes import API_ROUTES, TRAIN_PATH, openapi

__all__ = ["LOOPBACK_HOSTS", "MAX_BODY_BYTES", "MAX_INT_DIGITS", "MAX_JSON_DEPTH",
           "STATIC_DIR", "create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
MAX_INT_DIGITS = 12
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
# Nothing outside this server: scripts, styles and requests all stay on 'self'; pictures are
# inline SVG (styled by attributes), canvases and data: URIs.
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
     b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
# Strings (escapes included) hold no structure; what is left counts the nesting.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


class _Refused(Exception):
    """A request refused before any model work: its status and message."""

    def __init__(self, status: int, message: str, headers=()):
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


async def _send(send, status: int, body: bytes, content_type: str, head: bool = False,
                headers=()) -> None:
    all_headers = [(b"content-type", content_type.encode("ascii")),
                   (b"content-length", str(len(body)).encode("ascii")), *headers,
                   *_SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_json(send, status: int, data: dict, head: bool = False, headers=()) -> None:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    await _send(send, status, body, "application/json; charset=utf-8", head, headers)


async def _error(send, status: int, message: str, head: bool = False, headers=()) -> None:
    await _send_json(send, status, {"error": {"message": message, "field": None}}, head,
                     headers)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_body(scope, receive, limit: int) -> bytes:
    length = _header(scope, b"content-length")
    if length is not None:
        if not length.strip().isascii() or not length.strip().isdigit():
            raise _Refused(400, f"the Content-Length header is not a number: {length[:40]!r}.")
        if int(length) > limit:
            raise _Refused(413, f"the request is larger than {limit:,} bytes.")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"the request is larger than {limit:,} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


_BRACKETS = re.compile(rb"[\[\]{}]")


def _too_deep(body: bytes) -> bool:
    """Whether the JSON ``body`` nests deeper than ``MAX_JSON_DEPTH`` (strings ignored)."""
    depth = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits:,} digits; the API takes at most "
                         f"{MAX_INT_DIGITS}")
    return int(text)


def _parse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def decode_json(body: bytes):
    """The JSON ``body`` as Python data, or ``_Refused`` (400) saying what is wrong with it."""
    if _too_deep(body):
        raise _Refused(400, f"the JSON body is nested more than {MAX_JSON_DEPTH} deep; the "
                            "API takes at most that.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "the request body is not UTF-8 text.") from None
    if not text.strip():
        return {}
    try:
        return json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)
    except (json.JSONDecodeError, ValueError) as error:
        raise _Refused(400, f"the request body is not JSON the API takes: {error}.") from None


def _host_name(host: str) -> tuple[str, str | None]:
    """``(name, port)`` of a Host header value: ``localhost:8000``, ``[::1]:8000``, ..."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    name, colon, port = host.partition(":")
    return name, port if colon else None


def _check_caller(scope, allowed_hosts: frozenset, api: bool) -> None:
    host = _header(scope, b"host")
    if host is None:
        raise _Refused(400, "the request has no Host header.")
    name, _ = _host_name(host)
    if name not in allowed_hosts:
        raise _Refused(403, f"this server answers requests for {', '.join(sorted(allowed_hosts))}"
                            f", not for the host {host[:80]!r} (convlens serve --allow-host "
                            "NAME adds one).")
    origin = _header(scope, b"origin")
    if origin is not None and origin.strip().lower() not in (f"http://{host.strip().lower()}",
                                                             f"https://{host.strip().lower()}"):
        raise _Refused(403, f"cross-origin requests are refused: the Origin {origin[:80]!r} "
                            "is not this page.")
    if api and (_header(scope, b"sec-fetch-site") or "same-origin") not in (
            "same-origin", "none"):
        raise _Refused(403, "cross-site requests are refused.")


def _check_api_request(scope, method: str) -> None:
    if method != "POST":
        raise _Refused(405, f"{method} is not allowed here; send a POST with a JSON body.",
                       headers=[(b"allow", b"POST")])
    content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise _Refused(415, "an API call must have Content-Type: application/json; received "
                            f"{content_type[:80] or 'none'!r}.")


def _static_file(name: str) -> Path | None:
    """The file ``static/name`` if ``name`` is a plain file name there; otherwise ``None``."""
    if not _STATIC_NAME.match(name):
        return None
    path = (STATIC_DIR / name).resolve()
    try:
        if path.parent != STATIC_DIR or not path.is_file():
            return None
    except OSError:
        return None
    return path


async def _lifespan(receive, send, pool: ThreadPoolExecutor) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            pool.shutdown(wait=False, cancel_futures=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


class _Pool:
    """A bounded thread pool: at most ``workers + waiting`` calls queued or running."""

    def __init__(self, workers: int, waiting: int, time_limit: float):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convlens")
        self.capacity = workers + waiting
        self.time_limit = time_limit
        self.busy = 0
        self.lock = threading.Lock()

    def _release(self, _future) -> None:
        with self.lock:
            self.busy -= 1

    async def run(self, function, *args):
        with self.lock:
            if self.busy >= self.capacity:
                raise _Refused(503, "the server is busy with other requests; try again in a "
                                    "moment.", headers=[(b"retry-after", b"5")])
            self.busy += 1
        future = self.executor.submit(function, *args)
        future.add_done_callback(self._release)  # a timed-out call still holds its slot
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.time_limit)
        except asyncio.TimeoutError:
            raise _Refused(504, f"the request took longer than {self.time_limit:g} s; make "
                                "the model or the input smaller.") from None


def _model_work(function, body: bytes, state):
    """``function(decode_json(body), state)`` (in a worker: decoding a large body takes a
    moment), with what a client can provoke turned into an ``ApiError``."""
    data = decode_json(body)
    try:
        return function(data, state)
    except ApiError:
        raise
    except MemoryError:
        raise ApiError("the request needs more memory than this server has; make the model "
                       "or the input smaller.", status=413) from None
    except (OverflowError, RecursionError) as error:
        raise ApiError(f"a number or structure in the request is too large: "
                       f"{type(error).__name__}: {error}.") from None


async def _stream_training(send, trainer, job) -> None:
    """Run ``job`` in its own thread and send its progress as Server-Sent Events."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def emit(kind: str, data: dict) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, data))

    threading.Thread(target=trainer.run, args=(job, emit), name="convlens-train",
                     daemon=True).start()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"), *_SECURITY_HEADERS]})
    while True:
        kind, data = await events.get()
        text = f"event: {kind}\ndata: {json.dumps(data, allow_nan=False)}\n\n"
        await send({"type": "http.response.body", "body": text.encode("utf-8"),
                    "more_body": kind not in ("done", "error")})
        if kind in ("done", "error"):
            return


def create_app(initial_spec: str | None = None, allowed_hosts=None, workers: int = 2,
               waiting: int = 4, time_limit: float = 30.0, routes=None):
    """The ASGI application.

    ``initial_spec`` is the spec the page opens with (default: the seed question's model);
    ``allowed_hosts`` the host names or addresses requests may name in ``Host`` (default
    ``LOOPBACK_HOSTS``); ``workers`` the threads doing model work and ``waiting`` how many more
    requests may queue for them; ``time_limit`` the seconds
    a model request may take before it is answered with 504; ``routes`` maps a path to
    ``(function, max_body_bytes)`` (default ``API_ROUTES``).
    """
    hosts = frozenset(h.strip().lower().strip("[]")
                      for h in (LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts))
    pool = _Pool(workers, waiting, time_limit)
    api_routes = API_ROUTES if routes is None else routes
    state = ServerState()

    async def route(scope, receive, send, method: str, path: str, head: bool) -> None:
        if path in api_routes:
            _check_caller(scope, hosts, api=True)
            _check_api_request(scope, method)
            function, limit = api_routes[path]
            body = await _read_body(scope, receive, limit)
            answer = await pool.run(_model_work, function, body, state)
            if isinstance(answer, Download):
                await _send(send, 200, answer.data, "application/octet-stream", headers=[(
                    b"content-disposition",
                    f'attachment; filename="{answer.filename}"'.encode("ascii"))])
            else:
                await _send_json(send, 200, answer)
            return
        if path == TRAIN_PATH:
            _check_caller(scope, hosts, api=True)
            _check_api_request(scope, method)
            body = await _read_body(scope, receive, MAX_BODY_BYTES)
            job = await pool.run(_model_work, lambda d, s: s.trainer.prepare(d), body, state)
            await _stream_training(send, state.trainer, job)
            return
        _check_caller(scope, hosts, api=False)
        if method not in ("GET", "HEAD"):
            raise _Refused(405 if path in ("/", "/api/examples") else 404,
                           f"{method} {path[:200]}: only GET here.",
                           headers=[(b"allow", b"GET, HEAD")])
        if path == "/openapi.json":
            await _send_json(send, 200, openapi(), head)
            return
        if path == "/api/examples":
            data = examples()
            if initial_spec is not None:
                data["initial"] = initial_spec
            await _send_json(send, 200, data, head)
            return
        name = {"/": "index.html", "/index.html": "index.html",
                "/favicon.ico": "favicon.svg"}.get(path)
        if name is None and path.startswith("/static/"):
            name = path[len("/static/"):]
        file = _static_file(name) if name is not None else None
        if file is None:
            raise _Refused(404, f"not found: {path[:200]}")
        await _send(send, 200, file.read_bytes(),
                    _CONTENT_TYPES.get(file.suffix, "application/octet-stream"), head)

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, pool.executor)
            return
        if scope["type"] != "http":
            return  # websockets: not served
        method, path = scope["method"], scope["path"]
        head = method == "HEAD"
        try:
            await route(scope, receive, send, method, path, head)
        except _Refused as refusal:
            await _error(send, refusal.status, str(refusal), head, refusal.headers)
        except ApiError as error:
            await _send_json(send, error.status, error.payload(), head)
        except Exception as error:
            # A bug, not the client's doing: its traceback goes to the server's log, and the
            # page still gets JSON it can show.
            traceback.print_exc()
            await _error(send, 500, f"internal error ({type(error).__name__}); the server's "
                                    "log has the details.", head)

    return app


app = create_app()
