"""Ranking on synthetic impressions, where click rates vary per user: features and per-task importance.

sidkit's synthetic data hold real impressions (clicks follow the cosine between a user's taste and an
item's embedding, plus popularity), so nothing is sampled and, unlike sampled negatives, no protocol
fixes a user's click rate: the importance of the user fields for click is the data's, not the
sampler's. Generates 4,000 items x 64 dims, 800 users, 60,000 impressions (seed 0), fits RQ-KMeans
3 x 64 on the items' embeddings, and runs the same as::

    sidkit data synth --items 4000 --users 800 --interactions 60000 --dim 64 --seed 0 --out OUT/data
    sidkit fit --method rq-kmeans --levels 3 --codebook-size 64 --seed 0 --data OUT/data --out OUT/tokenizer
    sidkit rank --data OUT/data --tokenizer OUT/tokenizer --features hash,sid-prefix --model mmoe \
      --seeds 5 --budget 4096 --importance 3 --out OUT

    .venv/bin/python benchmarks/rank_synthetic.py --out runs/rank-synth
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.ranking.experiment import RankSettings, run_ranking
from sidkit.ranking.summary import markdown_summary
from sidkit.tokenizers.rq_kmeans import RQKMeans

DATA = SyntheticConfig(items=4000, users=800, interactions=60_000, dim=64, seed=0)
SETTINGS = RankSettings(features=("hash", "sid-prefix"), model="mmoe", seeds=5, budget=4096, importance_repeats=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/rank-synth"))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--seeds", type=int, default=SETTINGS.seeds)
    args = parser.parse_args()
    from sidkit.data.dataset import load_dataset

    data, tokenizer = args.out / "data", args.out / "tokenizer"
    if not (data / "manifest.json").is_file():
        write_synthetic(DATA, data)
    if not (tokenizer / "config.json").is_file():
        RQKMeans(levels=3, codebook_size=64, seed=0).fit(load_dataset(data).catalog.embeddings).save(tokenizer)
    settings = replace(SETTINGS, jobs=args.jobs, seeds=args.seeds)
    experiment = run_ranking(data, tokenizer, args.out, settings, log=print)
    print(markdown_summary(experiment))


if __name__ == "__main__":
    main()
