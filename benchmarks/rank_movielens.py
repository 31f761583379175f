"""The ML-100K ranking table of docs/ranking.md: seven feature sets (and SPM at 512 pieces), MMoE, 5 seeds.

Fits RQ-KMeans 3 x 64 (seed 0) on the dataset's MiniLM embeddings, then runs the same as::

    sidkit rank --data DIR --tokenizer OUT/tokenizer \\
      --features hash,sid-unigram,sid-bigram,sid-prefix,sid-spm,sid-spm@512,dense,hash+sid-prefix \\
      --model mmoe --seeds 5 --budget 4096 --history 20 --negatives 2 --item-holdout 0.2 --split user-time \\
      --epochs 3 --patience 1 --learning-rate 3e-3 --batch-size 2048 --jobs 5 --out OUT

    .venv/bin/python benchmarks/rank_movielens.py --data runs/demo/ml-100k --out runs/rank-ml100k

The dataset directory needs embeddings.npy (`sidkit embed --data DIR`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sidkit.ranking.experiment import RankSettings, markdown_summary, run_ranking
from sidkit.tokenizers.rq_kmeans import RQKMeans

FEATURES = ("hash", "sid-unigram", "sid-bigram", "sid-prefix", "sid-spm", "sid-spm@512", "dense", "hash+sid-prefix")
SETTINGS = RankSettings(features=FEATURES, model="mmoe", seeds=5, budget=4096, history=20, negatives=2,
                        item_holdout=0.2, split="user-time", epochs=3, patience=1, learning_rate=3e-3,
                        batch_size=2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="ML-100K dataset directory with embeddings.npy")
    parser.add_argument("--out", type=Path, default=Path("runs/rank-ml100k"))
    parser.add_argument("--jobs", type=int, default=5, help="worker processes")
    parser.add_argument("--seeds", type=int, default=SETTINGS.seeds)
    args = parser.parse_args()
    from sidkit.data.dataset import load_dataset

    tokenizer = args.out / "tokenizer"
    if not (tokenizer / "config.json").is_file():
        x = load_dataset(args.data).catalog.embeddings
        RQKMeans(levels=3, codebook_size=64, seed=0).fit(x).save(tokenizer)
    settings = RankSettings(**{**SETTINGS.to_dict(), "features": FEATURES, "jobs": args.jobs, "seeds": args.seeds})
    experiment = run_ranking(args.data, tokenizer, args.out, settings, log=print)
    print(markdown_summary(experiment))


if __name__ == "__main__":
    main()
