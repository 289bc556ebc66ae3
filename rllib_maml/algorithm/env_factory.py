"""The one way this package makes an env: as RLlib's EnvRunners would, on the driver.

Training (:class:`rllib_maml.MAML`), config validation, the held-out task draw, the
experiment YAMLs and ``compare`` / ``evaluate`` all make their envs here, so a
Tune-registered name, a gymnasium id, a class path and a callable work alike
everywhere, and every failure names the env.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

import gymnasium as gym
import numpy as np
from ray.rllib.env.env_context import EnvContext
from ray.rllib.utils.serialization import deserialize_type
from ray.tune.registry import ENV_CREATOR, _global_registry

from rllib_maml.core.tasks import TASK_INTERFACE, missing_task_methods

#: Seed of the held-out task draw, shared by ``compare``, ``evaluate``, the quickstart and
#: the held-out meta-test during training (``MAMLConfig.evaluation_task_seed``).
HELD_OUT_SEED = 12345


def make_env(env_spec: Any, env_config: Optional[Mapping[str, Any]] = None) -> gym.Env:
    """Creates one env from an RLlib env descriptor.

    Args:
        env_spec: a Tune-registered name, a gymnasium id (``"module:EnvId"`` imports
            ``module`` first), a ``gymnasium.Env`` class path, or a callable (an env
            class or creator) taking an ``EnvContext``.
        env_config: the env's config (``config.env_config``).

    Raises:
        ValueError: naming the env: unknown, or the first line of the error that stopped it.
    """
    env_config = dict(env_config or {})
    context = EnvContext(env_config, worker_index=0)
    if not env_spec:
        raise ValueError("MAML needs an env: call config.environment(env=...) with a task-settable env.")
    registered = isinstance(env_spec, str) and _global_registry.contains(ENV_CREATOR, env_spec)
    if isinstance(env_spec, str) and not (registered or env_spec in gym.registry or ":" in env_spec or "." in env_spec):
        raise ValueError(f"unknown env {env_spec!r}: not a registered gymnasium id, Tune env name or gymnasium.Env class path")
    try:
        if registered:  # Tune's registry is private in Ray 2.60; RLlib's EnvRunners read it the same way
            return _global_registry.get(ENV_CREATOR, env_spec)(context)
        if isinstance(env_spec, str) and (env_spec in gym.registry or ":" in env_spec):  # "module:EnvId" imports module
            return gym.make(env_spec, **env_config)
        if isinstance(env_spec, str):
            env_class = deserialize_type(env_spec)
            if not (isinstance(env_class, type) and issubclass(env_class, gym.Env)):
                raise ValueError("not a registered gymnasium id, Tune env name or gymnasium.Env class path")
            return env_class(context)
        if callable(env_spec):
            return env_spec(context)
        raise TypeError(f"unsupported env descriptor of type {type(env_spec).__name__}")
    except Exception as err:  # the env's own constructor or gymnasium: report it in one line, by name
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"env {env_spec!r} cannot be made with env_config={env_config}: {first}") from None


def is_task_env(env: gym.Env) -> bool:
    """Whether ``env`` implements MAML's task interface (:class:`rllib_maml.TaskSettableEnv`)."""
    return not missing_task_methods(env)


def action_masks(env: gym.Env) -> Optional[List[List[float]]]:
    """An env's per-group action masks (``action_mask_table``, e.g. multi-morphology), as lists, or None."""
    masks = getattr(env.unwrapped, "action_mask_table", None)
    return None if masks is None else np.asarray(masks, dtype=float).tolist()


def make_task_env(config: Any) -> gym.Env:
    """``config``'s env (``config.env`` with ``config.env_config``), checked for the task interface.

    Raises:
        ValueError: naming the env if it cannot be made, lacks a task method, or its
            ``sample_tasks`` returns the wrong number of tasks.
    """
    env_spec = config.env
    env = make_env(env_spec, config.env_config)
    missing = missing_task_methods(env)
    if missing:
        env.close()
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


def held_out_tasks(config: Any, num_tasks: int, seed: int = HELD_OUT_SEED) -> List[Any]:
    """Draws ``num_tasks`` tasks of ``config``'s env from a fresh env seeded with ``seed``.

    The seed is independent of training's task stream (``config.seed``), so these
    tasks are, with probability 1 for continuous distributions, never trained on.

    Raises:
        ValueError: as :func:`make_task_env`.
    """
    env = make_task_env(config)
    try:
        env.reset(seed=seed)
        tasks = list(env.unwrapped.sample_tasks(num_tasks))
    finally:
        env.close()
    if len(tasks) != num_tasks:
        raise ValueError(f"config.env={config.env!r}: sample_tasks({num_tasks}) returned {len(tasks)} tasks")
    return tasks
