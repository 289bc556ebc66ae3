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

With ``--per-task`` (a task distribution with groups, as the multi-morphology env's bodies)
it prints and plots, per group, the held-out adaptation delta with +- 2 standard errors across
the group's held-out tasks, and the spread of the group's pre-adaptation return across them:

    python benchmarks/held_out_curves.py --per-task results/mm-walker-hopper-s7 \
        --output docs/multi_morphology_walker_hopper.png --save-csv docs/runs

With ``--inner-lr`` (a run trained with ``model_config.learn_inner_lr``) it prints and plots
the learned inner step size of each group (``learners/inner_lr_<group>``) against env steps.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

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


def results_of(path: Path) -> List[Dict[str, Any]]:
    """The results in one ``result.json``, without a last line still being written (a running run)."""
    lines = path.read_text().splitlines()
    results = [json.loads(line) for line in lines[:-1]]
    try:
        return results + [json.loads(lines[-1])] if lines else results
    except json.JSONDecodeError:
        return results


def evaluations(run: Path) -> List[Tuple[int, Dict[str, Any]]]:
    """``(lifetime env steps, result["evaluation"]["maml"])`` of every evaluation in the
    ``result.json`` files under ``run`` (a Tune experiment folder), oldest first."""
    files = sorted(run.rglob("result.json"))
    if not files:
        raise SystemExit(f"{run}: no result.json below it (is it an `rllib-maml train --output` folder?)")
    found: List[Tuple[int, Dict[str, Any]]] = []
    for path in files:
        for result in results_of(path):
            curve = result.get("evaluation", {}).get("maml")
            if curve:
                found.append((int(result["env_runners"]["num_env_steps_sampled_lifetime"]), curve))
    # A resumed run repeats the iterations after its last checkpoint: keep the newest of each.
    return sorted(dict(found).items())


def returns_of(curve: Dict[str, Any]) -> Dict[int, float]:
    """``{k: held-out return after k inner steps}`` of one evaluation's curve."""
    return {
        int(key.rsplit("_", 1)[1]): float(value) for key, value in curve.items() if key.startswith("episode_return_mean_adapt_")
    }


def held_out_points(run: Path) -> List[Point]:
    """Every evaluation of ``run`` (a Tune experiment folder), or the points of a CSV that
    ``--save-csv`` wrote."""
    if "+" in str(run):  # A+B: a run and its continuation; B's point wins at the same env steps
        parts = [Path(part) for part in str(run).split("+")]
        return sorted(dict(point for part in parts for point in held_out_points(part)).items())
    if run.suffix == ".csv":
        return csv_points(run)
    return [(steps, returns_of(curve)) for steps, curve in evaluations(run)]


#: One per-group evaluation: (env steps, adaptation delta, its standard error across the group's
#: held-out tasks, the spread of the group's pre-adaptation return across those tasks, and across
#: draws of the same task value: NaN where a run predates it or no task repeats).
DeltaPoint = Tuple[int, float, float, float, float]


def per_task_deltas(run: Path) -> Dict[str, List[DeltaPoint]]:
    """``{group (e.g. morphology): [DeltaPoint, ...]}`` from ``evaluation/maml/per_task``, or from
    a CSV that ``--per-task --save-csv`` wrote."""
    groups: Dict[str, List[DeltaPoint]] = {}
    if run.suffix == ".csv":
        with open(run, newline="") as f:
            for row in csv.DictReader(f):
                groups.setdefault(row["group"], []).append(
                    (int(row["env_steps"]), float(row["adaptation_delta"]), float(row["adaptation_delta_stderr"]),
                     float(row["pre_adaptation_return_std"]), float(row.get("pre_adaptation_return_std_same_task") or "nan"))
                )
        return groups
    for steps, curve in evaluations(run):
        for group, stats in curve.get("per_task", {}).items():
            groups.setdefault(group, []).append(
                (steps, float(stats["adaptation_delta"]), float(stats.get("adaptation_delta_stderr", "nan")),
                 float(stats.get("pre_adaptation_return_std", "nan")),
                 float(stats.get("pre_adaptation_return_std_same_task", "nan")))
            )
    if not groups:
        raise SystemExit(f"{run}: its evaluations have no per_task curves (a task distribution with task groups, "
                         "e.g. rllib_maml/MultiMorphologyLocomotion-v0, reports them)")
    return groups


def inner_lrs(run: Path) -> Dict[str, List[Tuple[int, float]]]:
    """``{group: [(env steps, learned inner step size), ...]}`` of every training iteration
    (``learners/inner_lr_<group>``), or from a CSV that ``--inner-lr --save-csv`` wrote."""
    found: Dict[str, Dict[int, float]] = {}
    if run.suffix == ".csv":
        with open(run, newline="") as f:
            for row in csv.DictReader(f):
                found.setdefault(row["group"], {})[int(row["env_steps"])] = float(row["inner_lr"])
    else:
        for path in sorted(run.rglob("result.json")):
            for result in results_of(path):
                steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
                for key, value in result.get("learners", {}).items():
                    if key.startswith("inner_lr_"):
                        found.setdefault(key.removeprefix("inner_lr_"), {})[steps] = float(value)
    if not found:
        raise SystemExit(f"{run}: reports no learned inner step size (train with model_config.learn_inner_lr=true)")
    return {group: sorted(points.items()) for group, points in found.items()}


def save_group_csvs(runs: Dict[str, Dict[str, List[Tuple[Any, ...]]]], folder: Optional[Path], suffix: str,
                    columns: List[str]) -> None:
    """With ``folder`` (``--save-csv``): ``folder/<run>-<suffix>.csv`` per run, one row per
    group and point: ``env_steps, group, *columns``."""
    if folder is None:
        return
    for run_name, groups in runs.items():
        path = folder / f"{run_name}-{suffix}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["env_steps", "group", *columns])
            for group, points in groups.items():
                writer.writerows([steps, group, *values] for steps, *values in points)


def inner_lr_main(args: argparse.Namespace, name: Callable[[Path], str]) -> None:
    """``--inner-lr``: each group's learned inner step size against env steps."""
    runs = {name(run): inner_lrs(run) for run in args.runs}
    save_group_csvs(runs, args.save_csv, "inner-lr", ["inner_lr"])
    print("| run | group | first | at 25% | at 50% | at 75% | last (env steps) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for run_name, groups in runs.items():
        for group, points in sorted(groups.items()):
            picks = [points[min(len(points) - 1, int(q * len(points)))][1] for q in (0, 0.25, 0.5, 0.75)]
            print(f"| {run_name} | {group} | " + " | ".join(f"{lr:.4f}" for lr in picks)
                  + f" | {points[-1][1]:.4f} ({points[-1][0]:,d}) |")
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.2), sharey=True, squeeze=False)
        for ax, (run_name, groups) in zip(axes[0], runs.items()):
            for group, points in sorted(groups.items()):
                ax.plot([p[0] / 1e6 for p in points], [p[1] for p in points], label=group)
            ax.set_title(run_name)
        save_figure(fig, axes, "learned inner step size", args)


def save_figure(fig: Any, axes: Any, ylabel: str, args: argparse.Namespace) -> None:
    """Labels a row of panels (one line per run, zero marked) and writes it to ``args.output``."""
    for ax in axes[0]:
        ax.set_xlabel("env steps (millions)")
        ax.axhline(0.0, color="grey", lw=0.5)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(args.title)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"\nwrote {args.output}")


def per_task_main(args: argparse.Namespace, name: Callable[[Path], str]) -> None:
    """``--per-task``: each group's held-out adaptation delta against env steps, +- 2 standard errors."""
    runs = {name(run): per_task_deltas(run) for run in args.runs}
    save_group_csvs(runs, args.save_csv, "per-task", ["adaptation_delta", "adaptation_delta_stderr", "pre_adaptation_return_std",
                                                      "pre_adaptation_return_std_same_task"])
    print("| run | group | env steps | adaptation delta | 2 x std. error | pre-adaptation std across tasks "
          "| across draws of the same task |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for run_name, groups in runs.items():
        for group, points in groups.items():
            for steps, delta, stderr, spread, same_task in points:
                print(f"| {run_name} | {group} | {steps:,d} | {delta:.1f} | {2 * stderr:.1f} | {spread:.1f} | {same_task:.1f} |")
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        all_groups = sorted({group for groups in runs.values() for group in groups})
        fig, axes = plt.subplots(1, len(all_groups), figsize=(3.4 * len(all_groups), 3.2), squeeze=False)
        for ax, group in zip(axes[0], all_groups):
            for run_name, groups in runs.items():
                points = groups.get(group, [])
                ax.errorbar([p[0] / 1e6 for p in points], [p[1] for p in points], yerr=[2 * p[2] for p in points],
                            marker="o", capsize=2, label=run_name)
            ax.set_title(group)
        save_figure(fig, axes, "held-out adaptation delta (+- 2 s.e.)", args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="rllib-maml train --output folders or --save-csv CSVs")
    parser.add_argument("--output", type=Path, help="PNG to write (default: print only)")
    parser.add_argument("--title", default="held-out adaptation")
    parser.add_argument("--save-csv", type=Path, metavar="DIR", help="also write each run's points to DIR/<run>.csv")
    parser.add_argument("--per-task", action="store_true",
                        help="per task group (e.g. morphology): the adaptation delta with its standard error; "
                             "CSVs DIR/<run>-per-task.csv")
    parser.add_argument("--inner-lr", action="store_true",
                        help="per task group: the learned inner step size (learn_inner_lr); CSVs DIR/<run>-inner-lr.csv")
    args = parser.parse_args()

    def name(run: Path) -> str:
        last = Path(str(run).split("+")[-1])
        return last.stem.removesuffix("-per-task").removesuffix("-inner-lr") if last.suffix == ".csv" else last.name

    if args.per_task:
        per_task_main(args, name)
        return
    if args.inner_lr:
        inner_lr_main(args, name)
        return

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
        save_figure(fig, axes, "mean return, held-out tasks", args)


if __name__ == "__main__":
    main()
