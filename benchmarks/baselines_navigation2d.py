"""The two GAE baselines side by side on Navigation2D, in the learning test's setting.

    python benchmarks/baselines_navigation2d.py                       # PPO, seeds 0 and 1, both baselines
    python benchmarks/baselines_navigation2d.py --meta-optimizers ppo trpo vpg --old-api-stack

Each run is ``train_and_evaluate(12, num_eval_tasks=10, ...)`` on
``navigation2d_config(seed)`` (what ``tests/test_learning.py`` and ``make demo``
run), with only ``baseline`` (and ``meta_optimizer``) changed. Prints one row per
run: the held-out return after one inner step, untrained and trained, and the mean
training ``adaptation_delta``. The measurements that chose the library's default
baseline (README, "Choices that differ between MAML implementations").
"""

from __future__ import annotations

import argparse
import time
from typing import List

import numpy as np
import ray

from rllib_maml.algorithm.validation import BASELINES
from rllib_maml.tools.quickstart import navigation2d_config, train_and_evaluate


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--baselines", nargs="+", choices=BASELINES, default=list(BASELINES))
    parser.add_argument("--meta-optimizers", nargs="+", choices=("ppo", "trpo", "vpg"), default=["ppo"])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--old-api-stack", action="store_true", help="also run PPO on the old API stack, first seed")
    args = parser.parse_args(argv)

    runs = [(False, seed, mo, b) for mo in args.meta_optimizers for seed in args.seeds for b in args.baselines]
    if args.old_api_stack:
        runs += [(True, args.seeds[0], "ppo", b) for b in args.baselines]
    ray.init(num_cpus=2, include_dashboard=False)
    print("| stack | seed | meta-optimizer | baseline | after 1 step: untrained -> trained | improvement | mean adaptation_delta | s |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for old_stack, seed, meta_optimizer, baseline in runs:
        start = time.time()
        config = navigation2d_config(seed, old_api_stack=old_stack).training(baseline=baseline, meta_optimizer=meta_optimizer)
        before, after, results = train_and_evaluate(args.iterations, num_eval_tasks=10, config=config, verbose=False)
        b, a = before["episode_return_mean_adapt_1"], after["episode_return_mean_adapt_1"]
        delta = float(np.mean([r["maml"]["adaptation_delta"] for r in results]))
        print(f"| {'old' if old_stack else 'new'} | {seed} | {meta_optimizer} | {baseline} | {b:.2f} -> {a:.2f} | "
              f"{a - b:+.2f} | {delta:+.2f} | {time.time() - start:.0f} |", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
