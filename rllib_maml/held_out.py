"""Fixed held-out tasks, so before/after comparisons use the very same tasks."""

from __future__ import annotations

from typing import Any, List

from rllib_maml.task_env import make_task_env

#: Seed of the held-out task draw, shared by ``compare``, ``evaluate``, the quickstart and
#: the held-out meta-test during training (``MAMLConfig.evaluation_task_seed``).
HELD_OUT_SEED = 12345


def held_out_tasks(config: Any, num_tasks: int, seed: int = HELD_OUT_SEED) -> List[Any]:
    """Draws ``num_tasks`` tasks of ``config``'s env from a fresh env seeded with ``seed``.

    The env is made as the runners make it (a Tune-registered name, a gymnasium id or a
    callable, with ``config.env_config``). The seed is independent of training's task
    stream (``config.seed``), so these tasks are, with probability 1 for continuous
    distributions, never trained on.

    Raises:
        ValueError: naming the env if it cannot be made, lacks the task interface or
            its ``sample_tasks`` returns the wrong number of tasks.
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
