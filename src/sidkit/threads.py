"""How sidkit uses CPU threads: how many, and how idle threads wait.

Two settings decide whether a second thread helps or hurts a CPU job:

- **Intra-op threads**, torch's thread pool size (and numpy's BLAS pool). ``set_threads(n)`` sets
  both; ``default_threads()`` is what sidkit uses when nothing is given: ``OMP_NUM_THREADS`` if set,
  else the physical cores this process may run on (its CPU affinity and any cgroup CPU quota).
- **The OpenMP wait policy.** GNU OpenMP, the runtime that torch's Linux wheels ship, by default lets
  a thread that finished its share of a parallel region spin for about 300,000 iterations before it
  sleeps. Between torch ops there is serial Python work; when it is shorter than the spin, the second
  thread spins through it, which doubles the job's CPU time and takes a core from everything else on
  the machine. With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads sleep at once (the spin count is 0).
  Importing sidkit sets it when the variable is unset. The runtime reads it once, when it loads (at
  ``import torch``), so it takes effect only if sidkit is imported before torch (the ``sidkit``
  command always is); :func:`wait_policy` says whether it did. Child processes inherit it either way.

Work that sidkit splits by rows itself (encoding, k-means) runs on :mod:`sidkit.workers`, which
hands blocks of rows to threads as they become free instead of splitting each op in equal halves.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidkit.errors import ConfigError

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
SIDKIT_WAIT_POLICY = "PASSIVE"
# Shared-object names of the OpenMP runtimes torch, numpy and faiss wheels bring.
_OPENMP_RUNTIMES = ("libgomp", "libiomp", "libomp")


@dataclass(frozen=True)
class WaitPolicy:
    """The OpenMP wait policy of this process.

    Attributes:
        value: the ``OMP_WAIT_POLICY`` value ("PASSIVE", "ACTIVE", or None when unset).
        set_by_sidkit: True if sidkit set it at import (it was unset before).
        in_effect: True if the value was in the environment before the OpenMP runtime loaded, so the
            runtime uses it; False if the runtime had loaded first (torch imported before sidkit).
    """

    value: str | None
    set_by_sidkit: bool
    in_effect: bool

    @property
    def passive(self) -> bool:
        """Whether waiting OpenMP threads of this process sleep instead of spinning."""
        return self.in_effect and (self.value or "").strip().upper() == "PASSIVE"


@dataclass(frozen=True)
class ThreadSettings:
    """The thread settings of this process after :func:`set_threads`.

    Attributes:
        threads: torch intra-op threads (and numpy BLAS threads where they could be set).
        source: where the number came from: "argument", "OMP_NUM_THREADS" or "cores".
        wait_policy: see :class:`WaitPolicy`.
        blas_limited: True if numpy's BLAS pool was limited too (needs threadpoolctl).
    """

    threads: int
    source: str
    wait_policy: WaitPolicy
    blas_limited: bool

    def describe(self) -> str:
        """One line for logs: threads, where the number came from, and the wait policy."""
        policy = self.wait_policy
        wait = ("passive (idle threads sleep)" if policy.passive else
                f"{policy.value or 'runtime default'} (idle threads spin)" if policy.in_effect else
                "not applied: torch was imported before sidkit")
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({self.source}); OpenMP wait policy {wait}"


def _openmp_loaded() -> bool:
    """Whether an OpenMP runtime is already mapped into this process (Linux; elsewhere: torch imported)."""
    maps = Path("/proc/self/maps")
    try:
        text = maps.read_text()
    except OSError:
        return "torch" in sys.modules
    return any(name in text for name in _OPENMP_RUNTIMES)


def _install_wait_policy() -> WaitPolicy:
    loaded = _openmp_loaded()
    current = os.environ.get(WAIT_POLICY_VARIABLE)
    if current is not None:
        return WaitPolicy(current, set_by_sidkit=False, in_effect=True)
    os.environ[WAIT_POLICY_VARIABLE] = SIDKIT_WAIT_POLICY
    return WaitPolicy(SIDKIT_WAIT_POLICY, set_by_sidkit=True, in_effect=not loaded)


_WAIT_POLICY = _install_wait_policy()


def wait_policy() -> WaitPolicy:
    """The OpenMP wait policy of this process, as found when sidkit was first imported."""
    return _WAIT_POLICY


def usable_cpus() -> int:
    """Physical cores this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(os.cpu_count() or 1))
    cores = _physical_cores(allowed)
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota is not None else cores)


def _physical_cores(cpus: list[int]) -> int:
    """Distinct (package, core) pairs among ``cpus``: hyper-threads share one core's FMA units."""
    seen = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            seen.add(((topology / "physical_package_id").read_text().strip(),
                      (topology / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return len(seen) or len(cpus)


def _cgroup_cpu_quota() -> int | None:
    """CPUs allowed by a cgroup quota (v2 cpu.max or v1 cfs quota), rounded up; None if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return math.ceil(int(quota) / int(period))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return math.ceil(quota_us / period_us) if quota_us > 0 and period_us > 0 else None


def default_threads() -> tuple[int, str]:
    """The thread count sidkit uses when none is given, and its source.

    ``OMP_NUM_THREADS`` (its first value) when set to a positive integer, else :func:`usable_cpus`.
    """
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if text.isdigit() and int(text) > 0:
        return int(text), "OMP_NUM_THREADS"
    return usable_cpus(), "cores"


def check_threads(threads: Any, where: str = "threads") -> int | None:
    """``threads`` as a positive int (or None for the default); ConfigError otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}", where=where,
                          fix="use for example 1 on a shared machine, or leave it unset for the core count")
    return threads


def set_threads(threads: int | None = None) -> ThreadSettings:
    """Use ``threads`` CPU threads in this process (None: :func:`default_threads`).

    Sets torch's intra-op threads and, where threadpoolctl is installed, numpy's BLAS threads.
    Returns the settings in effect.
    """
    count = check_threads(threads)
    source = "argument"
    if count is None:
        count, source = default_threads()
    import torch

    torch.set_num_threads(count)
    return ThreadSettings(count, source, _WAIT_POLICY, _limit_blas(count))


def _limit_blas(threads: int) -> bool:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=threads, user_api="blas")  # stays in force: the object is not used as a context
    return True


def current_threads() -> int:
    """torch's intra-op thread count in this thread."""
    import torch

    return int(torch.get_num_threads())


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one torch thread, then restore the count.

    For many small sequential steps (k-means++ seeding: thousands of thin ops): each op's thread
    barrier costs more than the second thread saves, and on a busy machine far more.
    """
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
