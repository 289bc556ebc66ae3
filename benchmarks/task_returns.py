"""Per-task view of ``rllib-maml compare`` runs, read from their ``task_returns.csv``.

    python benchmarks/task_returns.py results/compare-mm-all-lil-s7-10M \
        --save-csv docs/runs/compare-mm-all-lil-s7-10M-tasks.csv

A run is a ``compare --output`` folder or a ``task_returns.csv`` (one kept under
``docs/runs/``). Per group (a multi-morphology env's body) it prints, for the first two
policies (MAML and the PPO baseline):

* the return before and after the last inner step per distinct task value (for the
  multi-morphology env with ``directions``: per body and direction), which shows what the
  hidden task does to the pre-adaptation return;
* the spread of MAML's pre-adaptation return across tasks, beside the spread across draws
  of the same task value and the evaluation noise over episodes
  (:func:`rllib_maml.tools.compare.pre_adaptation_spread`): when the first is large and the
  other two small, the spread is the hidden task, not noise;
* MAML's adaptation delta (after the last step minus before), task by task, ± 2
  standard errors: whether the body adapts beyond the spread of its tasks;
* MAML minus the baseline after the last step, task by task, ± 2 standard errors
  (:func:`rllib_maml.tools.compare.paired_difference`).
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from rllib_maml.algorithm.metrics import stderr
from rllib_maml.tools.compare import TASK_RETURNS_CSV, paired_difference, pre_adaptation_spread, steps_text


def read_rows(path: Path) -> Dict[str, List[Dict[str, Any]]]:
    """``{policy: rows}`` in :func:`rllib_maml.algorithm.metrics.task_returns`'s form, from the CSV."""
    rows: Dict[str, Dict[int, Dict[str, Any]]] = defaultdict(dict)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = rows[r["policy"]].setdefault(int(r["task_index"]), {
                "task_index": int(r["task_index"]), "group": r["group"] or None, "task": r["task"],
                "returns": [], "episodes": [], "stderr": [],
            })
            row["returns"].append(float(r["episode_return_mean"]))
            row["episodes"].append(int(r["episodes"]))
            row["stderr"].append(float(r["stderr"]))
    return {policy: [by_index[i] for i in sorted(by_index)] for policy, by_index in rows.items()}


def report(path: Path) -> str:
    """The markdown report of one ``task_returns.csv``."""
    policies = read_rows(path)
    (maml_label, maml), (base_label, base) = list(policies.items())[:2]
    step = len(maml[0]["returns"]) - 1
    lines = [f"# {path}", ""]
    for group in sorted({r["group"] for r in maml}, key=str):
        a = [r for r in maml if r["group"] == group]
        b = [r for r in base if r["group"] == group]
        lines += [f"## {group or 'all tasks'}", "",
                  f"| task | tasks | {maml_label}: before → after | {base_label}: before → after |", "|---|---:|---:|---:|"]
        for task in sorted({r["task"] for r in a}):
            cells = []
            for rows in (a, b):
                same = [r["returns"] for r in rows if r["task"] == task]
                cells.append(f"{np.mean([x[0] for x in same]):.1f} → {np.mean([x[step] for x in same]):.1f}")
            lines.append(f"| {task} | {sum(r['task'] == task for r in a)} | {cells[0]} | {cells[1]} |")
        std, noise, same_task = pre_adaptation_spread(a)
        deltas = [r["returns"][step] - r["returns"][0] for r in a]
        mean, se = paired_difference(a, b, step)
        lines += ["", f"{maml_label} before adaptation: std across tasks {std:.1f}, across draws of the same task "
                  f"{same_task:.1f}, evaluation noise {noise:.1f}.",
                  f"{maml_label} after {steps_text(step)} minus before, task by task: {np.mean(deltas):+.1f} ± "
                  f"{2 * stderr(deltas):.1f} (2 s.e., {len(a)} tasks).",
                  f"{maml_label} minus {base_label} after {steps_text(step)}, task by task: {mean:+.1f} ± {2 * se:.1f} "
                  f"(2 s.e., {len(a)} tasks).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="compare --output folders or task_returns.csv files")
    parser.add_argument("--save-csv", type=Path, help="with one run: also copy its task_returns.csv here")
    args = parser.parse_args()
    paths = [p / TASK_RETURNS_CSV if p.is_dir() else p for p in args.runs]
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"task_returns.py: no {TASK_RETURNS_CSV} at {path} (written by rllib-maml compare)")
        print(report(path))
    if args.save_csv is not None:
        if len(paths) != 1:
            raise SystemExit("task_returns.py: --save-csv takes one run")
        args.save_csv.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths[0], args.save_csv)


if __name__ == "__main__":
    main()
