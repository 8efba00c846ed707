"""Progress of a long loop: a bar on a terminal, a plain log line every hundred items elsewhere.

A bar redraws itself with carriage returns and escape codes: on a terminal that is what a user
wants to watch, in a log file or a pipe (CI, nohup, `2> log`) it is noise. So `Progress` draws a
tqdm bar only when its stream is a terminal, and otherwise logs one plain line every `every`
items and one when it ends. Light (no TensorFlow, tqdm only for a bar): any command can use it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO, TypeVar

PLAIN_EVERY = 100  # items between two plain lines
log = logging.getLogger(__name__)
T = TypeVar("T")


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is shown live to a user: an interactive terminal, or any stream inside a
    Jupyter kernel (whose cells draw bars as widgets); a closed or file-less stream is not."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """Counts the finished items of a known total, and shows it; use as a context manager.

    Args:
        total: how many items there are.
        description: what is being done, first on the bar or line ("prepare gtzan").
        unit: what an item is ("clip", "file").
        enabled: False shows nothing.
        stream: the stream a bar is drawn on, and whose being a terminal decides between the bar
            and the plain lines (default: sys.stderr).
        every: items between two plain lines.
        logger: where the plain lines go (at INFO).
    """

    def __init__(
        self,
        total: int,
        description: str,
        unit: str = "item",
        enabled: bool = True,
        stream: TextIO | None = None,
        every: int = PLAIN_EVERY,
        logger: logging.Logger = log,
    ):
        stream = sys.stderr if stream is None else stream
        self.total, self.done, self.tallies = total, 0, {}
        self._description, self._unit, self._every, self._log = description, unit, every, logger
        self._plain = enabled and not is_terminal(stream)
        self._started = time.monotonic()
        self._stack = contextlib.ExitStack()
        self._bar = None
        if enabled and not self._plain:
            from tqdm.auto import tqdm  # a widget in a notebook
            from tqdm.contrib.logging import logging_redirect_tqdm

            # log records are printed above the bar instead of through it
            self._stack.enter_context(logging_redirect_tqdm())
            self._bar = self._stack.enter_context(
                tqdm(total=total, desc=description, unit=unit, file=stream)
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, count: int = 1, **tallies: int) -> None:
        """`count` more items are finished; `tallies` (such as skipped=1) are added up and shown
        beside the count once not zero."""
        before, self.done = self.done, self.done + count
        for name, value in tallies.items():
            self.tallies[name] = self.tallies.get(name, 0) + value
        shown = {name: value for name, value in self.tallies.items() if value}
        if self._bar is not None:
            if shown:
                self._bar.set_postfix(shown, refresh=False)
            self._bar.update(count)
        elif (
            self._plain
            and self.done < self.total
            and before // self._every < self.done // self._every
        ):
            self._log.info("%s", self._line())

    def close(self) -> None:
        """Closes the bar, or logs the final plain line (once)."""
        if self._plain:
            self._plain = False
            self._log.info("%s", self._line(final=True))
        self._stack.close()

    def _line(self, final: bool = False) -> str:
        """'prepare gtzan: 200/1000 clips (20%), 8.1 clips/s, 1:39 left, skipped 2'; the final
        line gives the time taken instead of the time left."""
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.done // self.total if self.total else 100
        parts = [f"{self._description}: {self.done}/{self.total} {self._unit}s ({percent}%)"]
        parts.append(f"{rate:.1f} {self._unit}s/s")
        if final:
            parts.append(f"{_clock(elapsed)} taken")
        elif rate > 0:
            parts.append(f"{_clock((self.total - self.done) / rate)} left")
        parts += [f"{name} {value}" for name, value in self.tallies.items() if value]
        return ", ".join(parts)


def _clock(seconds: float) -> str:
    """'1:05:09' or '5:09' for a duration in seconds."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def tracked(items: Sequence[T], description: str, unit: str, enabled: bool = True) -> Iterator[T]:
    """Yields `items` one by one, counting each as finished when the next is asked for."""
    with Progress(len(items), description, unit, enabled) as progress:
        for item in items:
            yield item
            progress.update()


def keras_verbosity(enabled: bool, stream: TextIO | None = None) -> int:
    """The `verbose` of Keras's `fit`/`predict`: its animated bar (1) on a terminal, one line per
    epoch (2) in files and pipes, where the bar's escape codes and backspaces would be noise, or
    nothing (0). Keras writes to stdout."""
    if not enabled:
        return 0
    return 1 if is_terminal(sys.stdout if stream is None else stream) else 2
