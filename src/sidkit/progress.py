"""Progress on long work: a bar on a terminal, plain log lines elsewhere, or silence when asked.

Three modes, chosen per bar from its ``enabled`` argument, then the process-wide choice
(:func:`set_progress`, what the CLI's ``--progress/--no-progress`` sets), then the environment:

- **bar** (rich: rate, elapsed, ETA) on stderr: when stderr is a terminal, or when forced on
  (``enabled=True``, ``--progress``, ``SIDKIT_PROGRESS=1``), then drawn even into a file or pipe.
- **log lines**: when nothing was chosen and stderr is not a terminal (a job log, ``2> file``):
  one plain line to stderr every :data:`LOG_EVERY_SECONDS` while the work lasts
  (``sidkit: encode 3/8 (38%), 0:00:20 elapsed, about 0:00:33 left``) and a closing line, so that
  long work is never silent and short work prints nothing.
- **silent**: ``enabled=False``, ``--no-progress`` or ``SIDKIT_PROGRESS=0``.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
Mode = Literal["bar", "log", "silent"]

LOG_EVERY_SECONDS = 20.0
"""Seconds between two plain progress lines (and before the first) when stderr is not a terminal."""

_chosen: bool | None = None  # set_progress(): the process-wide choice; None = automatic


def set_progress(enabled: bool | None) -> None:
    """Choose progress for this process: True (bars, even off a terminal), False (silent), None (automatic)."""
    global _chosen
    _chosen = enabled


def progress_mode(requested: bool | None = None) -> Mode:
    """How progress shows: ``requested``, else :func:`set_progress`'s choice, else SIDKIT_PROGRESS, else
    a bar on a terminal and log lines elsewhere."""
    for choice in (requested, _chosen, _environment_choice()):
        if choice is not None:
            return "bar" if choice else "silent"
    return "bar" if sys.stderr.isatty() else "log"


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether a bar draws (see :func:`progress_mode`); False in the log-line and silent modes."""
    return progress_mode(requested) == "bar"


def _environment_choice() -> bool | None:
    value = os.environ.get("SIDKIT_PROGRESS", "").strip()
    return {"0": False, "1": True}.get(value)


def make_progress() -> Progress:
    # Forced bars off a terminal still draw (as tqdm does): the user asked for them.
    console = Console(stderr=True, force_terminal=True if not sys.stderr.isatty() else None)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "working",
          enabled: bool | None = None) -> Iterator[T]:
    """Iterate with progress (see the module docstring); plain iteration when silent."""
    if progress_mode(enabled) == "silent":
        yield from iterable
        return
    with Bar(description, total or 0, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.advance()


class Bar:
    """``with Bar("encode", total) as bar: bar.advance(n); bar.note(text)``; see the module docstring.

    With ``rate_unit`` (e.g. ``"rows"``) the bar's text shows the rate, ``1.23M rows/s``; otherwise
    :meth:`note` sets the text (a training loop shows its losses there).
    """

    def __init__(self, description: str, total: int, *, enabled: bool | None = None,
                 rate_unit: str | None = None) -> None:
        self._mode = progress_mode(enabled)
        self._progress = make_progress() if self._mode == "bar" else None
        self._description = description
        self._total = total
        self._rate_unit = rate_unit
        self._task: Any = None
        self._started = time.perf_counter()
        self._done = 0
        self._info = ""
        self._logger: _LogLines | None = None

    def __enter__(self) -> Bar:
        self._started = time.perf_counter()
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task(self._description, total=self._total, info="")
        elif self._mode == "log":
            self._logger = _LogLines(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
        if self._logger is not None:
            self._logger.stop(finished=exc[0] is None)

    @property
    def enabled(self) -> bool:
        """Whether the bar draws (callers skip work that only feeds its text when it does not)."""
        return self._progress is not None

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        if self._rate_unit is not None:
            seconds = max(time.perf_counter() - self._started, 1e-9)
            self._info = f"{format_rate(self._done / seconds)} {self._rate_unit}/s"
        if self._progress is None:
            return
        if self._rate_unit is None:
            self._progress.advance(self._task, steps)
        else:
            self._progress.update(self._task, advance=steps, info=self._info)

    def note(self, info: str) -> None:
        self._info = info
        if self._progress is not None:
            self._progress.update(self._task, info=info)

    def status_line(self) -> str:
        """One plain line: done / total, share, elapsed, time left, and the note or rate."""
        elapsed = time.perf_counter() - self._started
        parts = [f"sidkit: {self._description} {self._done:,}"]
        if self._total:
            share = self._done / self._total
            parts[0] += f"/{self._total:,} ({share:.0%})"
        parts.append(f"{_clock(elapsed)} elapsed")
        if self._total and 0 < self._done < self._total:
            parts.append(f"about {_clock(elapsed * (self._total - self._done) / self._done)} left")
        line = ", ".join(parts)
        return f"{line}; {self._info}" if self._info else line


class _LogLines:
    """A daemon thread that prints ``bar.status_line()`` to stderr every LOG_EVERY_SECONDS.

    A thread, not a check in ``advance``: one step of the work (a k-means level, loading a model)
    can outlast many intervals.
    """

    def __init__(self, bar: Bar) -> None:
        self._bar = bar
        self._stop = threading.Event()
        self._printed = False
        self._thread = threading.Thread(target=self._run, name="sidkit-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(LOG_EVERY_SECONDS):
            self._print(self._bar.status_line())

    def _print(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        self._printed = True

    def stop(self, *, finished: bool) -> None:
        self._stop.set()
        self._thread.join()
        if self._printed:  # close what was opened; short work stays silent
            elapsed = _clock(time.perf_counter() - self._bar._started)
            outcome = "done" if finished else "stopped"
            self._print(f"sidkit: {self._bar._description} {outcome} after {elapsed}")


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def format_rate(rate: float) -> str:
    """1234567.0 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.2f}{unit}"
    return f"{rate:.0f}"
