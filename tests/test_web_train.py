"""Training, upload and download through a real server: progress streamed as Server-Sent
Events, one job at a time, cancel, the trained or uploaded model used by the session's
other calls and downloadable as a .keras file real convlens reads back."""

from __future__ import annotations

import base64
import http.client
import json
import threading

import numpy as np
import pytest

from convlens.models import load_model
from convlens.web.jobs import ModelStore
from tests.test_web import seeded_model
from tests.test_web_security import request, server

SMALL = "input 28x28x1 | conv2d 8 3 relu | maxpool 2 | flatten | dense 10 softmax"
SESSION = "page-session-1"


def stream(port, body):
    """(status, [(event, data), ...]) of one /api/train call, read to its end."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        payload = json.dumps(body).encode()
        connection.request("POST", "/api/train", payload, headers={
            "Host": f"127.0.0.1:{port}", "Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return response.status, json.loads(response.read())
        assert response.getheader("content-type").startswith("text/event-stream")
        events = []
        for block in response.read().decode().split("\n\n"):
            if block.strip():
                lines = dict(line.split(": ", 1) for line in block.split("\n"))
                events.append((lines["event"], json.loads(lines["data"])))
        return 200, events
    finally:
        connection.close()


def post(port, path, body):
    return request(port, "POST", path, json.dumps(body).encode())


@pytest.fixture(scope="module")
def port():
    with server() as (port, _):
        yield port


def test_training_streams_progress_and_the_session_then_uses_the_trained_model(port):
    body = {"spec": SMALL, "seed": 1, "session": SESSION, "epochs": 2, "samples": 640,
            "batch_size": 32}
    status, events = stream(port, body)
    assert status == 200, events
    kinds = [kind for kind, _ in events]
    # 640 images, 10% kept for validation: 576 to train on, 18 batches of 32 per epoch.
    assert kinds == ["batch"] * 18 + ["epoch"] + ["batch"] * 18 + ["epoch", "done"]
    batches = [data for kind, data in events if kind == "batch"]
    epochs = [data for kind, data in events if kind == "epoch"]
    assert all(set(b) >= {"loss", "accuracy"} for b in batches)
    assert epochs[-1]["accuracy"] > batches[0]["accuracy"] and epochs[-1]["accuracy"] > 0.5
    assert batches[-1]["loss"] < batches[0]["loss"]
    assert epochs[1]["epoch"] == 2 and "val_accuracy" in epochs[1]
    assert events[-1][1] == {"cancelled": False, "epochs": 2}
    # The session's calls use the trained model; a call without the session the seeded one.
    digit = {"digit": 2}
    _, trained, _ = post(port, "/api/feature-maps", {**body, "input": digit})
    _, fresh, _ = post(port, "/api/feature-maps", {"spec": SMALL, "seed": 1, "input": digit})
    assert trained["layers"][0]["maps"] != fresh["layers"][0]["maps"]
    # ... and that model downloads as a .keras file that predicts the same numbers.
    status, _, headers = request(port, "POST", "/api/model/download", json.dumps(body).encode())
    assert status == 200
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/api/model/download", json.dumps(body).encode(), headers={
        "Host": "localhost", "Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    assert response.getheader("content-type") == "application/octet-stream"
    assert "convlens-model.keras" in response.getheader("content-disposition")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trained.keras"
        path.write_bytes(data)
        model = load_model(str(path), compile=False)
    from convlens.datasets.digits import sample_digits

    x = (sample_digits()[0][2] / 255.0).astype(np.float32).reshape(1, 28, 28, 1)
    np.testing.assert_allclose(trained["prediction"]["probabilities"],
                               model.predict(x, verbose=0)[0], atol=1e-6)


def test_one_job_at_a_time_and_cancel(port):
    body = {"spec": SMALL, "session": "page-session-2", "epochs": 20, "samples": 5000}
    first = {}

    def run():
        first["answer"] = stream(port, body)

    def start():
        started = threading.Thread(target=run)
        started.start()
        return started

    thread = start()
    try:
        # Wait until the job runs: a cancel for another session changes nothing meanwhile.
        for _ in range(2000):
            status, data, _ = post(port, "/api/train/cancel", {"session": "someone-else"})
            assert status == 200 and data == {"cancelled": False}
            # a probe small enough that, if it runs because the first has not started yet,
            # it ends at once (a probe with the first job's size trained for minutes)
            status, data = stream(port, {**body, "session": "page-session-3", "epochs": 1,
                                         "samples": 100})
            if status == 409:
                break
            assert status == 200  # the first had not started yet: this one ran instead
            thread.join(timeout=0.05)
            if not thread.is_alive() and first["answer"][0] == 409:
                thread = start()  # the first came while a probe ran: it got the 409; again
        assert status == 409 and "already running" in data["error"]["message"]
        status, data, _ = post(port, "/api/train/cancel", {"session": "page-session-2"})
        assert status == 200 and data == {"cancelled": True}
    finally:
        thread.join(timeout=300)
    status, events = first["answer"]
    assert status == 200 and events[-1] == ("done", {"cancelled": True,
                                                     "epochs": events[-1][1]["epochs"]})
    assert events[-1][1]["epochs"] < 20


def test_training_refuses_a_model_that_is_not_an_mnist_classifier(port):
    for body, field in [
        ({"spec": "input 28x28x1 | conv2d 4 3", "session": SESSION}, "spec"),
        ({"spec": SMALL, "session": SESSION, "epochs": 0}, "epochs"),
        ({"spec": SMALL, "session": SESSION, "samples": 10**6}, "samples"),
        ({"spec": SMALL, "session": "bad token!"}, "session"),
        ({"spec": SMALL}, "session"),
        # 117,002 activation values a sample: 512 samples at once are more than the page allows
        ({"spec": "input 28x28x1 | conv2d 64 3 relu | conv2d 64 3 relu | flatten | "
                  "dense 10 softmax", "session": SESSION, "batch_size": 512}, "batch_size"),
    ]:
        status, data = stream(port, body)
        assert status == 400 and data["error"]["field"] == field, (body, data)


def upload(port, session, filename, raw, spec=SMALL):
    return post(port, "/api/model", {"spec": spec, "session": session, "filename": filename,
                                     "data": base64.b64encode(raw).decode()})


def test_upload_a_keras_model_or_weights_and_explore_it(port, tmp_path):
    mine = seeded_model("input 28x28x1 | conv2d 6 5 relu | flatten | dense 10 softmax", 7)
    mine.save(str(tmp_path / "mine.keras"))
    status, data, _ = upload(port, "upload-session", "mine.keras",
                             (tmp_path / "mine.keras").read_bytes())
    assert status == 200, data
    assert data["spec"] == "input 28x28x1 | conv2d 6 5 relu | flatten | dense 10 softmax"
    _, maps, _ = post(port, "/api/feature-maps", {"spec": data["spec"], "session":
                                                  "upload-session", "input": {"digit": 5}})
    from convlens.datasets.digits import sample_digits

    x = (sample_digits()[0][5] / 255.0).astype(np.float32).reshape(1, 28, 28, 1)
    np.testing.assert_allclose(maps["prediction"]["probabilities"],
                               mine.predict(x, verbose=0)[0], atol=1e-6)
    # Weights for the spec: loaded into it.
    donor = seeded_model(SMALL, 11)
    donor.save_weights(str(tmp_path / "w.weights.h5"))
    status, data, _ = upload(port, "weights-session", "w.weights.h5",
                             (tmp_path / "w.weights.h5").read_bytes())
    assert status == 200 and data["spec"] == SMALL
    _, maps, _ = post(port, "/api/feature-maps", {"spec": SMALL, "session": "weights-session",
                                                  "input": {"digit": 5}})
    np.testing.assert_allclose(maps["prediction"]["probabilities"],
                               donor.predict(x, verbose=0)[0], atol=1e-6)
    # A small file whose config asks for 470M weights: refused before the loader builds it.
    import json
    import zipfile

    with zipfile.ZipFile(tmp_path / "mine.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][-1]["config"]["units"] = 600_000
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "huge.keras", "w") as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    status, data, _ = upload(port, "upload-session", "huge.keras",
                             (tmp_path / "huge.keras").read_bytes())
    assert status == 400 and "budget" in data["error"]["message"], data
    # Refusals: not a model file, a file name the page does not take, bad base64.
    status, data, _ = upload(port, "upload-session", "junk.keras", b"not a zip file")
    assert status == 400 and "not a .keras file" in data["error"]["message"]
    status, data, _ = upload(port, "upload-session", "model.py", b"print(1)")
    assert status == 400 and data["error"]["field"] == "filename"
    status, data, _ = post(port, "/api/model", {"spec": SMALL, "session": "upload-session",
                                                "filename": "a.keras", "data": "***"})
    assert status == 400 and "base64" in data["error"]["message"]


def test_the_model_store_keeps_the_most_recent_sessions():
    store = ModelStore(capacity=2)
    store.put("a" * 8, "spec a", "model a")
    store.put("b" * 8, "spec b", "model b")
    assert store.get("a" * 8, "spec a") == "model a"  # a is now the most recent
    store.put("c" * 8, "spec c", "model c")
    assert store.get("b" * 8) is None and len(store) == 2
    assert store.get("a" * 8, "another spec") is None and store.get("c" * 8) == "model c"


def test_a_job_frees_its_slot_before_it_reports_done():
    from types import SimpleNamespace

    from convlens.web.jobs import ServerState

    class Model:
        def fit(self, *args, **kwargs):
            return SimpleNamespace(history={"loss": [0.5]})

    state = ServerState()
    job = state.trainer.prepare({"spec": SMALL, "session": "session-9", "samples": 100})
    assert state.trainer.cancel({"session": "session-9"}) == {"cancelled": True}  # it holds
    job.cancel.clear()  # the slot; now let it finish at once
    job.model = Model()
    seen = []

    def emit(kind, data):
        # By the time the client reads 'done', no job of its session is running.
        seen.append((kind, data, state.trainer.cancel({"session": "session-9"})))

    state.trainer.run(job, emit)
    assert seen == [("done", {"cancelled": False, "epochs": 1}, {"cancelled": False})]
    status = state.trainer.prepare({"spec": SMALL, "session": "session-10", "samples": 100})
    assert status is not None  # a new job starts: no 409
    assert state.store.get("session-9", SMALL) is job.model
