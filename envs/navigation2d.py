"""Point-robot navigation to a random goal: the MAML paper's 2D navigation task."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle

from rllib_maml.core.tasks import TaskSettableEnv


class Navigation2DEnv(TaskSettableEnv[np.ndarray], EzPickle):
    """A point agent moves in the plane towards a goal it cannot see.

    ## Description
    The 2D navigation problem of Finn et al., "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks" (ICML 2017), section 5.3. The agent starts at the
    origin each episode; the goal is only revealed through the reward, so a policy
    must adapt to find it.

    ## Task distribution
    A task is a goal position ``np.ndarray`` of shape ``(2,)``, drawn uniformly from
    ``[-0.5, 0.5]^2``.

    ## Action Space
    ``Box(-0.1, 0.1, (2,), float32)``: the displacement of one step. Actions outside
    the box are clipped.

    ## Observation Space
    ``Box(-inf, inf, (2,), float32)``: the agent's current position.

    ## Rewards
    ``reward = -||position_after_step - goal||_2``.

    ## Starting State
    The agent starts at ``(0, 0)``.

    ## Episode End
    No termination; episodes are truncated after 100 steps (``max_episode_steps`` of
    the registered ``rllib_maml/Navigation2D-v0``).

    ## Arguments
    ``gymnasium.make("rllib_maml/Navigation2D-v0")``; the env takes no arguments.
    ``reset(seed=...)`` seeds both the start and the task stream.
    """

    metadata = {"render_modes": []}
    max_step = 0.1
    goal_range = 0.5

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        EzPickle.__init__(self, config)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-self.max_step, self.max_step, (2,), np.float32)
        self._position = np.zeros(2, dtype=np.float32)
        self._goal = np.zeros(2, dtype=np.float32)

    def sample_tasks(self, n_tasks: int) -> List[np.ndarray]:
        goals = self.np_random.uniform(-self.goal_range, self.goal_range, size=(n_tasks, 2))
        return [goal.astype(np.float32) for goal in goals]

    def _validate_task(self, task: Any) -> np.ndarray:
        goal = np.asarray(task, dtype=np.float32)
        if goal.shape != (2,):
            raise ValueError(f"Navigation2DEnv task must be a goal of shape (2,), got {task!r}")
        return goal

    def reset(
        self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None
    ) -> Tuple[np.ndarray, Dict[str, Any]]:
        super().reset(seed=seed)
        self._goal = self._task_for_new_episode()
        self._position = np.zeros(2, dtype=np.float32)
        return self._position.copy(), {"task": self._goal.copy()}

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        step = np.clip(np.asarray(action, dtype=np.float32), -self.max_step, self.max_step)
        self._position = (self._position + step).astype(np.float32)
        reward = -float(np.linalg.norm(self._position - self._goal))
        return self._position.copy(), reward, False, False, {"task": self._goal.copy()}
