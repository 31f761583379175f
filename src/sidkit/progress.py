"""Progress bars for long work (rich), silent when disabled or when output is not a terminal."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_enabled(requested: bool | None = None) -> bool:
    """Show bars when asked, else when stderr is a terminal and SIDKIT_PROGRESS is not 0."""
    if requested is not None:
        return requested
    if os.environ.get("SIDKIT_PROGRESS") == "0":
        return False
    return sys.stderr.isatty()


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "working",
          enabled: bool | None = None) -> Iterator[T]:
    """Iterate with a progress bar (rate and ETA) when enabled; otherwise plain iteration."""
    if not progress_enabled(enabled):
        yield from iterable
        return
    with make_progress() as bar:
        task = bar.add_task(description, total=total, info="")
        for item in iterable:
            yield item
            bar.advance(task)


class Bar:
    """``with Bar("encode", total) as bar: bar.advance(n); bar.note(text)``; silent when disabled.

    With ``rate_unit`` (e.g. ``"rows"``) the bar's text shows the rate, ``1.23M rows/s``; otherwise
    :meth:`note` sets the text (a training loop shows its losses there).
    """

    def __init__(self, description: str, total: int, *, enabled: bool | None = None,
                 rate_unit: str | None = None) -> None:
        self._progress = make_progress() if progress_enabled(enabled) else None
        self._description = description
        self._total = total
        self._rate_unit = rate_unit
        self._task: Any = None
        self._started = time.perf_counter()
        self._done = 0

    def __enter__(self) -> Bar:
        self._started = time.perf_counter()
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task(self._description, total=self._total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    @property
    def enabled(self) -> bool:
        """Whether the bar draws (callers skip work that only feeds its text when it does not)."""
        return self._progress is not None

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        if self._progress is None:
            return
        if self._rate_unit is None:
            self._progress.advance(self._task, steps)
        else:
            seconds = max(time.perf_counter() - self._started, 1e-9)
            rate = f"{format_rate(self._done / seconds)} {self._rate_unit}/s"
            self._progress.update(self._task, advance=steps, info=rate)

    def note(self, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, info=info)


def format_rate(rate: float) -> str:
    """1234567.0 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.2f}{unit}"
    return f"{rate:.0f}"
