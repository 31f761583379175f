"""Cells and markdown tables shared by the comparison and ranking summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def format_value(value: Any, fmt: str) -> str:
    """``fmt.format(value)``, or "-" for a missing (None or NaN) value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
