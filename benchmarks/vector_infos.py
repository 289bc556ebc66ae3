"""What MAMLEnvRunner's list infos and skipped ``on_episode_step`` call buy, side by side in one process.

    python benchmarks/vector_infos.py            # HalfCheetahRandDirec, 100 sub-envs, ~1 min

One local ``MAMLEnvRunner`` (no Ray actors) samples the same jobs (20 tasks x 10 episodes
on 100 sub-envs) in interleaved repeats with three set-ups of the same sub-envs:

* ``rllib``: RLlib's env as built: gymnasium's ``SyncVectorEnv`` packs the sub-envs' infos
  into per-key arrays and ``DictInfoToList`` unpacks them, and ``on_episode_step`` is
  called for every sub-env and step;
* ``list infos``: :class:`rllib_maml.algorithm.vector_env.ListInfoSyncVectorEnv`;
* ``list infos + skip``: the same, with the ``on_episode_step`` no-op skipped (the runner's default).

Prints env steps/s per repeat, the medians and their ratios to ``rllib``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List

import ray
from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers.vector import DictInfoToList

import rllib_maml  # noqa: F401  (registers envs and MAML)
from rllib_maml import MAMLConfig
from rllib_maml.algorithm.env_runner import SamplingJob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="rllib_maml/HalfCheetahRandDirec-v0")
    parser.add_argument("--width", type=int, default=100, help="sub-envs")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=10, help="per task")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    algo = (
        MAMLConfig()
        .environment(args.env)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=args.width)
        .training(meta_batch_size=args.tasks, episodes_per_task=args.episodes)
        .debugging(seed=0)
        .build_algo()
    )
    runner = algo.env_runner
    list_env = runner.env
    rllib_env = DictInfoToList(SyncVectorEnv([lambda sub_env=sub_env: sub_env for sub_env in list_env.unwrapped.envs]))
    tasks = runner._sub_envs()[0].unwrapped.sample_tasks(args.tasks)
    theta = algo.theta_holder.theta_weights()
    jobs = [SamplingJob(task_index=i, step=0, task=task, weights=theta) for i, task in enumerate(tasks)]
    runner.sample_jobs(jobs[:2], 1, 0)  # warm-up

    setups = {"rllib": (rllib_env, True), "list infos": (list_env, True), "list infos + skip": (list_env, False)}
    rates: Dict[str, List[float]] = {name: [] for name in setups}
    for repeat in range(args.repeats):
        for name, (env, call_on_episode_step) in setups.items():
            runner.env = env
            runner._listens_to_episode_step = call_on_episode_step
            start = time.perf_counter()
            rollouts = runner.sample_jobs(jobs, args.episodes, reset_seed=repeat)
            steps = sum(len(r.actions) for r in rollouts)
            rates[name].append(steps / (time.perf_counter() - start))
    algo.stop()
    ray.shutdown()

    base = statistics.median(rates["rllib"])
    print(f"\n{args.env}, {args.width} sub-envs, {args.tasks} tasks x {args.episodes} episodes, one process")
    print("| set-up | env steps/s per repeat | median | / rllib |\n|---|---|---:|---:|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {', '.join(f'{v:,.0f}' for v in values)} | {median:,.0f} | {median / base:.3f} |")


if __name__ == "__main__":
    main()
