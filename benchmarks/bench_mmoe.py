"""Training speed of sidkit's MMoE against torch-rechub's MMOE at the same architecture and data.

Run: .venv/bin/python benchmarks/bench_mmoe.py                      (needs: pip install torch-rechub)
     .venv/bin/python benchmarks/bench_mmoe.py --rows 40000 --repeats 2     (quick)
     .venv/bin/python benchmarks/bench_mmoe.py --write-docs            (append the table to docs/benchmarks.md)

Both models see the same synthetic impressions: F user fields from one shared table, a candidate
item of T tokens, and a history of H items (T tokens each) from the same token table, pooled by mean.
Same embedding dim, experts, expert and tower sizes, batch normalization after every hidden layer
(torch-rechub's MLP always has it), no dropout, Adam, the same batch size. sidkit is configured with
torch-rechub's input (concatenated user fields, candidate, mean history: no product field).

Two comparisons, impressions per second of training (forward, backward, Adam step):
- model step: one hand-written loop for both, identical shuffled batches gathered by tensor indexing
  from the full arrays; this isolates the models. torch-rechub gets its token tensors pre-gathered
  (candidate (M, T), history (M, H*T)); sidkit gathers tokens from its item table inside the model.
- trainer epoch: each library's own training path over one epoch: sidkit ``train_model`` (its
  training pass, validation excluded) and torch-rechub ``MTLTrainer.train_one_epoch`` over its
  ``DataGenerator`` DataLoader (per-row dataset, default collation).
Measurements alternate between the libraries and report the best of ``--repeats`` (other jobs on a
shared machine only ever slow a run down); the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sidkit.features.types import ItemRepresentation
from sidkit.ranking.models import ModelConfig, MultiTaskRanker, build_model
from sidkit.ranking.training import TrainConfig, train_model
from sidkit.ranking.types import RankingData, RankingSplit

TASKS = ("click", "like")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Setup:
    rows: int
    items: int
    tokens: int
    table: int
    history: int
    users: int
    fields: int
    dim: int
    experts: int
    expert_dims: tuple[int, ...]
    tower_dims: tuple[int, ...]
    batch: int
    threads: int


def _split(setup: Setup, rows: int, rng: np.random.Generator) -> RankingSplit:
    item = rng.integers(0, setup.items, rows)
    user = rng.integers(0, setup.users, rows)
    user_features = np.stack([1 + user] + [1 + setup.users + (user + j) % 7 for j in range(1, setup.fields)], axis=1)
    history = rng.integers(0, setup.items, (rows, setup.history))
    lengths = rng.integers(0, setup.history + 1, rows)
    history[np.arange(setup.history)[None, :] >= lengths[:, None]] = setup.items  # padding item
    click = (rng.random(rows) < 0.3).astype(np.float32)
    like = click * (rng.random(rows) < 0.4).astype(np.float32)
    return RankingSplit(item=item, user_features=user_features, history=history,
                        labels={"click": click, "like": like}, time=np.arange(rows), user=user)


def make_data(setup: Setup, seed: int = 0) -> tuple[ItemRepresentation, RankingData]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, setup.table, (setup.items + 1, setup.tokens))
    tokens[-1] = 0
    representation = ItemRepresentation("bench", tokens, setup.table)
    data = RankingData(train=_split(setup, setup.rows, rng), valid=_split(setup, 2048, rng),
                       test=_split(setup, 2048, rng), num_items=setup.items,
                       num_user_embeddings=1 + setup.users + 7, tasks=TASKS,
                       train_items=np.ones(setup.items, bool), heldout_items=np.zeros(setup.items, bool))
    return representation, data


def sidkit_config(setup: Setup, same_as_rechub: bool = True) -> ModelConfig:
    if not same_as_rechub:
        return ModelConfig(embedding_dim=setup.dim, num_experts=setup.experts, expert_dims=setup.expert_dims,
                           tower_dims=setup.tower_dims, dropout=0.0)
    return ModelConfig(embedding_dim=setup.dim, num_experts=setup.experts, expert_dims=setup.expert_dims,
                       tower_dims=setup.tower_dims, dropout=0.0, batch_norm=True, user_pooling="concat",
                       history_product=False)


def build_sidkit(setup: Setup, representation: ItemRepresentation, data: RankingData,
                 same_as_rechub: bool = True) -> MultiTaskRanker:
    return build_model("mmoe", representation, data.num_user_embeddings, TASKS,
                       sidkit_config(setup, same_as_rechub), num_user_fields=setup.fields)


def build_rechub(setup: Setup, data: RankingData) -> tuple[torch.nn.Module, list[object]]:
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE

    users = [SparseFeature(f"user_{j}", data.num_user_embeddings, setup.dim, padding_idx=0,
                           shared_with=None if j == 0 else "user_0") for j in range(setup.fields)]
    candidate = SequenceFeature("item_tokens", setup.table, setup.dim, pooling="sum", padding_idx=0)
    history = SequenceFeature("history_tokens", setup.table, setup.dim, pooling="mean", padding_idx=0,
                              shared_with="item_tokens")
    features = [*users, candidate, history]
    expert = {"dims": list(setup.expert_dims), "dropout": 0.0, "activation": "relu"}
    towers = [{"dims": list(setup.tower_dims), "dropout": 0.0, "activation": "relu"} for _ in TASKS]
    torch.manual_seed(0)
    return MMOE(features, ["classification"] * len(TASKS), setup.experts, expert, towers), features


def rechub_inputs(setup: Setup, representation: ItemRepresentation, split: RankingSplit) -> dict[str, np.ndarray]:
    """torch-rechub's x dict: token rows gathered up front (its features take token ids, not items)."""
    x = {f"user_{j}": split.user_features[:, j] for j in range(setup.fields)}
    x["item_tokens"] = representation.tokens[split.item]
    x["history_tokens"] = representation.tokens[split.history].reshape(len(split), -1)
    return x


def _best(rates: list[float]) -> float:
    # The best of the repeats, as timeit advises: other jobs on the machine only ever slow a run down.
    return max(rates)


def step_rates(setup: Setup, representation: ItemRepresentation, data: RankingData, steps: int, repeats: int,
               extra_default: bool) -> dict[str, float]:
    """Impressions per second of the same hand loop over the same batches, alternating libraries."""
    split = data.train
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    labels = torch.from_numpy(np.stack([split.labels[t] for t in TASKS], axis=1))
    sid_inputs = [torch.from_numpy(a) for a in (split.item, split.user_features, split.history)]
    hub_inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                  rechub_inputs(setup, representation, split).items()}

    def sidkit_step(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def step(index: torch.Tensor) -> torch.Tensor:
            logits = model(*(t[index] for t in sid_inputs))
            return F.binary_cross_entropy_with_logits(logits, labels[index], reduction="none").mean(0).sum()
        return step

    def rechub_step(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        bce = torch.nn.BCELoss()  # MTLTrainer's loss for classification tasks

        def step(index: torch.Tensor) -> torch.Tensor:
            probabilities = model({k: v[index] for k, v in hub_inputs.items()})
            y = labels[index]
            return torch.stack([bce(probabilities[:, k], y[:, k]) for k in range(len(TASKS))]).sum()
        return step

    runners: dict[str, tuple[torch.nn.Module, Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]]]]
    runners = {"rechub": (build_rechub(setup, data)[0], rechub_step),
               "sidkit": (build_sidkit(setup, representation, data), sidkit_step)}
    if extra_default:
        runners["sidkit-default"] = (build_sidkit(setup, representation, data, same_as_rechub=False), sidkit_step)
    loops = {}
    for name, (model, make_step) in runners.items():
        model.train()
        loops[name] = (make_step(model), torch.optim.Adam(model.parameters(), lr=1e-3, fused=True))
    batches = [order[start:start + setup.batch] for start in range(0, len(split) - setup.batch + 1, setup.batch)]
    if len(batches) < steps + 2:
        raise SystemExit(f"--rows {setup.rows} gives {len(batches)} batches; need at least {steps + 2}")
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(repeats + 1):  # repeat 0 warms up
        for name, (step, optimizer) in loops.items():
            chosen = batches[:2] if repeat == 0 else batches[2:steps + 2]
            start = time.perf_counter()
            for index in chosen:
                loss = step(index)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if repeat:
                rates[name].append(len(chosen) * setup.batch / (time.perf_counter() - start))
    return {name: _best(values) for name, values in rates.items()}


def trainer_rates(setup: Setup, representation: ItemRepresentation, data: RankingData,
                  repeats: int) -> dict[str, float]:
    """Impressions per second of one training epoch through each library's own trainer."""
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    x = rechub_inputs(setup, representation, data.train)
    y = np.stack([data.train.labels[t] for t in TASKS], axis=1)
    loader = DataGenerator(x, y).generate_dataloader(x, y, x, y, batch_size=setup.batch)[0]
    rates: dict[str, list[float]] = {"rechub": [], "sidkit": []}
    for _ in range(repeats):
        model, _features = build_rechub(setup, data)
        with tempfile.TemporaryDirectory() as scratch:
            trainer = MTLTrainer(model, ["classification"] * len(TASKS), n_epoch=1, device="cpu",
                                 model_path=scratch, optimizer_params={"lr": 1e-3, "weight_decay": 0.0})
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                trainer.train_one_epoch(loader)
            rates["rechub"].append(len(data.train) / (time.perf_counter() - start))
        sid_model = build_sidkit(setup, representation, data)
        result = train_model(sid_model, data, TrainConfig(epochs=1, batch_size=setup.batch, progress=False))
        rates["sidkit"].append(result.history[0].impressions_per_second)
    return {name: _best(values) for name, values in rates.items()}


def _rechub_version() -> str:
    from importlib.metadata import version

    return version("torch-rechub")


def table(setup: Setup, steps: dict[str, float], trainers: dict[str, float] | None) -> str:
    lines = ["| comparison | torch-rechub MMOE (imp/s) | sidkit MMoE (imp/s) | ratio sidkit / rechub |",
             "|---|---:|---:|---:|",
             f"| model step, same loop and batches | {steps['rechub']:,.0f} | {steps['sidkit']:,.0f} "
             f"| {steps['sidkit'] / steps['rechub']:.2f} |"]
    if trainers is not None:
        lines.append(f"| trainer epoch, each library's trainer | {trainers['rechub']:,.0f} | {trainers['sidkit']:,.0f} "
                     f"| {trainers['sidkit'] / trainers['rechub']:.2f} |")
    if "sidkit-default" in steps:
        lines.append(f"| model step, sidkit default ModelConfig (+ product field, no batch norm) | "
                     f"{steps['rechub']:,.0f} | {steps['sidkit-default']:,.0f} "
                     f"| {steps['sidkit-default'] / steps['rechub']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="training impressions")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=4, help="tokens per item (T)")
    parser.add_argument("--table", type=int, default=16_385, help="token table rows, padding included")
    parser.add_argument("--history", type=int, default=20, help="history length (H)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--fields", type=int, default=2, help="user fields (F)")
    parser.add_argument("--dim", type=int, default=32, help="embedding dim")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--expert-dims", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--tower-dims", type=int, nargs="+", default=[64])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model-step repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-trainers", action="store_true", help="only the model-step comparison")
    parser.add_argument("--write-docs", action="store_true", help=f"append the table to {DOCS}")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    setup = Setup(rows=args.rows, items=args.items, tokens=args.tokens, table=args.table, history=args.history,
                  users=args.users, fields=args.fields, dim=args.dim, experts=args.experts,
                  expert_dims=tuple(args.expert_dims), tower_dims=tuple(args.tower_dims), batch=args.batch,
                  threads=args.threads)
    representation, data = make_data(setup)
    load_before = os.getloadavg()[0]
    steps = step_rates(setup, representation, data, args.steps, args.repeats, extra_default=True)
    trainers = None if args.skip_trainers else trainer_rates(setup, representation, data, args.repeats)
    result = table(setup, steps, trainers)
    described = (f"{setup.rows:,} training impressions, {setup.items:,} items x {setup.tokens} tokens "
                 f"({setup.table:,}-row table), history {setup.history}, {setup.fields} user fields, dim {setup.dim}, "
                 f"{setup.experts} experts {list(setup.expert_dims)}, towers {list(setup.tower_dims)}, batch norm, "
                 f"batch {setup.batch}, {setup.threads} torch threads, torch {torch.__version__}, "
                 f"torch-rechub {_rechub_version()}, best of {args.repeats}, load average before "
                 f"{load_before:.1f} after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    hub_params = sum(p.numel() for p in build_rechub(setup, data)[0].parameters())
    sid_params = sum(p.numel() for p in build_sidkit(setup, representation, data).parameters())
    described += (f". Parameters: torch-rechub {hub_params:,}, sidkit {sid_params:,} (torch-rechub's gates add batch "
                  f"norm)")
    print(described)
    print(result)
    if args.write_docs:
        command = "python benchmarks/bench_mmoe.py " + " ".join(sys.argv[1:] if argv is None else argv)
        section = (f"\n## MMoE training speed: sidkit vs torch-rechub\n\n`{command.strip()}`\n\n{described}.\n\n"
                   f"{result}\n")
        with DOCS.open("a", encoding="utf-8") as handle:
            handle.write(section)
        print(f"appended to {DOCS}")


if __name__ == "__main__":
    main()
