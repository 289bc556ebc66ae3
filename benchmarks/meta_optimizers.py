"""MAML-PPO, MAML-TRPO and MAML-VPG side by side: held-out adaptation curves and wall time.

    python benchmarks/meta_optimizers.py                          # Navigation2D, 12 iterations, seeds 0 and 1
    python benchmarks/meta_optimizers.py --env rllib_maml/HalfCheetahRandDirec-v0 --iterations 100 \\
        --meta-batch-size 10 --episodes-per-task 10 --num-env-runners 2 --num-envs-per-env-runner 50

For each meta-optimizer and seed: train ``--iterations`` iterations (the same
config otherwise), then adapt 0..``--steps`` inner steps on the same held-out tasks
(seed 12345, as ``rllib-maml compare``). Prints a markdown table (mean over seeds,
and each seed) and writes a PNG of the curves. All runs share this process tree
and machine, so the wall times per iteration are comparable with each other.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Dict, List

import ray

import rllib_maml  # noqa: F401  (registers the envs)
from rllib_maml import MAMLConfig
from rllib_maml.algorithm.env_factory import held_out_tasks

OPTIMIZERS = ("ppo", "trpo", "vpg")


def run(args: argparse.Namespace, meta_optimizer: str, seed: int) -> Dict[str, object]:
    config = (
        MAMLConfig()
        .environment(args.env)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=args.num_envs_per_env_runner,
                     num_cpus_per_env_runner=0.5)
        .training(meta_batch_size=args.meta_batch_size, episodes_per_task=args.episodes_per_task,
                  inner_lr=args.inner_lr, lr=args.lr, meta_optimizer=meta_optimizer)
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    try:
        seconds = []
        for i in range(args.iterations):
            start = time.perf_counter()
            result = algo.train()
            seconds.append(time.perf_counter() - start)
            if (i + 1) % max(1, args.iterations // 4) == 0:
                print(f"  {meta_optimizer} seed {seed} iter {i + 1}: post-adaptation "
                      f"{result['maml']['episode_return_mean_adapt_1']:.2f}", flush=True)
        curve = algo.evaluate_adaptation(tasks=held_out_tasks(config, args.tasks), num_steps=args.steps)
    finally:
        algo.stop()
    return {
        "returns": [float(curve[f"episode_return_mean_adapt_{k}"]) for k in range(args.steps + 1)],
        "s_per_iter": statistics.median(seconds),
        "env_steps": int(result["env_runners"]["num_env_steps_sampled_lifetime"]),
    }


def plot(results: Dict[str, List[Dict[str, object]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in results.items():
        mean = [statistics.mean(r["returns"][k] for r in runs) for k in range(len(runs[0]["returns"]))]
        ax.plot(range(len(mean)), mean, marker="o", label=f"MAML-{name.upper()}")
        for r in runs:
            ax.plot(range(len(mean)), r["returns"], alpha=0.25, color=ax.lines[-1].get_color())
    ax.set_xlabel("inner adaptation steps")
    ax.set_ylabel("mean return on held-out tasks")
    ax.set_xticks(range(len(mean)))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="rllib_maml/Navigation2D-v0")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--meta-batch-size", type=int, default=10)
    parser.add_argument("--episodes-per-task", type=int, default=10)
    parser.add_argument("--inner-lr", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--num-env-runners", type=int, default=0)
    parser.add_argument("--num-envs-per-env-runner", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=20, help="held-out tasks")
    parser.add_argument("--steps", type=int, default=3, help="inner steps at evaluation")
    parser.add_argument("--png", default="docs/meta_optimizers_navigation2d.png")
    args = parser.parse_args()

    ray.init(include_dashboard=False, configure_logging=True, logging_level="WARNING")
    results: Dict[str, List[Dict[str, object]]] = {}
    try:
        for name in args.optimizers:
            results[name] = [run(args, name, seed) for seed in args.seeds]
    finally:
        ray.shutdown()

    steps = range(args.steps + 1)
    print(f"\n{args.env}, {args.iterations} iterations ({results[args.optimizers[0]][0]['env_steps']:,} env steps), "
          f"{args.tasks} held-out tasks, seeds {args.seeds}; mean return after k inner steps (mean of seeds; each seed):\n")
    print("| meta-optimizer | " + " | ".join(f"step {k}" for k in steps) + " | delta | s / iteration |")
    print("|---|" + "---:|" * (len(steps) + 2))
    for name, runs in results.items():
        cells = []
        for k in steps:
            values = [r["returns"][k] for r in runs]
            cells.append(f"{statistics.mean(values):.2f} ({', '.join(f'{v:.1f}' for v in values)})")
        delta = statistics.mean(r["returns"][-1] - r["returns"][0] for r in runs)
        per_iter = statistics.mean(r["s_per_iter"] for r in runs)
        print(f"| MAML-{name.upper()} | " + " | ".join(cells) + f" | {delta:+.2f} | {per_iter:.2f} |")
    plot(results, Path(args.png), f"{args.env.split('/')[-1]}: meta-optimizers, {args.iterations} iterations")
    print(f"\nplot: {args.png}")


if __name__ == "__main__":
    main()
