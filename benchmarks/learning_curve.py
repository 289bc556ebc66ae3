"""Held-out adaptation before and after a MAML training run, on any task-distribution env.

    python benchmarks/learning_curve.py --env rllib_maml/HalfCheetahRandDirec-v0 \
        --iterations 100 --inner-lr 0.3 --lr 3e-3

Prints the per-iteration training curve, then the mean return on 10 fixed held-out
tasks before adaptation and after one inner step, for the untrained policy and after
training (``rllib_maml.tools.quickstart.train_and_evaluate``). The README's MuJoCo learning
figures come from this script.
"""

from __future__ import annotations

import argparse
import time

import ray

import rllib_maml  # noqa: F401  (registers the envs)
from rllib_maml import MAMLConfig
from rllib_maml.tools.quickstart import train_and_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="rllib_maml/HalfCheetahRandDirec-v0")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--inner-lr", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-env-runners", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=50, help="vector sub-envs per EnvRunner (tasks per runner x sub-envs per task)")
    parser.add_argument("--meta-batch-size", type=int, default=10)
    parser.add_argument("--episodes-per-task", type=int, default=10)
    parser.add_argument("--eval-tasks", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = (
        MAMLConfig()
        .environment(args.env)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=args.num_envs)
        .training(
            meta_batch_size=args.meta_batch_size,
            episodes_per_task=args.episodes_per_task,
            inner_lr=args.inner_lr,
            lr=args.lr,
        )
        .debugging(seed=args.seed)
    )
    start = time.perf_counter()
    try:
        before, after, _ = train_and_evaluate(args.iterations, num_eval_tasks=args.eval_tasks, config=config)
    finally:
        ray.shutdown()
    print(f"\n{args.env}, {args.eval_tasks} held-out tasks, {args.iterations} iterations "
          f"({time.perf_counter() - start:.0f} s), mean episode return:")
    print("| policy | before adaptation | after 1 inner step | adaptation_delta |\n|---|---|---|---|")
    for name, curve in (("untrained", before), ("trained", after)):
        print(f"| {name} | {curve['episode_return_mean_adapt_0']:.2f} | "
              f"{curve['episode_return_mean_adapt_1']:.2f} | {curve['adaptation_delta']:+.2f} |")


if __name__ == "__main__":
    main()
