"""Progress of long work outside Lightning's loops (backbone pre-training, feature extraction).

In a terminal it is a rich progress bar; otherwise (a sweep's ``log.txt``, CI) rich draws nothing until
the end, so plain lines are printed instead: at the start, about every 10 % or 30 s, and at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import Progress

LINE_INTERVAL_S = 30.0


class _Lines:
    """Plain progress lines for output that is not a terminal."""

    def __init__(self, description: str, total: int, stream: TextIO) -> None:
        self.description, self.total, self.stream = description, max(total, 1), stream
        self.done = 0
        self.last_time = time.monotonic()
        self.last_tenth = 0
        self._print()

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        self.done += steps
        if description:
            self.description = description
        tenth = 10 * self.done // self.total
        now = time.monotonic()
        if tenth > self.last_tenth or now - self.last_time >= LINE_INTERVAL_S or self.done >= self.total:
            self.last_tenth, self.last_time = tenth, now
            self._print()

    def _print(self) -> None:
        percent = 100 * self.done / self.total
        print(f"{self.description}: {self.done}/{self.total} ({percent:.0f} %)", file=self.stream, flush=True)


class _Bar:
    """A rich progress bar task."""

    def __init__(self, progress: Progress, description: str, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task(description, total=total)

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        if description:
            self.progress.update(self.task, advance=steps, description=description)
        else:
            self.progress.update(self.task, advance=steps)


@contextmanager
def progress(description: str, total: int, stream: TextIO | None = None) -> Iterator[_Bar | _Lines]:
    """A progress reporter with ``advance(steps=1, description=None)``: a bar in a terminal, else lines.

    Args:
        description: what is being done.
        total: number of steps.
        stream: where to write (default stderr, as Lightning's progress bar).
    """
    stream = stream or sys.stderr
    if stream.isatty():
        with Progress(console=Console(file=stream)) as bar:
            yield _Bar(bar, description, total)
    else:
        yield _Lines(description, total, stream)
