"""A convlens web server for the HTTP tests, run as ``python tests/web_server.py PORT CONFIG``.

CONFIG is JSON: ``workers``, ``waiting``, ``time_limit`` and ``slow_until`` (a file path:
adds the route ``/api/slow``, which holds its worker until that file exists, at most 20 s). After
uvicorn stops (SIGTERM), the script prints ``maxrss_kb=N``: the server's peak resident memory,
from ``resource``.

Linux gives a new process the peak of the process it was forked from, and keeps it across
exec: a server started by a test process holding gigabytes (torch, Keras) would report
those. So this script starts the server as its own child and reads the child's peak
(``RUSAGE_CHILDREN``), the child being forked from this small process.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time

_CHILD = "_CONVLENS_TEST_SERVER_CHILD"


def _slow(flag: str):
    def answer(data, state):
        deadline = time.monotonic() + 20
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"slow": True}

    return answer


def launch() -> None:
    child = subprocess.Popen([sys.executable, __file__, *sys.argv[1:]],
                             env={**os.environ, _CHILD: "1"})
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    child.wait()
    print(f"maxrss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", flush=True)


def main() -> None:
    import uvicorn

    from convlens.web import create_app
    from convlens.web.routes import API_ROUTES

    port, config = int(sys.argv[1]), json.loads(sys.argv[2])
    routes = dict(API_ROUTES)
    if config.get("slow_until"):
        routes["/api/slow"] = (_slow(config["slow_until"]), 1024)
    app = create_app(workers=config.get("workers", 2), waiting=config.get("waiting", 4),
                     time_limit=config.get("time_limit", 30), routes=routes)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    # uvicorn re-raises a captured SIGTERM after shutting down, which would end the process
    # before the report below: stop the server on SIGTERM here instead.
    server.capture_signals = contextlib.nullcontext
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()
    os._exit(0)  # a held worker thread must not keep the process alive


if __name__ == "__main__":
    if os.environ.get(_CHILD) == "1":
        main()
    else:
        launch()
