"""The local web page: ``convlens serve`` (needs uvicorn: ``pip install convlens[web]``).

``create_app(initial_spec)`` is a plain ASGI application (``convlens.web.app``);
``explain_request(data)`` answers ``/api/explain`` as a dict (``convlens.web.api``).
The page (``static/``) has no build step and loads nothing from outside this server.
"""

from convlens.web.api import ApiError, examples, explain_request
from convlens.web.app import LOOPBACK_HOSTS, MAX_BODY_BYTES, STATIC_DIR, create_app

__all__ = ["ApiError", "LOOPBACK_HOSTS", "MAX_BODY_BYTES", "STATIC_DIR", "allowed_hosts",
           "create_app", "examples", "explain_request", "require_uvicorn", "serve"]


def require_uvicorn():
    """The uvicorn module, or an ImportError that says in one line how to install it."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("convlens serve needs uvicorn: pip install 'convlens[web]'") from None
    return uvicorn


def allowed_hosts(host: str, extra=()) -> tuple[str, ...]:
    """The ``Host`` names the server answers when it listens on ``host``: the loopback names,
    ``host`` itself unless it is a wildcard (``0.0.0.0``, ``::``), and ``extra``."""
    own = () if host.strip("[]") in ("0.0.0.0", "::", "") else (host,)
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, *own, *extra)))


def serve(host: str = "127.0.0.1", port: int = 8000, initial_spec: str | None = None,
          extra_hosts=()) -> None:
    """Run the page with uvicorn until interrupted; ``extra_hosts`` are more names requests
    may give in ``Host`` (the name others use to reach a server on ``0.0.0.0``)."""
    app = create_app(initial_spec, allowed_hosts=allowed_hosts(host, extra_hosts))
    require_uvicorn().run(app, host=host, port=port, log_level="warning", lifespan="on",
                          limit_concurrency=64, timeout_keep_alive=5)
