"""The progress display, compared with Keras's own output driven by the same fake clock."""

import io
import re

import pytest
from keras.callbacks import ProgbarLogger as KerasProgbarLogger
from keras.src.utils import progbar as keras_progbar_module
from keras.utils import Progbar as KerasProgbar

from convlens.callbacks import ProgbarLogger
from convlens.progress import (
    Progbar,
    format_eta,
    format_time_per_unit,
    format_value,
)


class Clock:
    """Returns start, start + d0, start + d0 + d1, ... on successive calls."""

    def __init__(self, steps, start=1000.0):
        self.now = start
        self.steps = list(steps)
        self.calls = 0

    def __call__(self):
        value = self.now
        self.now += self.steps[self.calls % len(self.steps)]
        self.calls += 1
        return value

    def time(self):  # stands in for the `time` module inside keras's progbar
        return self()


def render(raw: str) -> str:
    """What a terminal shows after printing ``raw``: colours dropped, \\r and \\b applied."""
    raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    lines, column = [[]], 0
    for char in raw:
        line = lines[-1]
        if char == "\n":
            lines.append([])
            column = 0
        elif char == "\r":
            column = 0
        elif char == "\b":
            column = max(0, column - 1)
        else:
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    return "\n".join("".join(line).rstrip() for line in lines)


def _logs(epoch, step):
    return {
        "accuracy": 0.5 + 0.01 * step + 0.1 * epoch,
        "loss": 1.0 / (1 + step + 5 * epoch),
    }


def _drive_fit(callback, epochs, steps, with_validation=True, stop_after=None):
    callback.set_params({"verbose": callback_verbose[0], "epochs": epochs, "steps": steps})
    callback.on_train_begin()
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        for step in range(steps):
            callback.on_train_batch_begin(step)
            callback.on_train_batch_end(step, _logs(epoch, step))
            if stop_after is not None and step + 1 == stop_after:
                break
        logs = dict(_logs(epoch, steps - 1))
        if with_validation:
            # an evaluate() inside fit must stay silent
            callback.on_test_begin()
            callback.on_test_batch_end(0, {"loss": 9.0})
            callback.on_test_end({"loss": 9.0})
            logs.update({"val_accuracy": 0.98, "val_loss": 0.0712})
        callback.on_epoch_end(epoch, logs)
    callback.on_train_end(logs)


callback_verbose = [1]

CLOCKS = [
    [0.07],  # 70ms/step
    [0.0004, 0.0003],  # microseconds
    [1.7, 2.3],  # seconds per step, elapsed over a minute
    [0.5, 0.0001, 0.02],  # slow first step
]


def _keras_output(monkeypatch, capsys, clock_steps, drive):
    monkeypatch.setattr(keras_progbar_module, "time", Clock(clock_steps))
    capsys.readouterr()
    drive()
    return capsys.readouterr().out


@pytest.mark.parametrize("clock_steps", CLOCKS)
@pytest.mark.parametrize("verbose", [1, 2])
@pytest.mark.parametrize(("epochs", "steps"), [(3, 40), (1, 7), (2, 1), (2, 100)])
def test_fit_matches_keras(monkeypatch, capsys, clock_steps, verbose, epochs, steps):
    callback_verbose[0] = verbose
    expected = _keras_output(
        monkeypatch, capsys, clock_steps, lambda: _drive_fit(KerasProgbarLogger(), epochs, steps)
    )
    ours = ProgbarLogger(time_fn=Clock(clock_steps), dynamic=False)
    _drive_fit(ours, epochs, steps)
    actual = capsys.readouterr().out
    if verbose == 2:
        assert actual == expected  # Keras writes plain lines: byte for byte
    else:
        assert actual == render(expected)
    assert "\x1b" not in actual and "\b" not in actual and "\r" not in actual


def test_fit_stopped_early_matches_keras(monkeypatch, capsys):
    callback_verbose[0] = 1
    expected = _keras_output(
        monkeypatch, capsys, [0.01], lambda: _drive_fit(KerasProgbarLogger(), 3, 10, stop_after=4)
    )
    _drive_fit(ProgbarLogger(time_fn=Clock([0.01]), dynamic=False), 3, 10, stop_after=4)
    assert capsys.readouterr().out == render(expected)


def test_example_line():
    callback_verbose[0] = 1
    out = io.StringIO()
    callback = ProgbarLogger(file=out, time_fn=Clock([0.07]), dynamic=False)
    _drive_fit(callback, 5, 40)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/5"
    assert re.fullmatch(
        r"40/40 ━{20} 3s 7\dms/step - accuracy: 0\.8900 - loss: 0\.0250 - "
        r"val_accuracy: 0\.9800 - val_loss: 0\.0712",
        lines[1],
    ), lines[1]


def _drive_evaluate(callback, steps):
    callback.set_params({"verbose": 1, "epochs": 1, "steps": steps})
    callback.on_test_begin()
    for step in range(steps):
        callback.on_test_batch_begin(step)
        callback.on_test_batch_end(step, {"accuracy": 0.98, "loss": 0.05 + 1e-3 * step})
    callback.on_test_end({"accuracy": 0.98, "loss": 0.0533})


def _drive_predict(callback, steps):
    callback.set_params({"verbose": 1, "epochs": 1, "steps": steps})
    callback.on_predict_begin()
    for step in range(steps):
        callback.on_predict_batch_begin(step)
        callback.on_predict_batch_end(step, {"outputs": None})
    callback.on_predict_end()


@pytest.mark.parametrize("drive", [_drive_evaluate, _drive_predict])
@pytest.mark.parametrize("steps", [1, 313])
def test_evaluate_and_predict_match_keras(monkeypatch, capsys, drive, steps):
    expected = _keras_output(monkeypatch, capsys, [0.003],
                             lambda: drive(KerasProgbarLogger(), steps))
    drive(ProgbarLogger(time_fn=Clock([0.003]), dynamic=False), steps)
    actual = capsys.readouterr().out
    assert actual == render(expected)
    assert actual.startswith(f"{steps}/{steps} ━━━━")


@pytest.mark.parametrize("verbose", [1, 2])
@pytest.mark.parametrize("stateful_metrics", [None, ["loss"], ["loss", "accuracy", "tiny"]])
@pytest.mark.parametrize("target", [10, None])
def test_standalone_progbar_matches_keras(monkeypatch, capsys, verbose, stateful_metrics, target):
    def drive(cls, **kwargs):
        bar = cls(target, verbose=verbose, stateful_metrics=stateful_metrics, **kwargs)
        for step in range(1, 11):
            values = [("loss", 2.0 / step), ("accuracy", 0.1 * step), ("tiny", -3e-5 * step)]
            bar.update(step, values, finalize=True if step == 10 else None)

    expected = _keras_output(monkeypatch, capsys, [0.02, 0.2], lambda: drive(KerasProgbar))
    drive(Progbar, time_fn=Clock([0.02, 0.2]), dynamic=False)
    actual = capsys.readouterr().out
    if verbose == 2:
        assert actual == expected
    else:
        assert actual == render(expected)


def test_formatting_helpers():
    assert format_value(0.30124) == "0.3012"
    assert format_value(0.0004) == "4.0000e-04"
    assert format_value(-0.5) == "-0.5000"
    assert format_value(-0.5, verbose=2) == "-5.0000e-01"  # Keras's verbose=2 quirk
    assert format_time_per_unit(0.07) == " 70ms/step"
    assert format_time_per_unit(5e-6) == " 5us/step"
    assert format_time_per_unit(2.4) == " 2s/step"
    assert format_time_per_unit(0) == " 0s/step"
    assert format_eta(42.7) == "42s"
    assert format_eta(125) == "2:05"
    assert format_eta(3723) == "1:02:03"


def test_silent():
    out = io.StringIO()
    callback = ProgbarLogger(file=out, time_fn=Clock([0.1]), dynamic=False)
    callback.set_params({"verbose": 0, "epochs": 2, "steps": 3})
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_train_batch_end(0, {"loss": 1.0})
    callback.on_epoch_end(0, {"loss": 1.0})
    assert out.getvalue() == ""


def test_live_display_leaves_final_line():
    """On a terminal the line is redrawn by rich; the finished line stays."""
    from rich.console import Console

    out = io.StringIO()
    bar = Progbar(5, time_fn=Clock([0.1]), file=out, dynamic=True, stateless_metrics=[])
    bar._console_factory = lambda file: Console(file=file, force_terminal=True, width=120)
    for step in range(1, 6):
        bar.update(step, [("loss", 0.5)])
    text = render(out.getvalue())
    assert re.search(r"^5/5 ━{20} \ds 100ms/step - loss: 0\.5000$", text, re.M), text
    assert "\x1b[1m" in out.getvalue()  # bold count and time, as Keras styles them


def test_bad_arguments():
    with pytest.raises(ValueError, match="verbose"):
        Progbar(10, verbose=3)
    with pytest.raises(ValueError, match="Only one of"):
        Progbar(10, stateful_metrics=[], stateless_metrics=[])
