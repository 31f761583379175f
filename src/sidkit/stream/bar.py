"""A progress bar counted in rows, with the rate (rows per second) and the time left."""

from __future__ import annotations

import time
from typing import Any

from sidkit.progress import make_progress, progress_enabled


class RowBar:
    """``with RowBar("encode", total) as bar: bar.advance(rows)``; silent when progress is off."""

    def __init__(self, description: str, total: int, *, enabled: bool | None = None) -> None:
        self._progress = make_progress() if progress_enabled(enabled) else None
        self._description = description
        self._total = total
        self._task: Any = None
        self._started = time.perf_counter()
        self._done = 0

    def __enter__(self) -> RowBar:
        self._started = time.perf_counter()
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task(self._description, total=self._total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def advance(self, rows: int) -> None:
        self._done += rows
        if self._progress is not None:
            seconds = max(time.perf_counter() - self._started, 1e-9)
            self._progress.update(self._task, advance=rows, info=f"{format_rate(self._done / seconds)} rows/s")


def format_rate(rate: float) -> str:
    """1234567.0 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.2f}{unit}"
    return f"{rate:.0f}"
