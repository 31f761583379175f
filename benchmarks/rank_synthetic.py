"""The synthetic ranking table of docs/ranking.md: where content truly predicts preference.

Generates sidkit's synthetic dataset (10,000 items x 64 dims, 3,000 users, 200,000 impressions with
click and like labels, seed 0; its embeddings are the items' content), fits RQ-KMeans 3 x 64 on
them, and runs the same as::

    sidkit data synth --items 10000 --users 3000 --interactions 200000 --seed 0 --out OUT/data
    sidkit fit --method rq-kmeans --levels 3 --codebook-size 64 --data OUT/data --out OUT/tokenizer
    sidkit rank --data OUT/data --tokenizer OUT/tokenizer \\
      --features hash,sid-unigram,sid-prefix,dense,hash+sid-prefix --model mmoe --seeds 3 --budget 4096 \\
      --history 20 --item-holdout 0.2 --split user-time --epochs 3 --patience 1 --learning-rate 3e-3 \\
      --batch-size 2048 --jobs 3 --out OUT

    .venv/bin/python benchmarks/rank_synthetic.py --out runs/rank-synth
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.ranking.experiment import RankSettings, markdown_summary, run_ranking
from sidkit.tokenizers.rq_kmeans import RQKMeans

FEATURES = ("hash", "sid-unigram", "sid-prefix", "dense", "hash+sid-prefix")
DATA = SyntheticConfig(items=10_000, users=3_000, interactions=200_000, seed=0)
SETTINGS = RankSettings(features=FEATURES, model="mmoe", seeds=3, budget=4096, history=20, item_holdout=0.2,
                        split="user-time", epochs=3, patience=1, learning_rate=3e-3, batch_size=2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/rank-synth"))
    parser.add_argument("--jobs", type=int, default=3, help="worker processes")
    parser.add_argument("--seeds", type=int, default=SETTINGS.seeds)
    args = parser.parse_args()
    from sidkit.data.dataset import load_dataset

    data, tokenizer = args.out / "data", args.out / "tokenizer"
    if not (data / "manifest.json").is_file():
        write_synthetic(DATA, data)
    if not (tokenizer / "config.json").is_file():
        RQKMeans(levels=3, codebook_size=64, seed=0).fit(load_dataset(data).catalog.embeddings).save(tokenizer)
    settings = RankSettings(**{**SETTINGS.to_dict(), "features": FEATURES, "jobs": args.jobs, "seeds": args.seeds})
    experiment = run_ranking(data, tokenizer, args.out, settings, log=print)
    print(markdown_summary(experiment))


if __name__ == "__main__":
    main()
