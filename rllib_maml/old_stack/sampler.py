"""The old API stack's sampler: one task at a time on a ``RolloutWorker``.

A RolloutWorker's policy holds one set of weights, so it serves one task at a time;
its vectorized sub-envs all get that task and yield its episodes in parallel. (The
new stack samples several tasks per runner at once: :mod:`rllib_maml.algorithm.env_runner`.)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import gymnasium as gym
import numpy as np

from ray.rllib.evaluation.rollout_worker import RolloutWorker
from ray.rllib.policy.sample_batch import SampleBatch
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

from rllib_maml.core.data import TaskRollout


def sample_task_on_rollout_worker(
    worker: RolloutWorker,
    *,
    task_index: int,
    step: int,
    task: Any,
    weights: Dict[str, np.ndarray],
    num_episodes: int,
    reset_seed: Optional[int] = None,
) -> TaskRollout:
    """``num_episodes`` fresh episodes of ``task`` with ``weights``, labelled ``(task_index, step)``.

    ``reset_seed`` seeds the sub-envs' first reset (sub-env ``i`` gets ``reset_seed + i``),
    so every call starts from new initial states, reproducibly from ``config.seed``.

    ``RolloutWorker.sample()`` cannot start fresh episodes on demand: its sampler
    carries unfinished episodes over to the next call, where they would continue
    under another task's weights. So this hook steps the worker's own sub-envs with
    its own policy (``compute_actions``, RLlib's action unsquashing/clipping) from a
    reset. The policy gets its weights back afterwards, because on the driver's
    local worker it *is* theta.
    """
    policy = worker.get_policy()
    envs: List[gym.Env] = worker.foreach_env(lambda env: env)
    for env in envs:
        env.get_wrapper_attr("set_task")(task)
    group = envs[0].get_wrapper_attr("task_group")(task)
    config = worker.config

    def to_env(action: np.ndarray) -> np.ndarray:
        """What RLlib's old-stack sampler does to a policy action before ``env.step``."""
        if config.normalize_actions:
            return unsquash_action(action, policy.action_space_struct)
        if config.clip_actions:
            return clip_action(action, policy.action_space_struct)
        return action

    theta = policy.theta_weights()
    policy.load_theta(weights)
    try:
        columns = _run_episodes(policy.compute_actions, envs, num_episodes, to_env, reset_seed)
    finally:
        policy.load_theta(theta)
    return TaskRollout.from_episode_columns(task_index=task_index, step=step, task=task, group=group, **columns)


def _run_episodes(
    compute_actions: Callable[..., Any],
    envs: List[gym.Env],
    num_episodes: int,
    to_env: Callable[[np.ndarray], np.ndarray],
    reset_seed: Optional[int] = None,
) -> Dict[str, Any]:
    """Steps all ``envs`` in lock-step from a reset until ``num_episodes`` episodes ended.

    Returns per-episode columns for :meth:`TaskRollout.from_episode_columns`; an episode
    still running at the end is dropped (never cut), as the new stack does, and its
    steps are counted in ``num_dropped_env_steps``.
    """
    names = ("actions", "logp", "dist_inputs", "rewards")
    columns: Dict[str, Any] = {"obs": [], "terminated": [], **{n: [] for n in names}}
    seeds = [None] * len(envs) if reset_seed is None else [reset_seed + i for i in range(len(envs))]
    obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
    running = [{"obs": [o], **{n: [] for n in names}} for o in obs]
    while len(columns["terminated"]) < num_episodes:
        actions, _, extra = compute_actions(np.stack(obs), explore=True)
        for i, env in enumerate(envs):
            next_obs, reward, terminated, truncated, _ = env.step(to_env(actions[i]))
            episode = running[i]
            episode["actions"].append(actions[i])
            episode["logp"].append(extra[SampleBatch.ACTION_LOGP][i])
            episode["dist_inputs"].append(extra[SampleBatch.ACTION_DIST_INPUTS][i])
            episode["rewards"].append(reward)
            episode["obs"].append(next_obs)
            if terminated or truncated:
                for name in ("obs", *names):
                    columns[name].append(np.asarray(episode[name]))
                columns["terminated"].append(bool(terminated))
                next_obs = env.reset()[0]
                running[i] = {"obs": [next_obs], **{n: [] for n in names}}
            obs[i] = next_obs
    return {**columns, "num_dropped_env_steps": sum(len(episode["rewards"]) for episode in running)}
