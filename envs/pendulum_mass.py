"""Pendulum swing-up with a random pole mass."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from gymnasium.utils import EzPickle

from rllib_maml.core.tasks import TaskSettableEnv


class PendulumMassEnv(PendulumEnv, TaskSettableEnv[float], EzPickle):
    """Gymnasium's ``Pendulum-v1`` whose pole mass is the task.

    ## Description
    The classic inverted-pendulum swing-up (``gymnasium.envs.classic_control.
    pendulum.PendulumEnv``); only the mass ``m`` of the pole changes between tasks,
    so the torque needed to swing up and balance differs per task. A cheap
    dynamics-adaptation benchmark, like RLlib's old ``PendulumMassEnv`` example.

    ## Task distribution
    A task is the pole mass, a ``float`` drawn from ``U(0.5, 2.0)`` (gymnasium's
    default mass is 1.0).

    ## Action Space
    ``Box(-2.0, 2.0, (1,), float32)``: the torque, as in ``Pendulum-v1``.

    ## Observation Space
    ``Box([-1, -1, -8], [1, 1, 8], (3,), float32)``: ``cos(theta), sin(theta),
    theta_dot``, as in ``Pendulum-v1``.

    ## Rewards
    ``-(theta^2 + 0.1 * theta_dot^2 + 0.001 * torque^2)``, as in ``Pendulum-v1``.

    ## Episode End
    No termination; truncated after 200 steps (``max_episode_steps`` of the
    registered ``rllib_maml/PendulumMass-v0``).

    ## Arguments
    ``config`` (optional dict) is accepted for RLlib's env-creator convention and
    ignored; ``render_mode`` and ``g`` as in ``Pendulum-v1``.
    """

    mass_range = (0.5, 2.0)

    def __init__(
        self,
        config: Optional[Dict[str, Any]] = None,
        render_mode: Optional[str] = None,
        g: float = 10.0,
    ) -> None:
        PendulumEnv.__init__(self, render_mode=render_mode, g=g)
        EzPickle.__init__(self, config, render_mode, g)

    def sample_tasks(self, n_tasks: int) -> List[float]:
        return [float(m) for m in self.np_random.uniform(*self.mass_range, size=n_tasks)]

    def _validate_task(self, task: Any) -> float:
        mass = float(task)
        if not mass > 0:
            raise ValueError(f"PendulumMassEnv task is a positive mass, got {task!r}")
        return mass

    def reset(
        self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None
    ) -> Tuple[np.ndarray, Dict[str, Any]]:
        if seed is not None:
            # Seed before drawing the episode's task, so the task stream is seeded too.
            super(PendulumEnv, self).reset(seed=seed)
        self.m = self._task_for_new_episode()
        obs, info = super().reset(options=options)
        return obs, {**info, "task": self.m}

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float(reward), terminated, truncated, {**info, "task": self.m}
