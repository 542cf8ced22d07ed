"""The web server against hostile requests, over real HTTP on a loopback port: who may call
it (Host, Origin, method, Content-Type), what it takes (size, depth, integer length), that
slow model work never stalls the page, and that nothing a client sends gets a 500."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SEED_SPEC = "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu"
HELPER = Path(__file__).resolve().parent / "web_server.py"


@contextlib.contextmanager
def server(**config):
    """tests/web_server.py on a free loopback port; yields (port, result) where result gets
    the server's ``maxrss_kb`` once it stopped."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(HELPER.parents[1])}
    process = subprocess.Popen([sys.executable, str(HELPER), str(port), json.dumps(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    result = {}
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None, process.communicate()[1].decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        yield port, result
    finally:
        process.terminate()
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        for line in out.decode().splitlines():
            if line.startswith("maxrss_kb="):
                result["maxrss_kb"] = int(line.split("=", 1)[1])
        result["stderr"] = err.decode()


def request(port, method, path, body=b"", headers=None, host=None):
    """(status, decoded JSON or None, headers) of one raw HTTP request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        for name, value in all_headers.items():
            if value is not None:
                connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("content-type", "")
        data = json.loads(raw) if kind.startswith("application/json") else None
        return response.status, data, dict(response.getheaders())
    finally:
        connection.close()


def explain(port, payload, **kwargs):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(port, "POST", "/api/explain", body, **kwargs)


@pytest.fixture(scope="module")
def port():
    with server() as (port, _):
        yield port


def test_only_this_servers_host_names_are_answered(port):
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        status, _, _ = request(port, "GET", "/", host=host)
        assert status == 200, host
        status, data, _ = explain(port, {"spec": "input 4x4x1 | conv2d 1 3"}, host=host)
        assert status == 200 and data["layers"][0]["params"] == 10, host
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: refused on every route.
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io", ""):
        for method, path in (("GET", "/"), ("GET", "/api/examples"), ("POST", "/api/explain")):
            status, data, _ = request(port, method, path, b'{"spec": "input 4x4x1"}', host=host)
            assert status in (400, 403), (host, path, status)
            assert data["error"]["message"], (host, path)


def test_a_foreign_origin_is_403_and_the_own_origin_is_answered(port):
    body = {"spec": "input 4x4x1 | conv2d 1 3"}
    for origin in ("http://attacker.example", "null", f"http://localhost:{port + 1}",
                   f"http://127.0.0.1:{port}.attacker.example"):
        status, data, _ = explain(port, body, headers={"Origin": origin})
        assert status == 403 and "Origin" in data["error"]["message"], origin
    status, _, _ = explain(port, body, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200
    status, _, _ = explain(port, body, headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403


def test_api_calls_must_be_json_posts(port):
    status, data, headers = request(port, "GET", "/api/explain?spec=input+784+%7C+dense+6")
    assert status == 405 and "POST" in data["error"]["message"] and headers["allow"] == "POST"
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 None):
        status, data, _ = explain(port, {"spec": SEED_SPEC}, headers={"Content-Type": kind})
        assert status == 415 and "application/json" in data["error"]["message"], kind
    status, _, _ = explain(port, {"spec": "input 4x4x1"},
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200


# What a client can send, and the status it must get: never a 500.
MALFORMED = [
    (b'{"spec": "' + SEED_SPEC.encode() + b'", "seed": "\xc2\xb2"}', 400),  # a digit Python
    (b'{"spec": "input 4x4x1", "seed": ' + b"7" * 5000 + b"}", 400),  # int() refuses
    (b"[" * 20000 + b"]" * 20000, 400),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400),
    (b'{"spec": "input 4x4x1", "x": ' + b"[" * 17 + b"]" * 17 + b"}", 400),
    (b'{"spec": "input 4x4x1 | conv2d ' + b"9" * 400 + b' 3"}', 400),
    (b'{"spec": "input 4x4x1", "seed": NaN}', 400),
    (b'{"spec": "input 4x4x1", "seed": 1e400}', 400),
    (b"\xff\xfe{}", 400),
    (b'{"spec": "input 4x4x1", "layer": {"a": [1]}, "index": {"x": 1}}', 200),
    (b'{"spec": "input 4x4x1 | conv2d 1 3", "index": [1e300, -1e300]}', 200),
    (b'{"spec": 12}', 400),
    (b"null", 400),
    (b'"text"', 400),
    (b"", 400),
    (b'{"spec": "input 4x4x1", "seed": -1}', 400),
    (b'{"spec": "input 4x4x1", "seed": 4294967296}', 400),
    (b'{"spec": "' + b"x" * 70_000 + b'"}', 400),  # a spec of at most 2,000 characters
    (b'{"spec": "input 4x4x1", "pad": "' + b"x" * 5 * 2**20 + b'"}', 413),
    (b"[]" * 200_000, 400),
]


def test_malformed_requests_get_a_4xx_json_error_never_a_500(port):
    for body, expected in MALFORMED:
        status, data, _ = explain(port, body)
        assert status == expected, (body[:60], status, data)
        if status != 200:
            assert data["error"]["message"], body[:60]
    status, data, _ = request(port, "GET", "/static/" + "a" * 5000)
    assert status == 404 and data["error"]["message"]
    status, data, _ = request(port, "GET", "/favicon.ico")
    assert status == 200
    status, data, _ = explain(port, {"spec": SEED_SPEC}, headers={"Content-Length": None})
    assert status in (200, 400)


def test_slow_model_work_never_stalls_the_page_and_the_pool_is_bounded(tmp_path):
    flag = tmp_path / "release"
    with server(workers=1, waiting=0, time_limit=0.5, slow_until=str(flag)) as (port, _):
        # The one worker is held: the request gives up at the time limit with 504, while the
        # page and the examples are still answered.
        status, data, _ = request(port, "POST", "/api/slow", b"{}")
        assert status == 504 and "longer than" in data["error"]["message"]
        assert request(port, "GET", "/")[0] == 200
        assert request(port, "GET", "/api/examples")[0] == 200
        # Its work has not ended, so it still holds the one slot: the pool takes no more.
        status, data, headers = request(port, "POST", "/api/slow", b"{}")
        assert status == 503 and "busy" in data["error"]["message"]
        assert headers["retry-after"] == "5"
        flag.write_text("go")
        deadline = time.monotonic() + 20
        while request(port, "POST", "/api/slow", b"{}")[0] != 200:
            assert time.monotonic() < deadline, "the pool did not free its slots"
            time.sleep(0.05)


def test_concurrent_requests_each_get_their_own_session(port):
    # No activation on the traced layer: every seed gives a different value. Six requests at
    # once: the two workers and four waiting places.
    body = {"spec": "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3", "layer": 1,
            "index": [5, 7, 3]}
    alone = {seed: explain(port, {**body, "seed": seed})[1]["trace"]["value"] for seed in range(3)}
    together = {}

    def ask(seed):
        together[seed] = explain(port, {**body, "seed": seed})[1]["trace"]["value"]

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(3) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone and len(set(alone.values())) == 3


def test_the_hosts_a_server_answers_follow_its_address():
    from convlens.web import allowed_hosts

    assert allowed_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert allowed_hosts("0.0.0.0", ["box.lan"]) == ("localhost", "127.0.0.1", "::1", "box.lan")
    assert allowed_hosts("192.168.1.5") == ("localhost", "127.0.0.1", "::1", "192.168.1.5")


# Models far over the web budget (each used to take the server to several GB, or to a 500),
# and models just under it.
HOSTILE_SPECS = [
    "input 784 | dense 600000",
    "input 12000x12000x3 | flatten",
    "input 100000x100000x3 | flatten",
    "input 100000x100000x3 | conv2d 2 3",
    "input 28x28x1 | conv2d 99999999 3",
    "input 28x28x1 | conv2d " + "9" * 400 + " 3",
    "input 64x64x64 | depthwise 3 multiplier=64",
    "input 2000 | dense 2000 | dense 2000",
    "input 28x28x1" + " | dense 4" * 150,
    "input 400x400x3 | conv2d 1 3",
    "input 2000 | dense 2400 | dense 32",
]


def test_peak_server_memory_stays_under_1_gb_whatever_is_sent():
    with server() as (port, result):
        statuses = set()
        for spec in HOSTILE_SPECS:
            for path in ("/api/explain", "/api/trace", "/api/feature-maps", "/api/summary"):
                status, data, _ = request(port, "POST", path, json.dumps({"spec": spec}).encode())
                assert status in (200, 400), (spec[:40], path, status, data)
                statuses.add(status)
                if status == 400:
                    assert "budget" in data["error"]["message"] or "too large" in \
                        data["error"]["message"], data
        status, _, _ = request(port, "POST", "/api/feature-maps", json.dumps(
            {"spec": "input 300x300x1 | conv2d 1 33"}).encode())
        assert status == 200 and statuses == {200, 400}
    assert result["maxrss_kb"] < 1024 * 1024, result
