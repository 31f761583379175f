"""Checks of settings shared by the Python API and the command line, run before any work starts.

Each raises :class:`sidkit.errors.ConfigError` naming the setting (``where``: an argument name in the
API, an option such as ``--seed`` from the CLI) and the range it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sidkit.errors import ConfigError

#: Seeds are 0 .. 2^32 - 1 (numpy's and scikit-learn's range); derived seeds (seed + 1, seed * k + level)
#: stay far inside the 64 bits that torch takes.
MAX_SEED = 2**32 - 1
#: Semantic IDs are short sequences; past 64 levels even 2 codes a level outgrow a 64-bit id.
MAX_LEVELS = 64
#: A size or count beyond this cannot be allocated (and past int64 cannot even be passed to numpy / torch).
MAX_SIZE = 2**31 - 1


def check_seed(seed: Any, *, where: str = "seed") -> int:
    """``seed`` as an int in ``[0, MAX_SEED]``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED} (2^32 - 1), got {_shown(seed)}",
                          where=where, fix="pass a seed such as 0, 1, 2")
    return int(seed)


def check_int(value: Any, *, where: str, low: int = 1, high: int = MAX_SIZE, fix: str | None = None) -> int:
    """``value`` as an int in ``[low, high]``."""
    name = where.lstrip('-').replace('-', '_')
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if is_int and value > high == MAX_SIZE:  # say why there is a ceiling at all
        raise ConfigError(f"{name} = {_shown(value)} is too large: past {MAX_SIZE} the arrays it sizes cannot be "
                          "held in memory", where=where, fix=f"pass a smaller {name} (at most {MAX_SIZE})")
    if not is_int or not low <= value <= high:
        span = f"at least {low}" if high == MAX_SIZE else f"from {low} to {high}"
        raise ConfigError(f"{name} must be an integer {span}, got {_shown(value)}",
                          where=where, fix=fix or f"pass an integer {span}")
    return int(value)


def check_float(value: Any, *, where: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, fix: str | None = None) -> float:
    """``value`` as a finite float within the bounds (open or closed)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan
    if ok and math.isfinite(number):
        ok = (low is None or (number > low if low_open else number >= low)) and \
             (high is None or (number < high if high_open else number <= high))
    else:
        ok = False
    if not ok:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high:g}")
        span = " and ".join(parts) or "finite"
        raise ConfigError(f"{where.lstrip('-').replace('-', '_')} must be a finite number {span}, got {_shown(value)}",
                          where=where, fix=fix or f"pass a number {span}")
    return number


def level_sizes(levels: Any, codebook_size: Any, *, where: str = "levels") -> tuple[int, ...]:
    """Codebook sizes per level from ``levels`` and one size (or one per level): 1 .. MAX_LEVELS
    levels, each of 2 .. MAX_SIZE codes (a level of one code carries no information)."""
    count = check_int(levels, where=where, high=MAX_LEVELS,
                      fix=f"use 1 to {MAX_LEVELS} levels (Semantic IDs usually have 2 to 8)")
    if isinstance(codebook_size, (int, np.integer)) and not isinstance(codebook_size, bool):
        sizes: list[Any] = [codebook_size] * count
    elif isinstance(codebook_size, Sequence) and not isinstance(codebook_size, (str, bytes)):
        sizes = list(codebook_size)
    else:
        raise ConfigError(f"codebook_size must be an integer or one integer per level, got {_shown(codebook_size)}",
                          where="codebook_size", fix="give one int for all levels or one per level")
    if len(sizes) != count:
        raise ConfigError(f"{len(sizes)} codebook sizes for {count} levels", where="codebook_size",
                          fix="give one int for all levels or one per level")
    return tuple(check_int(size, where="codebook_size", low=2,
                           fix="use at least 2 codes per level (a level of 1 code carries no information)")
                 for size in sizes)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
