"""Inner-adaptation hooks that run on an EnvRunner: set its task, load its weights, sample.

An EnvRunner holds one set of weights, so it serves one task at a time; its
vectorized sub-envs all get that task and yield its episodes in parallel.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from rllib_maml.rollouts import TaskRollout


def set_task_on_runner(env_runner: SingleAgentEnvRunner, task: Any) -> Optional[str]:
    """Sets ``task`` on every sub-env of ``env_runner``; returns the task's group name."""
    vector_env = env_runner.env.unwrapped
    vector_env.call("set_task", task)
    return vector_env.call("task_group", task)[0]


def load_weights_on_runner(env_runner: SingleAgentEnvRunner, weights: Dict[str, np.ndarray]) -> None:
    """Loads (adapted) weights into the runner's RLModule."""
    env_runner.module.set_state(weights)


def sample_task(
    env_runner: SingleAgentEnvRunner,
    *,
    task_index: int,
    step: int,
    task: Any,
    weights: Dict[str, np.ndarray],
    num_episodes: int,
) -> TaskRollout:
    """Samples ``num_episodes`` fresh episodes of ``task`` with ``weights``, labelled ``(task_index, step)``."""
    group = set_task_on_runner(env_runner, task)
    load_weights_on_runner(env_runner, weights)
    # num_episodes forces a reset of all sub-envs, so no episode straddles two tasks.
    episodes = env_runner.sample(num_episodes=num_episodes, explore=True)
    # MAML reports its own step-labelled metrics; drain the runner's so they don't pile up.
    env_runner.get_metrics()
    return TaskRollout.from_episodes(episodes, task_index=task_index, step=step, task=task, group=group)
