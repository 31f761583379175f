"""The MovieLens ranking tables of docs/ranking.md (MMoE, 5 seeds, the documented recipe).

Presets, each the same as one ``sidkit rank`` command (the tokenizer: RQ-KMeans 3 x 64, seed 0, fitted
on DIR/embeddings.npy when OUT/tokenizer is missing):

``ml-100k``: eight feature sets at 4,096 rows, and hash, sid-unigram, sid-prefix and hash+sid-prefix
again at 1/4 and 1/16 of the catalog::

    sidkit rank --data DIR --tokenizer OUT/tokenizer \\
      --features hash,sid-unigram,sid-bigram,sid-prefix,sid-spm,sid-spm@512,dense,hash+sid-prefix \\
      --budget 4096,1/4,1/16 --sweep-features hash,sid-unigram,sid-prefix,hash+sid-prefix \\
      --model mmoe --seeds 5 --user-features age,gender,occupation --out OUT

``ml-1m``: hash against sid-prefix at 4,096 rows (the run whose time docs/ranking.md gives)::

    sidkit rank --data DIR --tokenizer OUT/tokenizer --features hash,sid-prefix --budget 4096 \\
      --model mmoe --seeds 5 --user-features age,gender,occupation --jobs 2 --out OUT

``ml-1m-sweep``: the same run directory extended by the budgets 1/4 and 1/16 (the finished 4,096-row
runs are kept; ``--budget 4096,1/4,1/16``).

    .venv/bin/python benchmarks/rank_movielens.py --preset ml-100k --data data/ml-100k --out runs/rank-ml100k

Each writes OUT/summary.md (every table) and OUT/metrics.json; a run cut short resumes.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sidkit.ranking.experiment import RankSettings, run_ranking
from sidkit.ranking.summary import markdown_summary

USERS = ("age", "gender", "occupation")
PRESETS = {
    "ml-100k": RankSettings(features=("hash", "sid-unigram", "sid-bigram", "sid-prefix", "sid-spm", "sid-spm@512",
                                      "dense", "hash+sid-prefix"),
                            sweep=("1/4", "1/16"), sweep_features=("hash", "sid-unigram", "sid-prefix",
                                                                   "hash+sid-prefix"),
                            user_features=USERS),
    "ml-1m": RankSettings(features=("hash", "sid-prefix"), user_features=USERS, jobs=2),
    "ml-1m-sweep": RankSettings(features=("hash", "sid-prefix"), sweep=("1/4", "1/16"), user_features=USERS, jobs=2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--data", type=Path, required=True, help="MovieLens dataset directory with embeddings.npy")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, help="worker processes (default: the preset's)")
    parser.add_argument("--seeds", type=int, help="seeds (default 5)")
    args = parser.parse_args()
    from sidkit.data.dataset import load_dataset
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    tokenizer = args.out / "tokenizer"
    if not (tokenizer / "config.json").is_file():
        x = load_dataset(args.data).catalog.embeddings
        RQKMeans(levels=3, codebook_size=64, seed=0).fit(x).save(tokenizer)
    settings = PRESETS[args.preset]
    if args.jobs is not None:
        settings = replace(settings, jobs=args.jobs)
    if args.seeds is not None:
        settings = replace(settings, seeds=args.seeds)
    experiment = run_ranking(args.data, tokenizer, args.out, settings, log=print)
    print(markdown_summary(experiment))


if __name__ == "__main__":
    main()
