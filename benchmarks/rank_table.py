"""The tables of a `sidkit rank` run directory, finished or still going (its finished seeds only).

Run: .venv/bin/python benchmarks/rank_table.py RUN_DIR --data DIR --tokenizer MODEL_DIR

Reads ``settings.json`` and ``runs.jsonl`` (from the staging directory ``.RUN_DIR.partial`` while the
run goes on), keeps the seeds whose every feature set has finished, and prints what ``summary.md``
would hold for them: per task AUC by slice with 95% t intervals, the paired differences with the
baseline on the same seed, and the convergence table (wall seconds per run). Nothing is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sidkit.io import staging_dir
from sidkit.ranking.experiment import SETTINGS_FILE, RankSettings, experiment_from_runs
from sidkit.ranking.summary import markdown_summary


def read_settings(run_dir: Path) -> RankSettings:
    """The RankSettings a run directory (or its staging directory) recorded."""
    for place in (staging_dir(run_dir), run_dir):
        if (place / SETTINGS_FILE).is_file():
            stored = json.loads((place / SETTINGS_FILE).read_text(encoding="utf-8"))
            for key, value in stored.items():
                if isinstance(value, list):
                    stored[key] = tuple(value)
            known = set(RankSettings.__dataclass_fields__)
            return RankSettings(**{key: value for key, value in stored.items() if key in known})
    raise SystemExit(f"no {SETTINGS_FILE} in {run_dir} or {staging_dir(run_dir)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", required=True, help="the run's dataset directory")
    parser.add_argument("--tokenizer", default="", help="the run's tokenizer directory (only recorded)")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    experiment = experiment_from_runs(args.data, args.tokenizer, run_dir, read_settings(run_dir))
    print(markdown_summary(experiment))


if __name__ == "__main__":
    main()
