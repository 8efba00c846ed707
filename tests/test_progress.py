"""Progress: a bar on a terminal only; plain log lines every hundred items in files and pipes."""

from __future__ import annotations

import io
import logging
import sys

from musicnext_tf.progress import Progress, _clock, is_terminal, keras_verbosity, tracked

CONTROL = ("\r", "\x1b", "\b")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _plain_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "musicnext_tf.progress"]


def test_a_pipe_or_file_gets_a_plain_line_every_hundred_items_and_a_final_one(caplog):
    caplog.set_level(logging.INFO, logger="musicnext_tf.progress")
    stream = io.StringIO()  # what a file, a pipe or a CI log is: not a terminal
    with Progress(250, "prepare demo", "clip", stream=stream) as progress:
        for item in range(250):
            progress.update(skipped=int(item in (5, 150)))
    lines = _plain_lines(caplog)
    assert [line.split(" (")[0] for line in lines] == [
        "prepare demo: 100/250 clips",
        "prepare demo: 200/250 clips",
        "prepare demo: 250/250 clips",
    ]
    assert "(40%)" in lines[0] and " left, skipped 1" in lines[0]
    assert "(80%)" in lines[1] and lines[1].endswith("skipped 2")
    assert " taken, skipped 2" in lines[2] and "left" not in lines[2]
    assert stream.getvalue() == ""  # nothing drawn
    assert not any(code in "".join(lines) for code in CONTROL)


def test_no_repeated_line_when_the_end_falls_on_the_interval_and_a_stop_is_said(caplog):
    caplog.set_level(logging.INFO, logger="musicnext_tf.progress")
    with Progress(4, "job", every=2, stream=io.StringIO()) as progress:
        progress.update(3)  # crossing a multiple of `every` in one step still gives its line
        progress.update()
    assert [line.split(" (")[0] for line in _plain_lines(caplog)] == [
        "job: 3/4 items",
        "job: 4/4 items",
    ]
    caplog.clear()
    with Progress(10, "job", every=2, stream=io.StringIO()) as progress:
        progress.update()
    (final,) = _plain_lines(caplog)
    assert final.startswith("job: 1/10 items (10%)") and "taken" in final  # stopped early


def test_a_terminal_gets_a_bar_and_no_lines(caplog):
    caplog.set_level(logging.INFO, logger="musicnext_tf.progress")
    terminal = FakeTerminal()
    with Progress(3, "prepare demo", "clip", stream=terminal) as progress:
        for _ in range(3):
            progress.update(skipped=1)
    drawn = terminal.getvalue()
    assert "\r" in drawn and "3/3" in drawn and "skipped=3" in drawn
    assert _plain_lines(caplog) == []


def test_disabled_shows_nothing(caplog):
    caplog.set_level(logging.INFO, logger="musicnext_tf.progress")
    for stream in (io.StringIO(), FakeTerminal()):
        with Progress(300, "quiet", enabled=False, stream=stream) as progress:
            progress.update(300)
        assert stream.getvalue() == ""
    assert _plain_lines(caplog) == []


def test_is_terminal_and_clock():
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(io.StringIO()) and not is_terminal(closed) and not is_terminal(None)
    assert is_terminal(FakeTerminal())
    assert _clock(309.4) == "5:09" and _clock(3909) == "1:05:09" and _clock(0) == "0:00"


def test_tracked_yields_every_item_and_counts_it(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="musicnext_tf.progress")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert list(tracked(list(range(150)), "predict", "file")) == list(range(150))
    assert [line.split(" (")[0] for line in _plain_lines(caplog)] == [
        "predict: 100/150 files",
        "predict: 150/150 files",
    ]


def test_keras_draws_its_bar_on_a_terminal_only():
    assert keras_verbosity(True, FakeTerminal()) == 1  # the animated bar
    assert keras_verbosity(True, io.StringIO()) == 2  # one line per epoch
    assert keras_verbosity(False, FakeTerminal()) == 0


def test_a_notebook_gets_bars(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert is_terminal(io.StringIO()) and keras_verbosity(True, io.StringIO()) == 1
