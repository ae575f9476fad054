"""Progress display: Keras' bar on a terminal, plain periodic lines anywhere else.

Keras' ``Progbar`` believes it is on a terminal whenever ``"posix" in sys.modules``
(always, on Linux and macOS), so in a log file every update is backspaces, a carriage
return and colour codes: about 290 bytes a training step. :func:`progress_bar` gives
that bar only when stdout is a terminal or a notebook, and otherwise a
:class:`LineProgress`: one plain line at the first update, then one every
``interval_s`` seconds, and one at the end.
"""

import sys
import time


def on_terminal(stream=None):
    """Whether ``stream`` (default: stdout) is a terminal, or this is a notebook."""
    stream = sys.stdout if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return tty or "ipykernel" in sys.modules


def progress_bar(target, unit_name="step", stateful_metrics=None, interval_s=10.0):
    """``keras.utils.Progbar`` on a terminal, else :class:`LineProgress` (same
    ``update`` / ``add`` interface)."""
    if on_terminal():
        import keras  # pylint: disable=import-outside-toplevel

        return keras.utils.Progbar(target, unit_name=unit_name,
                                   stateful_metrics=stateful_metrics)
    return LineProgress(target, unit_name=unit_name, stateful_metrics=stateful_metrics,
                        interval_s=interval_s)


def _format_value(value):
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def _format_seconds(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


class LineProgress:
    """Plain progress lines, e.g. ``step 120/600 (20%) 41s, ETA 2:44 - loss: 0.5312``.

    The interface of ``keras.utils.Progbar``: ``update(current, values, finalize)`` and
    ``add(n, values)``. A metric in ``stateful_metrics`` shows its last value; others,
    their mean over the updates since the previous line.

    Args:
      target: the total count, or None when unknown.
      unit_name: what is counted (``step``, ``image``, ...).
      stateful_metrics: names whose values are shown as they are.
      interval_s: the least time between two lines (the first and the last always print).
      stream: where lines go (default: stdout at each line).
      clock: seconds, monotonic (for tests).
    """

    def __init__(self, target, unit_name="step", stateful_metrics=None, interval_s=10.0,
                 stream=None, clock=time.monotonic):
        self.target = target
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self.interval_s = interval_s
        self._stream = stream
        self._clock = clock
        self._start = None  # (time, count) of the first update
        self._last_line = None
        self._seen = 0
        self._sums = {}  # name -> [sum, count] since the last line
        self._last = {}  # name -> last value (stateful metrics)
        self._order = []

    def add(self, n, values=None):
        """Counts ``n`` more units."""
        self.update(self._seen + n, values)

    def update(self, current, values=None, finalize=None):
        """Records ``current`` and ``values`` (``[(name, value)]``); prints a line when
        it is the first, the last, or ``interval_s`` passed since the previous one."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for name, value in values or ():
            if name not in self._order:
                self._order.append(name)
            value = float(value)
            if name in self.stateful_metrics:
                self._last[name] = value
            else:
                total = self._sums.setdefault(name, [0.0, 0])
                total[0] += value
                total[1] += 1
        self._seen = current
        now = self._clock()
        if self._start is None:
            self._start = (now, current)
        elif (not finalize and self._last_line is not None
              and now - self._last_line < self.interval_s):
            return
        self._last_line = now
        self._print(self._line(current, now, finalize))

    def _line(self, current, now, finalize):
        if self.target:
            head = (f"{self.unit_name} {current}/{self.target} "
                    f"({100.0 * current / self.target:.0f}%)")
        else:
            head = f"{self.unit_name} {current}"
        start_time, start_count = self._start
        elapsed = now - start_time
        timing = f" {_format_seconds(elapsed)}"
        done = current - start_count
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            timing += (f", {rate:.3g} {self.unit_name}/s" if rate >= 1
                       else f", {1.0 / rate:.3g} s/{self.unit_name}")
            if self.target and not finalize and current < self.target:
                timing += f", ETA {_format_seconds((self.target - current) / rate)}"
        parts = [head + timing]
        for name in self._order:
            if name in self._last:
                parts.append(f"{name}: {_format_value(self._last[name])}")
            elif self._sums.get(name, [0, 0])[1]:
                total, count = self._sums[name]
                parts.append(f"{name}: {_format_value(total / count)}")
        self._sums.clear()
        return " - ".join(parts)

    def _print(self, line):
        stream = sys.stdout if self._stream is None else self._stream
        print(line, file=stream, flush=True)
