"""Soak: memory of the driver and of each EnvRunner over a long Navigation2D run.

    python benchmarks/soak.py                     # 200 iterations, 2 runners, ~10 min on 2 cores
    python benchmarks/soak.py --iters 60 --every 10

Prints the resident set size (RSS, MB) of the driver (the algorithm and its local
Learner) and of every EnvRunner every ``--every`` iterations, then each one's growth
from the first report to the last. A leak (episodes, metrics or object refs piling
up) shows as steady growth; the goal is under 10% from iteration 20 to 200.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Dict, List

import ray

import rllib_maml  # noqa: F401  (registers the envs)
from rllib_maml import MAMLConfig


def current_rss_mb(_: object = None) -> float:
    """This process's resident set size now (Linux ``/proc``; ``resource`` only knows the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_mb(algo: Any) -> Dict[str, float]:
    """Current RSS of the driver and of each remote EnvRunner, in MB."""
    runners = algo.env_runner_group.foreach_env_runner(current_rss_mb, local_env_runner=False)
    out = {"driver": current_rss_mb()}
    out.update({f"runner {i + 1}": mb for i, mb in enumerate(runners)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--runners", type=int, default=2)
    args = parser.parse_args()

    ray.init(include_dashboard=False, configure_logging=True, logging_level="WARNING")
    config = (
        MAMLConfig()
        .environment("rllib_maml/Navigation2D-v0")
        .env_runners(num_env_runners=args.runners, num_envs_per_env_runner=10, num_cpus_per_env_runner=0.5)
        .training(meta_batch_size=10, episodes_per_task=5, maml_optimizer_steps=5)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    reports: List[Dict[str, float]] = []
    start = time.perf_counter()
    try:
        for iteration in range(1, args.iters + 1):
            result = algo.train()
            if iteration % args.every == 0:
                reports.append(rss_mb(algo))
                cells = "  ".join(f"{k} {v:7.1f}" for k, v in reports[-1].items())
                print(
                    f"iter {iteration:4d}  {time.perf_counter() - start:6.0f} s  "
                    f"post-adaptation return {result['maml'][f'episode_return_mean_adapt_1']:7.2f}  RSS MB: {cells}",
                    flush=True,
                )
    finally:
        algo.stop()
        ray.shutdown()
    first, last = reports[0], reports[-1]
    print(f"\nRSS growth from iteration {args.every} to {args.iters}:")
    for key in first:
        print(f"  {key:9s} {first[key]:7.1f} -> {last[key]:7.1f} MB  ({100 * (last[key] / first[key] - 1):+.1f}%)")


if __name__ == "__main__":
    main()
