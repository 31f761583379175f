"""Data-parallel training: a 2-process torchrun run of RQ-VAE matches the single-process run.

The global batch is split between the ranks and gradients are averaged by rows, so the two runs
take the same steps up to float summation order; k-means initialization runs on rank 0 only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from sidkit.distributed import DistributedContext, context
from sidkit.tokenizers.base import load_tokenizer

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from sidkit import distributed

    parallel = distributed.init_from_env()
    from sidkit.tokenizers.rq_vae import RQVAE

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, 16))
    x = (centers[rng.integers(0, 12, 600)] + 0.3 * rng.normal(size=(600, 16))).astype(np.float32)
    # float32: bfloat16 rounding differs between a batch of 70 and two of 35 by more than the tolerance
    tokenizer = RQVAE(levels=2, codebook_size=8, latent_dim=4, hidden_dims=(16,), epochs=4, batch_size=70,
                      patience=None, bfloat16=False, progress=False, seed=3)
    tokenizer.fit(x)
    weights = torch.cat([v.float().reshape(-1) for v in tokenizer.net.state_dict().values()])
    result = {"world": parallel.world_size, "rank": parallel.rank,
              "train": [epoch.train["loss"] for epoch in tokenizer.history.epochs],
              "validation": [epoch.validation for epoch in tokenizer.history.epochs],
              "perplexity": [list(epoch.perplexity) for epoch in tokenizer.history.epochs],
              "weights": weights.tolist()}
    with open(f"{sys.argv[1]}.{parallel.rank}.json", "w") as handle:
        json.dump(result, handle)
    distributed.shutdown()
""")


RANKER_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from sidkit import distributed

    parallel = distributed.init_from_env()
    sys.path.insert(0, sys.argv[2])
    import test_ranking_training as fixtures
    from dataclasses import replace
    from sidkit.ranking.training import TrainConfig, train_model

    model = fixtures._model("mmoe", replace(fixtures.SMALL, dropout=0.0))
    result = train_model(model, fixtures._data(900), TrainConfig(epochs=3, batch_size=100, learning_rate=1e-2,
                                                                  patience=3, progress=False))
    weights = torch.cat([v.float().reshape(-1) for v in model.state_dict().values()])
    with open(f"{sys.argv[1]}.{parallel.rank}.json", "w") as handle:
        json.dump({"train": [r.train_loss for r in result.history],
                   "auc": [r.valid_mean_auc for r in result.history], "weights": weights.tolist()}, handle)
    distributed.shutdown()
""")


TEARDOWN_ABORT = "terminate called without an active exception"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: list[str], tmp_path) -> None:
    env = {**os.environ, "SIDKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr:
        # gloo's teardown race (gloo issue 155) survives even sidkit's store rendezvous on rare
        # runs: the job's work is done and only the exit aborts. Say so, and run the job once more.
        warnings.warn(f"a rank aborted at gloo teardown; rerunning once: {done.stderr[-500:]}", stacklevel=2)
        if "--master_port" in command:
            command = list(command)
            command[command.index("--master_port") + 1] = str(_free_port())
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_process_rq_vae_matches_one_process(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    _run([sys.executable, str(script), str(tmp_path / "single")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port()), str(script), str(tmp_path / "ddp")], tmp_path)
    single = json.loads((tmp_path / "single.0.json").read_text())
    ranks = [json.loads((tmp_path / f"ddp.{rank}.json").read_text()) for rank in (0, 1)]
    assert single["world"] == 1 and [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # the ranks stayed in step
    assert ranks[0]["train"] == ranks[1]["train"] and ranks[0]["perplexity"] == ranks[1]["perplexity"]
    np.testing.assert_allclose(ranks[0]["train"], single["train"], rtol=1e-3)
    np.testing.assert_allclose(ranks[0]["validation"], single["validation"], rtol=1e-3)
    np.testing.assert_allclose(ranks[0]["perplexity"], single["perplexity"], rtol=1e-3)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_cli_fit_under_torchrun_saves_once_and_exits_cleanly(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", (rng.normal(size=(8, 16))[rng.integers(0, 8, 400)]
                                 + 0.3 * rng.normal(size=(400, 16))).astype(np.float32))
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port()), "-m", "sidkit.cli", "fit", "--method", "rq-vae", "--levels", "2",
          "--codebook-size", "8", "--latent-dim", "4", "--epochs", "2", "--batch-size", "64",
          "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "model")], tmp_path)
    model = load_tokenizer(tmp_path / "model")
    assert model.history is not None and len(model.history) == 2
    assert model.encode(np.load(tmp_path / "x.npy")).codes.shape == (400, 2)


def test_without_torchrun_everything_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = context()
    assert single == DistributedContext() and single.is_main and not single.enabled
    rows = torch.arange(5)
    local, share = single.shard(rows)
    assert local is rows and share == 5
    assert single.run_on_main(lambda: 7) == 7
    assert torch.equal(single.sum(torch.ones(3)), torch.ones(3))


def test_shards_cover_a_batch_and_rank_zero_never_starves():
    rows = torch.arange(7)
    shards = [DistributedContext(rank, 3, rank, "gloo").shard(rows) for rank in range(3)]
    assert torch.equal(torch.cat([local for local, _ in shards]), rows)
    assert [share for _, share in shards] == [3, 2, 2]
    tiny = [DistributedContext(rank, 3, rank, "gloo").shard(torch.arange(1)) for rank in range(3)]
    assert [share for _, share in tiny] == [1, 0, 0] and all(len(local) == 1 for local, _ in tiny)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_process_ranker_matches_one_process(tmp_path):
    tests = os.path.dirname(os.path.abspath(__file__))
    script = tmp_path / "rank.py"
    script.write_text(RANKER_SCRIPT)
    _run([sys.executable, str(script), str(tmp_path / "single"), tests], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port()), str(script), str(tmp_path / "ddp"), tests], tmp_path)
    single = json.loads((tmp_path / "single.0.json").read_text())
    ranks = [json.loads((tmp_path / f"ddp.{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    np.testing.assert_allclose(ranks[0]["train"], single["train"], rtol=1e-4)
    np.testing.assert_allclose(ranks[0]["auc"], single["auc"], rtol=1e-4)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_store_rendezvous_waits_for_every_rank_and_names_a_missing_one():
    import threading

    from sidkit.distributed import store_rendezvous
    from sidkit.errors import SidkitError

    store = torch.distributed.HashStore()
    passed: list[int] = []

    def rank(r: int) -> None:
        store_rendezvous(store, "meet", 3, r, timeout=dt.timedelta(seconds=20))
        passed.append(r)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for thread in threads:
        thread.start()
    threads[0].join(0.3)
    assert passed == []  # two of three arrived: nobody may leave yet
    rank(2)
    for thread in threads:
        thread.join(20)
    assert sorted(passed) == [0, 1, 2]
    alone = torch.distributed.HashStore()
    with pytest.raises(SidkitError, match="only 1 of 2 ranks reached 'late/arrived'"):
        store_rendezvous(alone, "late", 2, 0, timeout=dt.timedelta(seconds=0.2))
