"""The local web page: ``convlens serve`` (needs uvicorn: ``pip install convlens[web]``).

``create_app(initial_spec)`` is a plain ASGI application (``convlens.web.app``);
``explain_request(data)`` answers ``/api/explain`` as a dict (``convlens.web.api``).
The page (``static/``) has no build step and loads nothing from outside this server.
"""

from convlens.web.api import ApiError, examples, explain_request
from convlens.web.app import MAX_BODY_BYTES, STATIC_DIR, create_app

__all__ = ["ApiError", "MAX_BODY_BYTES", "STATIC_DIR", "create_app", "examples",
           "explain_request", "require_uvicorn", "serve"]


def require_uvicorn():
    """The uvicorn module, or an ImportError that says in one line how to install it."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("convlens serve needs uvicorn: pip install 'convlens[web]'") from None
    return uvicorn


def serve(host: str = "127.0.0.1", port: int = 8000, initial_spec: str | None = None) -> None:
    """Run the page with uvicorn until interrupted."""
    require_uvicorn().run(create_app(initial_spec), host=host, port=port, log_level="warning",
                lifespan="on")
