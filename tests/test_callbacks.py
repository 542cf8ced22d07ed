"""convlens.callbacks driven like the trainer drives them, compared with keras.callbacks."""

import os

import keras
import numpy as np
import pytest

from convlens import callbacks, metrics


class FakeModel:
    """Just what callbacks use: weights, stop_training, save/save_weights."""

    def __init__(self, fail_on_save=None):
        self.stop_training = False
        self.weights = [np.zeros(2, np.float32)]
        self.saved = []
        self.probes = []
        self.fail_on_save = fail_on_save
        self.metrics_list = [("accuracy", metrics.accuracy), ("score", metrics.mean_squared_error)]
        self.name = "fake"

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def _write(self, filepath, kind):
        if os.path.basename(filepath).startswith("probe."):
            # ModelCheckpoint's try-once at train begin, in a folder of its own
            self.probes.append((kind, os.path.basename(filepath)))
            return
        # temp file then os.replace: what the real model's atomic save does
        self.saved.append((kind, filepath))
        temporary = filepath + ".tmp"
        try:
            with open(temporary, "w") as handle:
                handle.write(f"{kind} {self.weights[0].tolist()}\n")
                if self.fail_on_save is not None and len(self.saved) == self.fail_on_save:
                    raise OSError("disk full")
            os.replace(temporary, filepath)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def save(self, filepath, **kwargs):
        self._write(filepath, "model")

    def save_weights(self, filepath, **kwargs):
        self._write(filepath, "weights")


def run_epochs(callback, model, epoch_logs, batches_per_epoch=0):
    """The trainer's calls, with weights changing every epoch."""
    callback.set_model(model)
    callback.set_params({"verbose": 0, "epochs": len(epoch_logs), "steps": batches_per_epoch})
    callback.on_train_begin()
    logs = {}
    for epoch, logs in enumerate(epoch_logs):
        callback.on_epoch_begin(epoch)
        for batch in range(batches_per_epoch):
            callback.on_train_batch_begin(batch)
            callback.on_train_batch_end(batch, {"loss": logs.get("loss", 1.0)})
        model.weights = [np.full(2, epoch + 1, np.float32)]
        callback.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    callback.on_train_end(logs)
    return epoch


VAL_LOSSES = [1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7, 0.71, 0.72, 0.73, 0.74]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"patience": 2},
        {"patience": 2, "min_delta": 0.02},
        {"patience": 1, "restore_best_weights": True, "verbose": 1},
        {"patience": 3, "restore_best_weights": True, "verbose": 1, "start_from_epoch": 2},
        {"patience": 2, "baseline": 0.75, "verbose": 1},
        {"patience": 2, "mode": "max", "verbose": 1},
        {"monitor": "loss", "patience": 4, "verbose": 1, "restore_best_weights": True},
    ],
)
def test_early_stopping_matches_keras(capsys, kwargs):
    logs = [{"loss": 2 * v, "val_loss": v} for v in VAL_LOSSES]
    ours, theirs = callbacks.EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
    model_ours, model_theirs = FakeModel(), FakeModel()
    last_ours = run_epochs(ours, model_ours, logs)
    out_ours = capsys.readouterr().out
    last_theirs = run_epochs(theirs, model_theirs, logs)
    out_theirs = capsys.readouterr().out
    assert last_ours == last_theirs
    assert out_ours == out_theirs
    for attribute in ("stopped_epoch", "wait", "best", "best_epoch"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    np.testing.assert_array_equal(model_ours.weights[0], model_theirs.weights[0])


def test_early_stopping_accuracy_auto_mode_maximises(capsys):
    logs = [{"val_accuracy": a} for a in [0.5, 0.6, 0.55, 0.58, 0.61]]
    ours = callbacks.EarlyStopping(monitor="val_accuracy", patience=2, verbose=1)
    theirs = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", patience=2, verbose=1, mode="max"
    )
    assert run_epochs(ours, FakeModel(), logs) == run_epochs(theirs, FakeModel(), logs) == 3
    out = capsys.readouterr().out
    assert out == "Epoch 4: early stopping\nEpoch 4: early stopping\n"


def test_early_stopping_monitor_direction_unknown():
    stopper = callbacks.EarlyStopping(monitor="val_mystery")
    with pytest.raises(ValueError, match="monitor=val_mystery.*mode='max'"):
        run_epochs(stopper, FakeModel(), [{"val_mystery": 1.0}])


def test_early_stopping_uses_model_metric_names():
    # 'score' is the model's name for a mse metric: smaller is better.
    stopper = callbacks.EarlyStopping(monitor="val_score", patience=0)
    assert run_epochs(stopper, FakeModel(), [{"val_score": v} for v in [3, 2, 2.5, 1]]) == 2


def test_early_stopping_warns_on_missing_metric():
    stopper = callbacks.EarlyStopping()
    with pytest.warns(UserWarning, match="`val_loss` which is not available.*loss"):
        run_epochs(stopper, FakeModel(), [{"loss": 1.0}])


CHECKPOINT_CASES = [
    ("m.keras", {}),
    ("m-{epoch:02d}-{val_loss:.2f}.keras", {"verbose": 1}),
    ("best.keras", {"save_best_only": True, "verbose": 1}),
    ("best-{epoch:02d}.keras", {"save_best_only": True, "monitor": "val_acc", "mode": "max"}),
    ("w.weights.h5", {"save_weights_only": True, "save_best_only": True, "verbose": 1}),
    ("b-{epoch}-{batch}.keras", {"save_freq": 3, "verbose": 1}),
    ("t.keras", {"save_best_only": True, "initial_value_threshold": 0.82, "verbose": 1}),
]


@pytest.mark.parametrize(("pattern", "kwargs"), CHECKPOINT_CASES)
def test_model_checkpoint_matches_keras(tmp_path, capsys, pattern, kwargs):
    logs = [{"loss": 2 * v, "val_loss": v, "val_acc": 1 - v} for v in VAL_LOSSES[:6]]
    results, models = [], []
    for module, folder in ((callbacks, "ours"), (keras.callbacks, "keras")):
        filepath = str(tmp_path / folder / "sub" / pattern)
        checkpoint = module.ModelCheckpoint(filepath, **kwargs)
        model = FakeModel()
        models.append(model)
        run_epochs(checkpoint, model, logs, batches_per_epoch=4)
        out = capsys.readouterr().out.replace(str(tmp_path / folder), "DIR")
        saved = [(kind, path.replace(str(tmp_path / folder), "DIR")) for kind, path in model.saved]
        files = sorted(os.listdir(tmp_path / folder / "sub"))
        results.append((out, saved, files, checkpoint.best))
    assert results[0] == results[1]
    assert results[0][1], "something was saved"
    # ours tried one save aside before training, through the model's own method
    if kwargs.get("save_weights_only"):
        assert models[0].probes == [("weights", "probe.weights.h5")]
    else:
        assert models[0].probes == [("model", "probe.keras")]
    assert models[1].probes == []


def test_checkpoint_failed_save_keeps_previous_file(tmp_path):
    filepath = tmp_path / "model.keras"
    model = FakeModel(fail_on_save=2)
    checkpoint = callbacks.ModelCheckpoint(filepath)
    logs = [{"val_loss": 1.0}, {"val_loss": 0.5}]
    with pytest.raises(OSError, match="disk full"):
        run_epochs(checkpoint, model, logs)
    assert filepath.read_text() == "model [1.0, 1.0]\n"  # epoch 1's checkpoint, intact
    assert os.listdir(tmp_path) == ["model.keras"]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("model.txt",), {}, ValueError, "must end in `.keras`"),
        (("model.keras",), {"save_weights_only": True}, ValueError, "`.weights.h5`"),
        (("model.keras",), {"save_freq": "batch"}, ValueError, "Unrecognized save_freq: batch"),
    ],
)
def test_model_checkpoint_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        callbacks.ModelCheckpoint(*args, **kwargs)


def test_model_checkpoint_bad_placeholder(tmp_path):
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.keras"))
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        run_epochs(checkpoint, FakeModel(), [{"val_loss": 1.0}])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_terminate_on_nan_matches_keras(capsys, bad):
    outputs = []
    for module in (callbacks, keras.callbacks):
        model = FakeModel()
        callback = module.TerminateOnNaN()
        callback.set_model(model)
        callback.on_train_batch_end(0, {"loss": 1.0})
        assert not model.stop_training
        callback.on_train_batch_end(7, {"loss": bad})
        assert model.stop_training
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == "Batch 7: Invalid loss, terminating training\n"
    with pytest.raises(RuntimeError, match="at batch 3"):
        callbacks.TerminateOnNaN(raise_error=True).on_train_batch_end(3, {"loss": bad})


def test_history():
    history = callbacks.History()
    model = FakeModel()
    run_epochs(history, model, [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.5, "val_loss": 1.5}])
    assert history.history == {"loss": [1.0, 0.5], "val_loss": [2.0, 1.5]}
    assert history.epoch == [0, 1]
    assert model.history is history


def test_callback_list_order_params_and_logs():
    calls = []

    class Recorder(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls.append((epoch, logs, type(logs["loss"])))

        def on_batch_end(self, batch, logs=None):
            calls.append(("batch", batch))

    model = FakeModel()
    recorder = Recorder()
    cbs = callbacks.CallbackList(
        [recorder], add_history=True, add_progress=True, model=model, verbose=0, epochs=2, steps=3
    )
    assert cbs.callbacks[0] is recorder
    assert isinstance(cbs.callbacks[1], callbacks.History)
    assert isinstance(cbs.callbacks[2], callbacks.ProgbarLogger)
    assert recorder.params == {"verbose": 0, "epochs": 2, "steps": 3}
    assert recorder.model is model and model.history is cbs.callbacks[1]
    cbs.on_train_begin()
    cbs.on_train_batch_end(4, {"loss": np.float32(0.5)})
    cbs.on_epoch_end(0, {"loss": np.float32(0.5)})
    assert calls == [("batch", 4), (0, {"loss": 0.5}, float)]
    with pytest.raises(TypeError, match="Callback instance"):
        callbacks.CallbackList([print])


def test_lambda_callback():
    seen = []
    callback = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((epoch, logs["loss"])),
        on_train_end=lambda logs: seen.append("end"),
    )
    run_epochs(callback, FakeModel(), [{"loss": 1.0}, {"loss": 0.5}])
    assert seen == [(0, 1.0), (1, 0.5), "end"]


def _callback_naming_logs_otherwise(base):
    """Epoch and begin/end hooks whose logs argument has another name: Keras passes those
    logs positionally (only batch hooks get ``logs=``), so such a callback runs in Keras."""

    class Recorder(base):
        def __init__(self):
            super().__init__()
            self.calls = []

        def on_train_begin(self, log=None):
            self.calls.append(("train_begin", log))

        def on_epoch_begin(self, epoch, log=None):
            self.calls.append(("epoch_begin", epoch, log))

        def on_epoch_end(self, epoch, epoch_logs):
            self.calls.append(("epoch_end", epoch, epoch_logs))

        def on_train_end(self, log):
            self.calls.append(("train_end", log))

        def on_test_begin(self, log=None):
            self.calls.append(("test_begin", log))

        def on_test_end(self, log=None):
            self.calls.append(("test_end", log))

        def on_predict_begin(self, log=None):
            self.calls.append(("predict_begin", log))

        def on_predict_end(self, log=None):
            self.calls.append(("predict_end", log))

    return Recorder()


def test_epoch_and_begin_end_hooks_get_logs_positionally_like_keras():
    recorded = []
    for module in (keras.callbacks, callbacks):
        recorder = _callback_naming_logs_otherwise(module.Callback)
        callback_list = module.CallbackList([recorder])
        callback_list.on_train_begin()
        callback_list.on_epoch_begin(0)
        callback_list.on_epoch_end(0, {"loss": 0.5})
        callback_list.on_train_end({"loss": 0.5})
        callback_list.on_test_begin()
        callback_list.on_test_end({"loss": 0.25})
        callback_list.on_predict_begin()
        callback_list.on_predict_end()
        recorded.append(recorder.calls)
    assert recorded[1] == recorded[0]
