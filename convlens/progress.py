"""The progress display of fit/evaluate/predict, in Keras 3's words and numbers.

Line format (``keras.utils.Progbar``)::

    Epoch 1/5
    40/40 ━━━━━━━━━━━━━━━━━━━━ 3s 70ms/step - accuracy: 0.9123 - loss: 0.3012   (verbose=1)
    40/40 - 3s - 70ms/step - accuracy: 0.9123 - loss: 0.3012                     (verbose=2)

With ``verbose=1`` on a terminal the line is redrawn in place (by ``rich.live.Live``),
showing the ETA while running and the elapsed time when done. When the output is not a
terminal (a log file, a pipe, a notebook cell capture) only the finished line of each
epoch is written, without colour codes: it is the text a terminal shows at the end of a
Keras epoch (Keras writes every intermediate state plus backspaces and carriage returns,
which a log file would keep). ``verbose=2`` writes one plain line per epoch in both cases,
character for character as Keras does.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable

Segment = tuple[str, str]  # (text, rich style)


def format_value(value, verbose: int = 1) -> str:
    """``%.4f``, or ``%.4e`` for values of at most 1e-3 (verbose=1 compares ``abs``)."""
    big = abs(value) > 1e-3 if verbose == 1 else value > 1e-3
    return f"{value:.4f}" if big else f"{value:.4e}"


def format_time_per_unit(seconds: float, unit_name: str = "step") -> str:
    """`` 2s/step``, `` 70ms/step`` or `` 5us/step`` (with Keras's leading space)."""
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f" {seconds * 1000.0:.0f}ms/{unit_name}"
    return f" {seconds * 1000000.0:.0f}us/{unit_name}"


def format_eta(seconds: float) -> str:
    """``1:02:03``, ``2:05`` or ``42s``."""
    if seconds > 3600:
        hours, minutes = int(seconds // 3600), int((seconds % 3600) // 60)
        return f"{hours}:{minutes:02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


class Progbar:
    """A progress bar with ``keras.utils.Progbar``'s arguments and output.

    Args:
        target: total number of steps, or None if unknown.
        width: number of bar characters.
        verbose: 0 silent, 1 bar, 2 one line when finished.
        interval: minimum seconds between two redraws on a terminal.
        stateful_metrics: names whose values are shown as given; the others are averaged
            over the steps (as Keras does). Give at most one of the two lists.
        stateless_metrics: names that are averaged; all others are shown as given.
        unit_name: ``"step"`` or ``"sample"``.
        file: stream to write to; defaults to ``sys.stdout`` at the time of writing.
        time_fn: clock returning seconds (inject a fake one in tests).
        dynamic: redraw in place; defaults to whether ``file`` is a terminal.
    """

    def __init__(
        self,
        target: int | None,
        width: int = 20,
        verbose: int = 1,
        interval: float = 0.05,
        stateful_metrics: Iterable[str] | None = None,
        stateless_metrics: Iterable[str] | None = None,
        unit_name: str = "step",
        file=None,
        time_fn: Callable[[], float] | None = None,
        dynamic: bool | None = None,
    ):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError(
                "Only one of `stateful_metrics` or `stateless_metrics` can be provided."
            )
        if target is not None and (isinstance(target, bool) or target < 0):
            raise ValueError(f"`target` must be a non-negative int or None; received {target!r}.")
        if verbose not in (0, 1, 2):
            raise ValueError(f"`verbose` must be 0, 1 or 2; received {verbose!r}.")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics) if stateful_metrics is not None else None
        self.stateless_metrics = set(stateless_metrics) if stateless_metrics is not None else None
        if self.stateful_metrics is None and self.stateless_metrics is None:
            self.stateful_metrics = set()
        self._file = file
        self._time = time_fn or time.time
        self._dynamic = dynamic
        self._live = None
        self._console_factory = None  # tests may supply a rich Console maker
        self._seen_so_far = 0
        self._values: dict[str, list] = {}
        self._values_order: list[str] = []
        self._start = self._time()
        self._last_update = 0.0
        self._time_after_first_step: float | None = None

    @property
    def file(self):
        return self._file if self._file is not None else sys.stdout

    @property
    def dynamic(self) -> bool:
        if self._dynamic is not None:
            return self._dynamic
        isatty = getattr(self.file, "isatty", None)
        return bool(isatty and isatty())

    def add(self, n: int, values=None) -> None:
        self.update(self._seen_so_far + n, values)

    def update(self, current: int, values=None, finalize: bool | None = None) -> None:
        """Record step ``current`` with ``values`` (``[(name, value), ...]``) and redraw.

        ``finalize`` defaults to ``current >= target``; the finishing update writes the
        final line.
        """
        if finalize is None:
            finalize = False if self.target is None else current >= self.target
        for name, value in values or []:
            if name not in self._values_order:
                self._values_order.append(name)
            if self.stateful_metrics is not None:
                averaged = name not in self.stateful_metrics
            else:
                averaged = name in self.stateless_metrics
            if averaged and not finalize:
                weight = max(current - self._seen_so_far, 1)
                if name not in self._values:
                    self._values[name] = [value * weight, weight]
                else:
                    self._values[name][0] += value * weight
                    self._values[name][1] += weight
            else:
                self._values[name] = [value, 1]
        self._seen_so_far = current
        now = self._time()
        time_per_unit = self._step_duration(current, now)

        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            if self.dynamic:
                self._draw_live(
                    self._line_segments(current, now, time_per_unit, finalize), finalize
                )
            elif finalize:
                text = "".join(
                    text for text, _ in self._line_segments(current, now, time_per_unit, True)
                )
                self._write(text + "\n")
        elif self.verbose == 2 and finalize and self.target:
            self._write(self._verbose2_line(current, now, time_per_unit) + "\n")
        self._last_update = now

    # ---- text --------------------------------------------------------------------------

    def _average(self, name: str) -> float:
        total, count = self._values[name]
        return total / max(1, count)

    def _line_segments(self, current, now, time_per_unit, finalize) -> list[Segment]:
        segments: list[Segment] = []
        if self.target:
            digits = int(math.log10(self.target)) + 1
            done = int(self.width * float(current) / self.target)
            segments.append((f"%{digits}d/%d" % (current, self.target), "bold"))
            segments.append((" ", ""))
            if done > 0:
                segments.append(("━" * done, "green"))
            segments.append(("━" * (self.width - done), "white"))
        else:
            segments.append((f"{int(current):7d}/Unknown", ""))
        segments.append((" ", ""))
        if self.target and not finalize:
            segments.append((format_eta(time_per_unit * (self.target - current)), "bold"))
        else:
            segments.append((f"{now - self._start:.0f}s", "bold"))
        info = format_time_per_unit(time_per_unit, self.unit_name)
        for name in self._values_order:
            info += f" - {name}: {format_value(self._average(name), 1)}"
        segments.append((info, ""))
        return segments

    def _verbose2_line(self, current, now, time_per_unit) -> str:
        digits = int(math.log10(self.target)) + 1
        line = f"%{digits}d/%d" % (current, self.target)
        line += (
            f" - {now - self._start:.0f}s -{format_time_per_unit(time_per_unit, self.unit_name)}"
        )
        for name in self._values_order:
            line += f" - {name}: {format_value(self._average(name), 2)}"
        return line

    def _step_duration(self, current, now) -> float:
        """Seconds per step, leaving out the (usually slow) first step once there are more."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            duration = (now - self._time_after_first_step) / (current - 1)
        else:
            duration = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return duration

    # ---- output ------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        stream = self.file
        stream.write(text)
        stream.flush()

    def _draw_live(self, segments: list[Segment], finalize: bool) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        text = Text()
        for chunk, style in segments:
            text.append(chunk, style=style or None)
        if self._live is None:
            if self._console_factory is not None:
                console = self._console_factory(self.file)
            else:
                console = Console(file=self.file, highlight=False)
            self._live = Live(text, console=console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(text, refresh=True)
        if finalize:
            self.close()

    def close(self) -> None:
        """Stop redrawing; the last drawn line stays on screen."""
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()


__all__ = [
    "Progbar",
    "format_eta",
    "format_time_per_unit",
    "format_value",
]
