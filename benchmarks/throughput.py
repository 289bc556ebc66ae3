"""MAML's speed against the simulator's raw rate and built-in PPO, measured side by side in one run.

    python benchmarks/throughput.py                       # HalfCheetahRandDirec, 2 runners, ~8 min
    python benchmarks/throughput.py --iters 3 --no-old-api-stack

One process tree, one env, the same cores for every measurement; the machine is
shared and noisy, so compare the printed *ratios*, not absolute rates across runs.

Prints:
  * the raw gymnasium step rate (random actions, one Ray task per core, summed);
  * MAML full iteration / raw and MAML sampling alone / raw, at 10 x 10 and 40 x 20
    tasks x episodes (``timers/maml_sampling_s`` of each iteration), with the default
    linear baseline, and at 40 x 20 with ``baseline="value_function"``;
  * the meta-update's share of an iteration at both sizes;
  * MAML / built-in PPO, PPO at the better of 5 and 25 sub-envs per runner and
    the same env steps per iteration;
  * RLlib's own SingleAgentEnvRunner sampling alone at MAML's 40 x 20 width / raw: what
    RLlib's per-step cost (episodes, connectors) leaves of the raw rate, beside MAML's;
  * second- / first-order meta-update time on the same 40 x 20 rollouts;
  * peak RSS of the driver and of each EnvRunner after the 40 x 20 iterations;
  * MAML on the old API stack at 10 x 10.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import gymnasium as gym
import numpy as np
import ray
import torch
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_maml  # noqa: F401  (registers envs and MAML)
from rllib_maml import MAMLConfig
from rllib_maml.algorithm.metrics import META_UPDATE_TIMER, SAMPLING_TIMER


@ray.remote(num_cpus=1)
def raw_rate(env_id: str, seconds: float) -> float:
    """gymnasium steps/s of ``env_id`` with random actions on one core (one fixed task)."""
    import rllib_maml  # noqa: F401,F811  (registers the env ids in this worker)

    env = gym.make(env_id)
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1)[0])
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(1000):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        steps += 1000
    return steps / (time.perf_counter() - start)


@dataclasses.dataclass
class Measured:
    """Medians of one configuration's timed iterations."""

    rate: float  # env steps/s of whole iterations
    sampling_rate: float = math.nan  # env steps/s while sampling
    update_share: float = math.nan  # meta-update seconds / iteration seconds


def timed_iterations(train: Callable[[], Dict[str, Any]], iters: int) -> Measured:
    """Medians over ``iters`` iterations, after one warm-up iteration."""
    train()
    rates, sampling, shares = [], [], []
    for _ in range(iters):
        start = time.perf_counter()
        result = train()
        seconds = time.perf_counter() - start
        steps = result["env_runners"]["num_env_steps_sampled"]
        rates.append(steps / seconds)
        timers = result.get("timers", {})
        if SAMPLING_TIMER in timers:
            sampling.append(steps / timers[SAMPLING_TIMER])
            shares.append(timers[META_UPDATE_TIMER] / seconds)
    median = statistics.median
    return Measured(median(rates), median(sampling) if sampling else math.nan, median(shares) if shares else math.nan)


def sub_envs_per_runner(meta_batch_size: int, episodes_per_task: int, runners: int, max_width: int) -> int:
    """A vector width that gives every task of a runner the same number of sub-envs, each
    running the same number of episodes: tasks per runner x the largest divisor of
    ``episodes_per_task`` that keeps the width <= ``max_width``."""
    tasks = math.ceil(meta_batch_size / runners)
    per_task = max(d for d in range(1, episodes_per_task + 1) if episodes_per_task % d == 0 and (d == 1 or tasks * d <= max_width))
    return tasks * per_task


def maml_config(args: argparse.Namespace, meta_batch_size: int, episodes_per_task: int, baseline: str = "linear") -> MAMLConfig:
    width = sub_envs_per_runner(meta_batch_size, episodes_per_task, args.num_env_runners, args.max_width)
    return (
        MAMLConfig()
        .environment(args.env)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=width)
        .training(meta_batch_size=meta_batch_size, episodes_per_task=episodes_per_task, baseline=baseline)
        .debugging(seed=0)
    )


def peak_rss_mb(algo: Any) -> Tuple[float, List[float]]:
    """Peak resident set size (MB) of this (driver) process and of each remote EnvRunner."""
    def peak(*_: Any) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    return peak(), list(algo.env_runner_group.foreach_env_runner(peak, local_env_runner=False))


def env_runner_sampling_rate(args: argparse.Namespace, width: int, steps_per_runner: int) -> float:
    """Env steps/s of RLlib's own SingleAgentEnvRunners (built-in PPO's, with a 64 x 64 tanh
    policy as MAML's) sampling alone, all runners at once; median of ``args.iters`` calls
    after a warm-up call."""
    ppo = (
        PPOConfig()
        .environment(args.env)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=width)
        .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"})
        .debugging(seed=0)
        .build_algo()
    )

    def sample(runner: Any) -> int:
        return sum(len(episode) for episode in runner.sample(num_timesteps=steps_per_runner))

    try:
        rates = []
        for call in range(args.iters + 1):
            start = time.perf_counter()
            steps = sum(ppo.env_runner_group.foreach_env_runner(sample, local_env_runner=False))
            if call:  # the first call warms up
                rates.append(steps / (time.perf_counter() - start))
        return statistics.median(rates)
    finally:
        ppo.stop()


def update_seconds(algo: Any, rollouts: Any, first_order: bool) -> float:
    """One meta-update on ``rollouts`` (after a warm-up one), first or second order."""
    def run(learner: Any) -> float:
        updater = learner.maml
        saved = updater.settings
        updater.settings = dataclasses.replace(saved, first_order=first_order)
        try:
            updater.meta_update(rollouts)
            start = time.perf_counter()
            updater.meta_update(rollouts)
            return time.perf_counter() - start
        finally:
            updater.settings = saved

    return next(iter(algo.learner_group.foreach_learner(run))).get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="rllib_maml/HalfCheetahRandDirec-v0")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per measurement (after a warm-up)")
    parser.add_argument("--num-env-runners", type=int, default=2)
    parser.add_argument("--max-width", type=int, default=100, help="most vector sub-envs per MAML EnvRunner")
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--no-old-api-stack", action="store_true", help="skip MAML on the old API stack")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the same intra-op setting for both algorithms' driver-side Learner
    ray.init(num_cpus=args.num_env_runners, include_dashboard=False, log_to_driver=False)
    horizon = gym.spec(args.env).max_episode_steps
    rows: List[Tuple[str, str]] = []

    def add(name: str, value: str) -> None:
        """Keeps a table row, and prints it at once: the whole run takes minutes."""
        rows.append((name, value))
        print(f"[throughput] {name}: {value}", file=sys.stderr, flush=True)

    def measure_raw() -> float:
        return sum(ray.get([raw_rate.remote(args.env, args.raw_seconds) for _ in range(args.num_env_runners)]))

    # Measured again right before each MAML size, and each size's "/ raw" uses its own: on a
    # shared machine the load drifts, and a raw rate from minutes earlier would skew the ratio.
    raws = [measure_raw()]
    add(f"raw gymnasium env steps/s ({args.num_env_runners} processes, random actions), first", f"{raws[0]:,.0f}")

    measured: Dict[str, Measured] = {}
    # The sizes without a baseline in their label use the library default, linear, which runs the
    # policy alone in the update (see MAMLMetaUpdater._loss_forward); value_function also trains
    # the value MLP through the inner steps, so its update is measured beside it.
    sizes = {"10 x 10": (10, 10, "linear"), "40 x 20": (40, 20, "linear"), "40 x 20, value_function baseline": (40, 20, "value_function")}
    for label, (tasks, episodes, baseline) in sizes.items():
        if measured:  # the first size uses the raw rate measured just above
            # Before building: the raw-rate tasks need every CPU the runners would hold.
            raws.append(measure_raw())
        config = maml_config(args, tasks, episodes, baseline)
        algo = config.build_algo()
        raw = raws[-1]
        measured[label] = timed_iterations(algo.train, args.iters)
        m = measured[label]
        add(f"raw env steps/s just before MAML {label}", f"{raw:,.0f}")
        width = config.num_envs_per_env_runner
        add(f"MAML {label}: full iteration env steps/s ({args.num_env_runners} runners x {width} sub-envs)", f"{m.rate:,.0f}")
        add(f"MAML {label}: full iteration / raw", f"{m.rate / raw:.2f}")
        add(f"MAML {label}: sampling alone / raw", f"{m.sampling_rate / raw:.2f}")
        add(f"MAML {label}: meta-update share of the iteration", f"{m.update_share:.2f}")
        if label == "40 x 20":
            driver, runners = peak_rss_mb(algo)
            add("peak RSS at 40 x 20: driver (Learner) / each EnvRunner", f"{driver:,.0f} MB / " + ", ".join(f"{r:,.0f}" for r in runners) + " MB")
        if tasks == 40:
            rollouts = algo.sample_adaptation(algo.sample_tasks(tasks), 1)
            first, second = (update_seconds(algo, rollouts, first_order) for first_order in (True, False))
            add(f"meta-update at {label}, first / second order (5 Adam steps)", f"{first:.2f} s / {second:.2f} s")
            add(f"second / first order at {label}", f"{second / first:.2f}")
        algo.stop()

    steps_per_iteration = 10 * 10 * horizon * 2
    ppo_rates = {}
    for width in (5, 25):
        ppo = (
            PPOConfig()
            .environment(args.env)
            .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=width)
            .training(train_batch_size_per_learner=steps_per_iteration, minibatch_size=4000, num_epochs=10)
            .debugging(seed=0)
            .build_algo()
        )
        ppo_rates[width] = timed_iterations(ppo.train, args.iters).rate
        ppo.stop()
        add(f"built-in PPO env steps/s ({args.num_env_runners} runners x {width} sub-envs, 10 epochs)", f"{ppo_rates[width]:,.0f}")
    best_ppo = max(ppo_rates.values())
    add("MAML 10 x 10 / best built-in PPO", f"{measured['10 x 10'].rate / best_ppo:.2f}")
    add("MAML 40 x 20 / best built-in PPO", f"{measured['40 x 20'].rate / best_ppo:.2f}")
    add("MAML 40 x 20, value_function baseline / best built-in PPO", f"{measured['40 x 20, value_function baseline'].rate / best_ppo:.2f}")

    # RLlib's own EnvRunner at MAML's 40 x 20 width, sampling alone: the part of the raw rate
    # that RLlib's per-step cost (episode objects, connectors) leaves to any EnvRunner.
    raws.append(measure_raw())
    width = sub_envs_per_runner(40, 20, args.num_env_runners, args.max_width)  # MAML's 40 x 20 width
    rllib_rate = env_runner_sampling_rate(args, width, 40 * 20 * horizon // args.num_env_runners)
    add("raw env steps/s just before RLlib's own EnvRunner", f"{raws[-1]:,.0f}")
    add(f"RLlib SingleAgentEnvRunner, sampling alone ({args.num_env_runners} runners x {width} sub-envs) env steps/s",
        f"{rllib_rate:,.0f}")
    add("RLlib SingleAgentEnvRunner, sampling alone / raw", f"{rllib_rate / raws[-1]:.2f}")
    add("MAML 40 x 20 sampling alone / RLlib SingleAgentEnvRunner sampling alone",
        f"{measured['40 x 20'].sampling_rate / rllib_rate:.2f}")

    if not args.no_old_api_stack:
        config = (
            maml_config(args, 10, 10)
            .env_runners(num_envs_per_env_runner=10)
            .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        )
        old = config.build_algo()
        old_rate = timed_iterations(old.train, args.iters).rate
        old.stop()
        add("MAML 10 x 10, old API stack (one task per RolloutWorker x 10 sub-envs) env steps/s", f"{old_rate:,.0f}")
        add("old stack / new stack at 10 x 10", f"{old_rate / measured['10 x 10'].rate:.2f}")
    raws.append(measure_raw())
    add("raw env steps/s, last / first (load drift during the run)", f"{raws[-1]:,.0f} / {raws[0]:,.0f} = {raws[-1] / raws[0]:.2f}")
    ray.shutdown()

    print(f"\nenv={args.env}, {args.num_env_runners} EnvRunners, median of {args.iters} iterations after a warm-up")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
