"""Builds the driver-side env from an RLlib config and checks its task interface."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from ray.rllib.env.env_context import EnvContext
from ray.tune.registry import ENV_CREATOR, _global_registry

from rllib_maml.task_settable_env import TASK_INTERFACE, missing_task_methods


def make_task_env(config: Any) -> gym.Env:
    """Creates one env as RLlib's EnvRunners would (Tune-registered name, callable or
    gymnasium id) and checks it implements the task interface.

    Raises:
        ValueError: naming the env if it cannot be created or lacks a task method.
    """
    env_spec = config.env
    if not env_spec:
        raise ValueError("MAML needs an env: call config.environment(env=...) with a task-settable env.")
    env_ctx = EnvContext(config.env_config or {}, worker_index=0)
    try:
        if isinstance(env_spec, str) and _global_registry.contains(ENV_CREATOR, env_spec):
            env = _global_registry.get(ENV_CREATOR, env_spec)(env_ctx)
        elif isinstance(env_spec, str):
            env = gym.make(env_spec, **(config.env_config or {}))
        elif callable(env_spec):
            env = env_spec(env_ctx)
        else:
            raise TypeError(f"unsupported env descriptor of type {type(env_spec).__name__}")
    except gym.error.Error as err:
        raise ValueError(f"config.env={env_spec!r} cannot be made: {err}") from err
    missing = missing_task_methods(env)
    if missing:
        raise ValueError(
            f"config.env={env_spec!r} does not implement MAML's task interface: it lacks "
            f"{', '.join(missing)}. MAML needs {', '.join(TASK_INTERFACE)}; subclass "
            "rllib_maml.TaskSettableEnv."
        )
    # Before any reset, which may draw a task itself: a short task list fails here, by name.
    drawn = len(list(env.unwrapped.sample_tasks(2)))
    if drawn != 2:
        env.close()
        raise ValueError(
            f"config.env={env_spec!r}: sample_tasks(2) returned {drawn} tasks; it must return exactly the number asked for."
        )
    return env

