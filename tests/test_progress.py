"""Progress: plain periodic lines off a terminal (no escape codes in logs)."""

import io

from nasseg_tf import progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_are_plain_periodic_and_average_since_the_last_line():
    out, clock = io.StringIO(), _Clock()
    bar = progress.LineProgress(100, unit_name="step", stateful_metrics=["lr"],
                                interval_s=10, stream=out, clock=clock)
    for step in range(1, 101):
        clock.now = step * 0.5  # 2 steps/s
        bar.update(step, values=[("loss", float(step)), ("lr", 0.01 * step)])
    lines = out.getvalue().splitlines()
    # The first update, then one line per 10 s (20 steps), and the last.
    assert [line.split(" (")[0] for line in lines] == [
        "step 1/100", "step 21/100", "step 41/100", "step 61/100", "step 81/100",
        "step 100/100"]
    assert lines[1] == "step 21/100 (21%) 10s, 2 step/s, ETA 40s - loss: 11.5000 - lr: 0.2100"
    assert lines[-1] == "step 100/100 (100%) 50s, 2 step/s - loss: 91.0000 - lr: 1.0000"
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert "\b" not in out.getvalue()


def test_unknown_target_slow_units_and_add():
    out, clock = io.StringIO(), _Clock()
    bar = progress.LineProgress(None, unit_name="image", interval_s=0, stream=out,
                                clock=clock)
    bar.add(1)
    clock.now = 5.0
    bar.add(1, values=[("mIoU", 0.0)])
    assert out.getvalue().splitlines() == ["image 1 0s", "image 2 5s, 5 s/image - mIoU: 0.0000"]


def test_keras_bar_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert isinstance(progress.progress_bar(10), progress.LineProgress)
    monkeypatch.setattr("sys.stdout", Tty())
    assert type(progress.progress_bar(10)).__name__ == "Progbar"
