"""The tables of a `sidkit rank` run directory, finished or still going (its finished seeds only).

Run: .venv/bin/python benchmarks/rank_table.py RUN_DIR --data DIR --tokenizer MODEL_DIR [--compact]

Reads ``settings.json`` and ``runs.jsonl`` (from the staging directory ``.RUN_DIR.partial`` while the
run goes on), keeps the seeds whose every feature set has finished, and prints what ``summary.md``
would hold for them: per task AUC by slice with 95% t intervals, the paired differences with the
baseline on the same seed, and the convergence table (wall seconds per run). ``--compact`` prints
only the tables of docs/ranking.md: AUC on all and new-matched items per task, then the same minus
the baseline on the same seed. Nothing is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sidkit.io import staging_dir
from sidkit.ranking.experiment import SETTINGS_FILE, RankingExperiment, RankSettings, experiment_from_runs
from sidkit.ranking.summary import COMPACT_SLICES, cell, interval_note, markdown_summary, table_rows
from sidkit.report.tables import markdown_table


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


def _escape(header: str) -> str:
    return header.replace("|", "\\|")  # a conditional task's name (like|click) inside a markdown cell


def compact(experiment: RankingExperiment) -> str:
    """The compact table and its paired differences, as markdown."""
    headers, rows = table_rows(experiment)
    lines = [interval_note(experiment), "", *markdown_table([_escape(h) for h in headers], rows), ""]
    paired = {(p.feature, p.task, p.slice): p for p in experiment.paired("auc")}
    columns = [(task, s) for task in experiment.evaluated for s in COMPACT_SLICES]
    rows = [[info.name, str(info.baseline)] + [cell(paired[(info.name, t, s)].difference, signed=True)
                                               if (info.name, t, s) in paired else "-" for t, s in columns]
            for info in experiment.features if info.baseline is not None]
    if rows:
        lines += ["Minus the baseline on the same seed (paired):", ""]
        lines += markdown_table(["features", "baseline", *[_escape(f"{t} {s}") for t, s in columns]], rows)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", required=True, help="the run's dataset directory")
    parser.add_argument("--compact", action="store_true", help="only the tables of docs/ranking.md")
    parser.add_argument("--tokenizer", required=True, help="the run's tokenizer directory (for the SID sizes)")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    experiment = experiment_from_runs(args.data, args.tokenizer, run_dir, read_settings(run_dir))
    print(compact(experiment) if args.compact else markdown_summary(experiment))


if __name__ == "__main__":
    main()
