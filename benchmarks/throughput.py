"""Env steps per second of a full MAML iteration next to built-in PPO, and meta-update cost.

One run, one process tree, same env, same EnvRunners and the same number of env
steps per iteration for all runs; ratios are what to compare across machines. MAML
is measured on both RLlib API stacks (``--no-old-api-stack`` skips the old one).

    python benchmarks/throughput.py --env rllib_maml/HalfCheetahRandDirec-v0 --iters 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import ray
import torch
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_maml  # noqa: F401  (registers envs and MAML)
from rllib_maml import MAMLConfig


def timed_iterations(train: Callable[[], Dict], iters: int) -> List[float]:
    """Env steps/s of each of ``iters`` iterations (after one warm-up iteration)."""
    train()
    rates = []
    for _ in range(iters):
        start = time.perf_counter()
        result = train()
        # Both stacks report it here (MAML's old-stack results add the key for parity).
        rates.append(result["env_runners"]["num_env_steps_sampled"] / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="rllib_maml/HalfCheetahRandDirec-v0")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--num-env-runners", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=5, help="vector sub-envs per EnvRunner")
    parser.add_argument("--meta-batch-size", type=int, default=10)
    parser.add_argument("--episodes-per-task", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=100, help="episode length of --env, for PPO's batch size")
    parser.add_argument("--no-old-api-stack", action="store_true", help="skip MAML on the old API stack")
    args = parser.parse_args()

    # Same intra-op setting for both algorithms' driver-side Learner (see MAMLConfig.torch_num_threads).
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    steps_per_iteration = args.meta_batch_size * args.episodes_per_task * args.horizon * 2

    maml_config = (
        MAMLConfig()
        .environment(args.env)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=args.num_envs)
        .training(meta_batch_size=args.meta_batch_size, episodes_per_task=args.episodes_per_task)
        .debugging(seed=0)
    )
    maml = maml_config.build_algo()
    maml_rates = timed_iterations(maml.train, args.iters)

    # Meta-update cost, first vs second order, on identical rollouts.
    rollouts = maml._sample_adaptation(maml.sample_tasks(args.meta_batch_size), 1)
    maml.stop()  # free its EnvRunners' CPUs (Ray has only 2 here)
    old_stack_rates: List[float] = []
    if not args.no_old_api_stack:
        old_stack = (
            maml_config.copy(copy_frozen=False)
            .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
            .build_algo()
        )
        old_stack_rates = timed_iterations(old_stack.train, args.iters)
        old_stack.stop()
    update_seconds = {}
    for first_order in (True, False):
        algo = (
            maml_config.copy(copy_frozen=False)
            .env_runners(num_env_runners=0)
            .training(first_order=first_order)
            .build_algo()
        )
        algo._learner_call("meta_update", rollouts=rollouts)  # warm-up
        start = time.perf_counter()
        algo._learner_call("meta_update", rollouts=rollouts)
        update_seconds[first_order] = time.perf_counter() - start
        algo.stop()

    ppo = (
        PPOConfig()
        .environment(args.env)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=args.num_envs)
        .training(train_batch_size_per_learner=steps_per_iteration, minibatch_size=min(4000, steps_per_iteration), num_epochs=10)
        .debugging(seed=0)
        .build_algo()
    )
    ppo_rates = timed_iterations(ppo.train, args.iters)
    ppo.stop()
    ray.shutdown()

    maml_rate, ppo_rate = statistics.median(maml_rates), statistics.median(ppo_rates)
    print(f"\nenv={args.env} runners={args.num_env_runners}x{args.num_envs} envs, "
          f"{steps_per_iteration} env steps per iteration, median of {args.iters} iterations")
    print("| measure | value |\n|---|---|")
    print(f"| MAML env steps/s (full iteration: sampling + inner steps + meta-update) | {maml_rate:,.0f} |")
    print(f"| built-in PPO env steps/s (full iteration, 10 epochs) | {ppo_rate:,.0f} |")
    print(f"| MAML / PPO | {maml_rate / ppo_rate:.2f} |")
    if old_stack_rates:
        old_rate = statistics.median(old_stack_rates)
        print(f"| MAML env steps/s, old API stack (MAMLTorchPolicy, RolloutWorkers) | {old_rate:,.0f} |")
        print(f"| MAML old stack / new stack | {old_rate / maml_rate:.2f} |")
    print(f"| meta-update, first order ({args.meta_batch_size} tasks, 5 Adam steps) | {update_seconds[True]:.2f} s |")
    print(f"| meta-update, second order | {update_seconds[False]:.2f} s |")
    print(f"| second / first order | {update_seconds[False] / update_seconds[True]:.2f} |")


if __name__ == "__main__":
    main()
