"""The thread policy (sidkit.threads) and the row-block workers (sidkit.workers)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sidkit.errors import ConfigError
from sidkit.threads import check_threads, default_threads, set_threads, single_thread, usable_cpus, wait_policy
from sidkit.workers import MIN_BLOCK_ROWS, block_rows, blocks, in_worker, map_blocks


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                          check=True, timeout=120)


def test_importing_sidkit_first_makes_openmp_threads_sleep_instead_of_spinning() -> None:
    # The runtime itself reports what it read at load time (OMP_DISPLAY_ENV prints it to stderr).
    code = "import sidkit, torch; torch.ones(4).sum(); print(sidkit.threads.wait_policy().passive)"
    run = _python(code, OMP_DISPLAY_ENV="VERBOSE")
    assert run.stdout.strip() == "True"
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in run.stderr
    assert "GOMP_SPINCOUNT = '0'" in run.stderr


def test_torch_imported_first_is_reported_as_not_in_effect() -> None:
    run = _python("import torch, sidkit; p = sidkit.threads.wait_policy(); print(p.set_by_sidkit, p.in_effect)",
                  OMP_DISPLAY_ENV="VERBOSE")
    assert run.stdout.split() == ["True", "False"]
    assert "GOMP_SPINCOUNT = '0'" not in run.stderr  # the runtime kept its spinning default


def test_a_wait_policy_the_user_set_is_kept() -> None:
    run = _python("import sidkit, os; p = sidkit.threads.wait_policy(); print(p.value, p.set_by_sidkit, "
                  "os.environ['OMP_WAIT_POLICY'])", OMP_WAIT_POLICY="ACTIVE")
    assert run.stdout.split() == ["ACTIVE", "False", "ACTIVE"]


def test_this_test_process_runs_passive() -> None:
    assert wait_policy().value == "PASSIVE" or "OMP_WAIT_POLICY" in os.environ


def test_default_threads_follow_omp_num_threads_else_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    assert default_threads() == (usable_cpus(), "cores")
    monkeypatch.delenv("OMP_NUM_THREADS")
    count, source = default_threads()
    assert source == "cores" and 1 <= count <= len(os.sched_getaffinity(0))


def test_set_threads_sets_torch_and_rejects_bad_counts() -> None:
    before = torch.get_num_threads()
    try:
        settings = set_threads(1)
        assert torch.get_num_threads() == 1 and settings.threads == 1 and settings.source == "argument"
        assert "1 thread (argument)" in settings.describe()
    finally:
        torch.set_num_threads(before)
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="threads must be a positive integer"):
            check_threads(bad)


def test_single_thread_restores_the_count() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_blocks_cover_the_rows_and_do_not_depend_on_threads() -> None:
    assert blocks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert block_rows(100, 16384) == MIN_BLOCK_ROWS
    assert block_rows(10**6, 16384) == 16384
    assert block_rows(10**6, 500) == 500


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_map_blocks_returns_results_in_block_order(threads: int) -> None:
    spans = blocks(1000, 37)
    got = map_blocks(lambda a, b: (a, b, in_worker()), spans, threads=threads)
    assert [(a, b) for a, b, _ in got] == spans
    assert all(inside for *_, inside in got) == (threads > 1)


def test_map_blocks_restores_threads_and_keeps_grad_mode() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        with torch.no_grad():
            map_blocks(lambda a, b: seen.append((torch.is_grad_enabled(), torch.get_num_threads())), blocks(8, 1))
        assert seen == [(False, 1)] * 8  # one torch thread per block, caller's grad mode
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_map_blocks_reraises_the_first_error_and_stops() -> None:
    ran = []

    def block(start: int, stop: int) -> None:
        ran.append(start)
        if start == 3:
            raise ValueError("bad block 3")

    with pytest.raises(ValueError, match="bad block 3"):
        map_blocks(block, blocks(100, 1), threads=2)
    assert len(ran) < 100


def test_rq_kmeans_fit_and_codes_do_not_depend_on_the_thread_count() -> None:
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 16)).astype(np.float32)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = RQKMeans(levels=2, codebook_size=16, max_iter=5, refine_passes=1, seed=3).fit(x)
            results.append((model.encode(x).codes, [c.clone() for c in model.codebooks]))
    finally:
        torch.set_num_threads(before)
    (codes_1, books_1), (codes_2, books_2) = results
    assert np.array_equal(codes_1, codes_2)
    assert all(torch.equal(a, b) for a, b in zip(books_1, books_2, strict=True))
