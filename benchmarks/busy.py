"""A second process busy on one core, for benchmarks that measure on a loaded machine."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def busy_core(enabled: bool = True) -> Iterator[None]:
    """Within the block, a Python process spins on one core (nothing when ``enabled`` is False)."""
    if not enabled:
        yield
        return
    loader = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        loader.kill()
        loader.wait()
