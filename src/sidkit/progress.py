"""Progress bars for long work (rich), silent when disabled or when output is not a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

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
