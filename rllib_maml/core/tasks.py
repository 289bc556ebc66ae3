"""The task interface every MAML task distribution implements."""

from __future__ import annotations

import abc
from typing import Any, Generic, List, Optional, TypeVar

import gymnasium as gym

TaskType = TypeVar("TaskType")

#: Methods an env must have for MAML to set and sample its tasks.
TASK_INTERFACE = ("sample_tasks", "set_task", "get_task")


class TaskSettableEnv(gym.Env, Generic[TaskType], abc.ABC):
    """A gymnasium env whose dynamics or reward depend on a settable *task*.

    Ray 2.60 removed RLlib's ``TaskSettableEnv``; this is its replacement for the new
    API stack. A task is a plain, picklable value (a float, a numpy array, a dict)
    that fully describes one member of the task distribution, so it can be sent to
    EnvRunners and stored in results.

    Contract:
        * ``sample_tasks(n)`` draws ``n`` tasks from the distribution using
          ``self.np_random`` (so seeding the env seeds the task stream).
        * ``set_task(task)`` makes ``task`` the current task; it takes effect from
          the next ``reset()`` on and stays until the next ``set_task``.
        * ``get_task()`` returns the current task, equal to what was last set.
        * When nothing ever called ``set_task``, every ``reset()`` draws a fresh
          task, so an algorithm that knows nothing of tasks (e.g. built-in PPO)
          trains across the whole distribution.
    """

    _task: Optional[TaskType] = None
    _task_fixed: bool = False

    @abc.abstractmethod
    def sample_tasks(self, n_tasks: int) -> List[TaskType]:
        """Draws ``n_tasks`` tasks from this env's task distribution."""

    def set_task(self, task: TaskType) -> None:
        """Fixes the task for all following episodes (from the next reset on)."""
        self._task = self._validate_task(task)
        self._task_fixed = True

    def get_task(self) -> TaskType:
        """Returns the current task (the last one set, or the last one drawn)."""
        if self._task is None:
            self._task = self.sample_tasks(1)[0]
        return self._task

    def task_group(self, task: TaskType) -> Optional[str]:
        """Names the group a task belongs to (e.g. a morphology), for per-group metrics.

        Returns None (the default) when the distribution has no meaningful groups.
        """
        return None

    def _validate_task(self, task: Any) -> TaskType:
        """Checks and normalises a task before it is set; override to validate."""
        return task

    def _task_for_new_episode(self) -> TaskType:
        """The task of the episode that ``reset()`` starts: fixed, or freshly drawn."""
        if not self._task_fixed:
            self._task = self.sample_tasks(1)[0]
        return self.get_task()


def missing_task_methods(env: Any) -> List[str]:
    """Names the methods of :data:`TASK_INTERFACE` that ``env`` lacks (wrappers are looked through)."""
    base = getattr(env, "unwrapped", env)
    return [name for name in TASK_INTERFACE if not callable(getattr(base, name, None))]
