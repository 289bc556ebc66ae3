"""Held-out adaptation curves of ``rllib-maml train`` runs, read from Tune's ``result.json``.

    python benchmarks/held_out_curves.py results/hc-direc-s7 results/hc-direc-s0 \
        --output docs/halfcheetah_rand_direc_held_out.png --save-csv docs/runs

A run is a ``rllib-maml train --output`` folder or a CSV that ``--save-csv`` wrote
(``results/`` is not kept between checkouts; the CSVs in ``docs/runs/`` are). ``A+B``
joins the points of A and B into one run named after B: a run and its continuation
with ``rllib-maml train --from-checkpoint`` (which counts env steps on from A's).

A run trained with ``evaluation_interval`` (as ``tuned_examples/halfcheetah-rand-direc.yaml``)
reports ``evaluation/maml/episode_return_mean_adapt_{k}`` on fixed held-out tasks every
``N`` iterations. This prints them against env steps as a markdown table (one row per
evaluation and run) and plots them, one panel per adaptation step, one line per run.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Dict, List, Tuple

#: One evaluation: (lifetime env steps, {k: held-out return after k inner steps}).
Point = Tuple[int, Dict[int, float]]


def csv_points(path: Path) -> List[Point]:
    """The points of a CSV written by :func:`save_csv`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        (int(row["env_steps"]), {int(k.removeprefix("adapt_")): float(v) for k, v in row.items() if k.startswith("adapt_")})
        for row in rows
    ]


def save_csv(points: List[Point], path: Path) -> None:
    """``env_steps, adapt_0, ..., adapt_K``: one row per evaluation."""
    steps_k = sorted({k for _, returns in points for k in returns})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_steps"] + [f"adapt_{k}" for k in steps_k])
        for steps, returns in points:
            writer.writerow([steps] + [returns.get(k, "") for k in steps_k])


def held_out_points(run: Path) -> List[Point]:
    """Every evaluation found in the ``result.json`` files under ``run`` (a Tune experiment
    folder), or the points of a CSV that ``--save-csv`` wrote."""
    if "+" in str(run):  # A+B: a run and its continuation; B's point wins at the same env steps
        parts = [Path(part) for part in str(run).split("+")]
        return sorted(dict(point for part in parts for point in held_out_points(part)).items())
    if run.suffix == ".csv":
        return csv_points(run)
    files = sorted(run.rglob("result.json"))
    if not files:
        raise SystemExit(f"{run}: no result.json below it (is it an `rllib-maml train --output` folder?)")
    points: List[Point] = []
    for path in files:
        for line in path.read_text().splitlines():
            result = json.loads(line)
            curve = result.get("evaluation", {}).get("maml")
            if not curve:
                continue
            steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
            returns = {
                int(key.rsplit("_", 1)[1]): float(value)
                for key, value in curve.items()
                if key.startswith("episode_return_mean_adapt_")
            }
            points.append((steps, returns))
    # A resumed run repeats the iterations after its last checkpoint: keep the newest of each.
    return sorted(dict(points).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="rllib-maml train --output folders or --save-csv CSVs")
    parser.add_argument("--output", type=Path, help="PNG to write (default: print only)")
    parser.add_argument("--title", default="held-out adaptation")
    parser.add_argument("--save-csv", type=Path, metavar="DIR", help="also write each run's points to DIR/<run>.csv")
    args = parser.parse_args()

    def name(run: Path) -> str:
        last = Path(str(run).split("+")[-1])
        return last.stem if last.suffix == ".csv" else last.name

    curves = {name(run): held_out_points(run) for run in args.runs}
    if args.save_csv:
        for name, points in curves.items():
            save_csv(points, args.save_csv / f"{name}.csv")
    steps_k = sorted({k for points in curves.values() for _, returns in points for k in returns})
    print("| run | env steps | " + " | ".join("before" if k == 0 else f"after {k}" for k in steps_k) + " |")
    print("|---|---:|" + "---:|" * len(steps_k))
    for name, points in curves.items():
        for steps, returns in points:
            print(f"| {name} | {steps:,d} | " + " | ".join(f"{returns.get(k, float('nan')):.1f}" for k in steps_k) + " |")

    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(steps_k), figsize=(3.2 * len(steps_k), 3.2), sharey=True, squeeze=False)
        for ax, k in zip(axes[0], steps_k):
            for name, points in curves.items():
                ax.plot([s / 1e6 for s, r in points if k in r], [r[k] for _, r in points if k in r], marker="o", label=name)
            ax.set_title("before adaptation" if k == 0 else f"after {k} inner step{'s' if k > 1 else ''}")
            ax.set_xlabel("env steps (millions)")
            ax.axhline(0.0, color="grey", lw=0.5)
        axes[0][0].set_ylabel("mean return, held-out tasks")
        axes[0][-1].legend(fontsize=8)
        fig.suptitle(args.title)
        fig.tight_layout()
        args.output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.output, dpi=110)
        print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
