"""``keras.callbacks.ProgbarLogger``: the progress display of fit/evaluate/predict as a callback.

The trainer appends one last (``CallbackList(add_progbar=True)``); it draws with
``convlens.progress.Progbar``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from convlens.callbacks.base import Callback
from convlens.progress import Progbar


class ProgbarLogger(Callback):
    """What ``keras.callbacks.ProgbarLogger`` prints, as a callback the trainer appends last.

    Parameters come from ``set_params({'verbose', 'epochs', 'steps'})``; the 'Epoch i/n'
    line is printed only when ``epochs > 1``; inside ``fit`` the validation pass is silent
    and its values arrive in the epoch-end logs.
    """

    def __init__(self, file=None, time_fn: Callable[[], float] | None = None, dynamic=None):
        super().__init__()
        self.verbose = 1
        self.epochs = 1
        self.target: int | None = None
        self.progbar: Progbar | None = None
        self.seen = 0
        self._file = file
        self._time_fn = time_fn
        self._dynamic = dynamic
        self._called_in_fit = False

    def set_params(self, params) -> None:
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _print(self, text: str) -> None:
        stream = self._file if self._file is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def _reset(self) -> None:
        if self.progbar is not None:
            self.progbar.close()
        self.seen = 0
        self.progbar = None

    def _ensure_progbar(self) -> Progbar:
        if self.progbar is None:
            self.progbar = Progbar(
                target=self.target,
                verbose=self.verbose,
                unit_name="step",
                stateless_metrics=set(),
                file=self._file,
                time_fn=self._time_fn,
                dynamic=self._dynamic,
            )
        return self.progbar

    def _update(self, batch: int, logs) -> None:
        progbar = self._ensure_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize(self, logs) -> None:
        progbar = self._ensure_progbar()
        if self.target is None:
            self.target = self.seen
            progbar.target = self.seen
        progbar.update(self.target, list((logs or {}).items()), finalize=True)

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()
        self._ensure_progbar()
        if self.verbose and self.epochs > 1:
            self._print(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finalize(logs)

    def on_train_end(self, logs=None):
        self._reset()

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset()
            self._ensure_progbar()

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize(logs)

    def on_predict_begin(self, logs=None):
        self._reset()
        self._ensure_progbar()

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)

    def on_predict_end(self, logs=None):
        self._finalize(None)
