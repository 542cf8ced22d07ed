"""MonitorCallback: what EarlyStopping and ModelCheckpoint share about a monitored value."""

from __future__ import annotations

import warnings

import numpy as np

from convlens.callbacks.base import Callback


class MonitorCallback(Callback):
    """Shared by EarlyStopping and ModelCheckpoint: which direction is an improvement."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.",
                stacklevel=3,
            )
            mode = "auto"
        if not isinstance(monitor, str):
            raise TypeError(f"`monitor` must be a string such as 'val_loss'; received {monitor!r}.")
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self._larger_is_better: bool | None = None

    def _set_monitor_op(self) -> None:
        from convlens import metrics

        if self.mode == "min":
            self._larger_is_better = False
        elif self.mode == "max":
            self._larger_is_better = True
        else:
            found = metrics.direction(self.monitor, self.model.metrics_list)
            if found is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, but "
                    "convlens isn't able to automatically determine whether that metric should "
                    "be maximized or minimized. Pass `mode='max'` in order to monitor based on "
                    "the highest metric value, or pass `mode='min'` in order to use the lowest "
                    "value."
                )
            self._larger_is_better = found == "up"
        if not self._larger_is_better:
            self.min_delta = -self.min_delta

    @property
    def monitor_op(self):
        if self._larger_is_better is None:
            return None
        return np.greater if self._larger_is_better else np.less

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        return bool(self.monitor_op(value - self.min_delta, reference))
