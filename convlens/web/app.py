"""The local web page as a plain ASGI application (no framework): routes, static files, limits.

Routes:

- ``GET /``: ``static/index.html``;
- ``GET /static/NAME``: a file directly inside ``static/`` (no sub-folders, no dot files);
- ``GET /api/examples``: the example specs and the spec the page starts with;
- ``POST /api/explain`` (JSON body) and ``GET /api/explain?spec=...&layer=&index=&seed=``:
  :func:`convlens.web.api.explain_request`.

Everything is read-only: no route writes a file or runs code. A request body over
``MAX_BODY_BYTES`` gets 413, a malformed request a 400 JSON ``{"error": {...}}``, an unknown
route 404. Serve it with ``convlens serve`` (uvicorn), or any ASGI server::

    from convlens.web import create_app
    app = create_app(initial_spec="input 28x28x1 | conv2d 32 3 relu")
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs

from convlens.web.api import ApiError, examples, explain_request

__all__ = ["MAX_BODY_BYTES", "STATIC_DIR", "create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# Nothing outside this server: scripts, styles and requests all stay on 'self'; pictures are
# inline SVG (styled by attributes) and data: URIs.
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
     b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class _TooLarge(Exception):
    pass


async def _send(send, status: int, body: bytes, content_type: str, head: bool = False) -> None:
    headers = [(b"content-type", content_type.encode("ascii")),
               (b"content-length", str(len(body)).encode("ascii")), *_SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_json(send, status: int, data: dict, head: bool = False) -> None:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    await _send(send, status, body, "application/json; charset=utf-8", head)


async def _error(send, status: int, message: str, head: bool = False) -> None:
    await _send_json(send, status, {"error": {"message": message, "field": None}}, head)


async def _read_body(scope, receive) -> bytes:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                if int(value) > MAX_BODY_BYTES:
                    raise _TooLarge
            except ValueError:
                raise ApiError("the Content-Length header is not a number.") from None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _query(scope) -> dict:
    raw = scope.get("query_string", b"")
    if len(raw) > MAX_BODY_BYTES:
        raise _TooLarge
    try:
        pairs = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError("the query string is not UTF-8.") from None
    return {key: values[-1] for key, values in pairs.items()}


def _static_file(name: str) -> Path | None:
    """The file ``static/name`` if ``name`` is a plain file name there; otherwise ``None``."""
    if not _STATIC_NAME.match(name):
        return None
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or not path.is_file():
        return None
    return path


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(initial_spec: str | None = None):
    """The ASGI application; ``initial_spec`` is the spec the page opens with (default: the
    seed question's model)."""

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: not served
        method, path = scope["method"], scope["path"]
        head = method == "HEAD"
        try:
            if path == "/api/explain":
                if method == "POST":
                    body = await _read_body(scope, receive)
                    try:
                        data = json.loads(body.decode("utf-8")) if body.strip() else {}
                    except (UnicodeDecodeError, json.JSONDecodeError) as error:
                        raise ApiError(f"the request body is not JSON: {error}.") from None
                elif method in ("GET", "HEAD"):
                    data = _query(scope)
                else:
                    await _error(send, 405, f"{method} is not allowed here; use GET or POST.")
                    return
                await _send_json(send, 200, explain_request(data), head)
                return
            if method not in ("GET", "HEAD"):
                await _error(send, 405 if path in ("/", "/api/examples") else 404,
                             f"{method} {path}: this page is read-only.")
                return
            if path == "/api/examples":
                data = examples()
                if initial_spec is not None:
                    data["initial"] = initial_spec
                await _send_json(send, 200, data, head)
                return
            name = "index.html" if path in ("/", "/index.html") else None
            if name is None and path.startswith("/static/"):
                name = path[len("/static/"):]
            file = _static_file(name) if name is not None else None
            if file is None:
                await _error(send, 404, f"not found: {path}", head)
                return
            await _send(send, 200, file.read_bytes(),
                        _CONTENT_TYPES.get(file.suffix, "application/octet-stream"), head)
        except _TooLarge:
            await _error(send, 413, f"the request is larger than {MAX_BODY_BYTES:,} bytes.")
        except ApiError as error:
            await _send_json(send, error.status, error.payload(), head)

    return app


app = create_app()
