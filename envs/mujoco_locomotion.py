"""MuJoCo locomotion task distributions (ProMP / MAML paper) on gymnasium's v5 envs.

Each env subclasses a gymnasium v5 MuJoCo env (same XML, dynamics, observation
and reset noise) and only changes the reward to depend on a settable task. The
v5 env computes its reward terms in ``info``; the task reward is rebuilt from
them, so ``reward == sum(v for k, v in info.items() if k.startswith("reward_"))``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.utils import EzPickle

from rllib_maml.core.tasks import TaskSettableEnv

TaskType = TypeVar("TaskType")

#: Keys RLlib adds to an env_config that are not env arguments (the vector size of
#: a Tune-registered env creator); dropped from ``config``.
RLLIB_CONFIG_KEYS = frozenset({"num_envs"})


def env_options(
    config: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any], defaults: Mapping[str, Any]
) -> Dict[str, Any]:
    """Merges an RLlib ``env_config`` dict with ``gym.make`` keyword arguments.

    Later wins: ``defaults`` < ``config`` < ``kwargs``. Keys in
    :data:`RLLIB_CONFIG_KEYS` are dropped.
    """
    options = dict(defaults)
    options.update({k: v for k, v in dict(config or {}).items() if k not in RLLIB_CONFIG_KEYS})
    options.update(kwargs)
    return options


def direction_task(task: Any, env_name: str) -> float:
    """Validates a direction task: ``+1.0`` (forward, +x) or ``-1.0`` (backward)."""
    try:
        direction = float(task)
    except (TypeError, ValueError):
        direction = np.nan
    if direction not in (-1.0, 1.0):
        raise ValueError(f"{env_name} task is a direction, +1.0 or -1.0; got {task!r}")
    return direction


class _V5LocomotionTask(TaskSettableEnv[TaskType]):
    """Shared ``reset``/``step`` of the single-morphology tasks; mixed in before a v5 env class.

    ``reset`` seeds ``np_random`` first (so a seed also fixes the task stream), then
    fixes the episode's task and resets the MuJoCo state. ``step`` rewrites the v5
    reward with :meth:`_task_reward`. A ``set_task`` mid-episode applies from the
    next ``reset``.
    """

    #: v5 constructor arguments this task distribution changes from gymnasium's defaults.
    default_kwargs: ClassVar[Dict[str, Any]] = {}
    #: Options that shape the task distribution (not v5 arguments): name -> default.
    task_options: ClassVar[Dict[str, Any]] = {}

    _episode_task: Optional[TaskType] = None

    def _init_v5(self, v5_class: type, config: Optional[Mapping[str, Any]], kwargs: Dict[str, Any]) -> None:
        options = env_options(config, kwargs, self.default_kwargs)
        for name, default in self.task_options.items():
            setattr(self, name, options.pop(name, default))
        v5_class.__init__(self, **options)
        # After the v5 env's own EzPickle call, so pickling rebuilds *this* class.
        EzPickle.__init__(self, config, **kwargs)

    def reset(
        self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None
    ) -> Tuple[np.ndarray, Dict[str, Any]]:
        if seed is not None:
            # Seed before drawing the episode's task, so the task stream is seeded too.
            gym.Env.reset(self, seed=seed)
        self._episode_task = self._task_for_new_episode()
        obs, info = super().reset(options=options)
        return obs, {**info, "task": self._task_info()}

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        if self._episode_task is None:
            raise gym.error.ResetNeeded(f"{type(self).__name__}: call reset() before step()")
        obs, reward, terminated, truncated, info = super().step(action)
        reward, info = self._task_reward(float(reward), dict(info))
        return obs, float(reward), terminated, truncated, {**info, "task": self._task_info()}

    def _task_info(self) -> Any:
        """The episode's task for ``info`` (a copy, so callers cannot change it)."""
        task = self._episode_task
        return task.copy() if isinstance(task, np.ndarray) else task

    def _task_reward(self, v5_reward: float, info: Dict[str, Any]) -> Tuple[float, Dict[str, Any]]:
        """The task's reward and the ``info`` with its ``reward_*`` terms updated."""
        raise NotImplementedError


def sample_directions(rng: np.random.Generator, n_tasks: int, directions: Tuple[float, ...] = (-1.0, 1.0)) -> List[float]:
    """``n_tasks`` directions drawn uniformly from ``directions`` (default: ``+1.0`` or ``-1.0``)."""
    return [float(d) for d in rng.choice(directions, size=n_tasks)]


class _V5DirectionTask(_V5LocomotionTask[float]):
    """The forward/backward task distribution shared by the ``*RandDirec`` envs.

    The ``directions`` option (default ``[-1.0, 1.0]``) narrows it: ``[1.0]`` is the
    *oracle* of ``benchmarks/diagnostic_ladder.py``, plain forward running.
    """

    task_options = {"directions": (-1.0, 1.0)}
    directions: Tuple[float, ...]

    def sample_tasks(self, n_tasks: int) -> List[float]:
        directions = tuple(direction_task(d, type(self).__name__) for d in self.directions)
        return sample_directions(self.np_random, n_tasks, directions)

    def _validate_task(self, task: Any) -> float:
        return direction_task(task, type(self).__name__)


class HalfCheetahRandDirecEnv(_V5DirectionTask, HalfCheetahEnv):
    """HalfCheetah that must run forward or backward.

    ## Description
    Gymnasium's ``HalfCheetah-v5`` (same model, observation and reset noise); the
    task says in which direction along x to run. The forward/backward task of
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks" (ICML 2017), section 5.3, as defined in ProMP's
    ``meta_policy_search/envs/mujoco_envs/half_cheetah_rand_direc.py``
    (Rothfuss et al., ICLR 2019), which RLlib's old MAML examples also used.

    ## Task distribution
    A task is the direction, a ``float``: ``+1.0`` (forward, +x) or ``-1.0``
    (backward), each with probability 1/2.

    ## Action Space
    ``Box(-1, 1, (6,), float32)``: torques of the six joints, as in ``HalfCheetah-v5``.

    ## Observation Space
    ``Box(-inf, inf, (17,), float64)``: joint positions (without the x position)
    and velocities, as in ``HalfCheetah-v5``. The task is not observed.

    ## Rewards
    ``direction * x_velocity - ctrl_cost_weight * ||action||^2`` with
    ``ctrl_cost_weight = 0.05`` (ProMP's and MAML's ``0.5 * 0.1``; gymnasium's
    default is 0.1). ``info["reward_forward"]`` is the direction-signed term.

    ## Episode End
    No termination; truncated after 100 steps (``max_episode_steps`` of the
    registered ``rllib_maml/HalfCheetahRandDirec-v0``).

    ## Arguments
    ``config`` (optional dict, RLlib's ``env_config``) and keyword arguments are
    both passed on to ``HalfCheetah-v5`` (keywords win), e.g.
    ``gym.make("rllib_maml/HalfCheetahRandDirec-v0", ctrl_cost_weight=0.1)``,
    except ``directions`` (default ``[-1.0, 1.0]``): the directions tasks are drawn
    from, e.g. ``[1.0]`` for forward running only.
    ``reset(seed=...)`` seeds the task stream and the MuJoCo reset noise.
    """

    default_kwargs = {"ctrl_cost_weight": 0.05}

    def __init__(self, config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        self._init_v5(HalfCheetahEnv, config, kwargs)

    def _task_reward(self, v5_reward: float, info: Dict[str, Any]) -> Tuple[float, Dict[str, Any]]:
        forward = self._episode_task * info["reward_forward"]
        info["reward_forward"] = forward
        return forward + info["reward_ctrl"], info


class HalfCheetahRandVelEnv(_V5LocomotionTask[float], HalfCheetahEnv):
    """HalfCheetah that must run at a goal velocity.

    ## Description
    Gymnasium's ``HalfCheetah-v5``; the task is a target forward velocity. The
    goal-velocity task of Finn et al., "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks" (ICML 2017), section 5.3, whose goal velocities
    are drawn from ``U(0, 2)`` (ProMP's ``half_cheetah_rand_vel.py`` draws from
    ``U(0, 3)``; its reward is the same).

    ## Task distribution
    A task is the goal velocity, a ``float`` drawn from ``U(0.0, 2.0)`` (m/s along
    +x). ``set_task`` accepts any finite float, e.g. held-out velocities.

    ## Action Space
    ``Box(-1, 1, (6,), float32)``, as in ``HalfCheetah-v5``.

    ## Observation Space
    ``Box(-inf, inf, (17,), float64)``, as in ``HalfCheetah-v5``. The goal is not
    observed.

    ## Rewards
    ``-|x_velocity - goal_velocity| - ctrl_cost_weight * ||action||^2`` with
    ``ctrl_cost_weight = 0.05`` (as ProMP and MAML). ``info["reward_forward"]`` is
    the velocity term.

    ## Episode End
    No termination; truncated after 100 steps (``max_episode_steps`` of the
    registered ``rllib_maml/HalfCheetahRandVel-v0``).

    ## Arguments
    As :class:`HalfCheetahRandDirecEnv`: ``config`` and keyword arguments go to
    ``HalfCheetah-v5``. ``reset(seed=...)`` seeds the task stream and the reset noise.
    """

    default_kwargs = {"ctrl_cost_weight": 0.05}
    velocity_range = (0.0, 2.0)

    def __init__(self, config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        self._init_v5(HalfCheetahEnv, config, kwargs)

    def sample_tasks(self, n_tasks: int) -> List[float]:
        return [float(v) for v in self.np_random.uniform(*self.velocity_range, size=n_tasks)]

    def _validate_task(self, task: Any) -> float:
        velocity = float(task)
        if not np.isfinite(velocity):
            raise ValueError(f"HalfCheetahRandVelEnv task is a finite goal velocity, got {task!r}")
        return velocity

    def _task_reward(self, v5_reward: float, info: Dict[str, Any]) -> Tuple[float, Dict[str, Any]]:
        velocity_reward = -abs(float(info["x_velocity"]) - self._episode_task)
        info["reward_forward"] = velocity_reward
        return velocity_reward + info["reward_ctrl"], info


class AntRandDirecEnv(_V5DirectionTask, AntEnv):
    """Ant that must walk forward or backward along x.

    ## Description
    Gymnasium's ``Ant-v5`` without contact forces in the observation; the task
    says in which direction along x to walk. The forward/backward Ant task of
    Finn et al. (ICML 2017), section 5.3, as defined in ProMP's
    ``meta_policy_search/envs/mujoco_envs/ant_rand_direc.py``.

    ## Task distribution
    A task is the direction, a ``float``: ``+1.0`` (+x) or ``-1.0`` (-x), each with
    probability 1/2.

    ## Action Space
    ``Box(-1, 1, (8,), float32)``: torques of the eight hip and ankle joints.

    ## Observation Space
    ``Box(-inf, inf, (27,), float64)``: torso z, orientation quaternion and joint
    angles (13) and all velocities (14). ``include_cfrc_ext_in_observation=False``
    by default (``Ant-v5`` would add 78 contact-force entries).

    ## Rewards
    ``direction * x_velocity + healthy_reward - ctrl_cost - contact_cost``, i.e.
    ``Ant-v5``'s reward with a direction-signed forward term: healthy reward 1 per
    step, ``ctrl_cost = 0.5 * ||action||^2``, ``contact_cost = 5e-4 *
    ||clip(cfrc_ext, -1, 1)||^2`` (gymnasium's and ProMP's weights).

    ## Episode End
    Terminates when the Ant is unhealthy (torso z outside ``[0.2, 1.0]`` or a
    non-finite state), as ``Ant-v5``; truncated after 100 steps
    (``max_episode_steps`` of the registered ``rllib_maml/AntRandDirec-v0``).

    ## Arguments
    ``config`` (optional dict, RLlib's ``env_config``) and keyword arguments go to
    ``Ant-v5`` (keywords win). ``reset(seed=...)`` seeds the task stream and the
    reset noise.
    """

    default_kwargs = {"include_cfrc_ext_in_observation": False}

    def __init__(self, config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        self._init_v5(AntEnv, config, kwargs)

    def _task_reward(self, v5_reward: float, info: Dict[str, Any]) -> Tuple[float, Dict[str, Any]]:
        forward = info["reward_forward"]
        info["reward_forward"] = self._episode_task * forward
        return v5_reward + (self._episode_task - 1.0) * forward, info


class AntRandGoalEnv(_V5LocomotionTask[np.ndarray], AntEnv):
    """Ant that must walk to a goal position in the plane.

    ## Description
    Gymnasium's ``Ant-v5`` with its x-y position in the observation; the task is
    a goal position it has to find from the reward alone. As ProMP's
    ``meta_policy_search/envs/mujoco_envs/ant_rand_goal.py`` and RLlib's old
    ``rllib/examples/env/ant_rand_goal.py`` (used by its MAML example).

    ## Task distribution
    A task is a goal ``np.ndarray`` of shape ``(2,)`` (float64), uniform in the disk
    of radius 3 around the origin (angle ``U(0, 2 pi)``, radius ``3 sqrt(U(0, 1))``).

    ## Action Space
    ``Box(-1, 1, (8,), float32)``, as in ``Ant-v5``.

    ## Observation Space
    ``Box(-inf, inf, (29,), float64)``: the full ``qpos`` (15, including torso x and
    y, as ProMP; ``exclude_current_positions_from_observation=False``) and ``qvel``
    (14). Contact forces are left out (``include_cfrc_ext_in_observation=False``).

    ## Rewards
    ``-||torso_xy - goal||_1 - ctrl_cost - contact_cost`` with ``ctrl_cost = 0.1 *
    ||action||^2`` (ProMP's weight) and ``Ant-v5``'s contact cost (``5e-4``). The
    healthy reward is 0 by default, as ProMP (pass ``healthy_reward=1.0`` to get
    ``Ant-v5``'s survival bonus). ``info["reward_goal"]`` is the distance term and
    ``info["goal_distance"]`` the L1 distance.

    ## Episode End
    No termination (``terminate_when_unhealthy=False``, as ProMP); truncated after
    200 steps (``max_episode_steps`` of the registered ``rllib_maml/AntRandGoal-v0``).

    ## Arguments
    ``config`` (optional dict, RLlib's ``env_config``) and keyword arguments go to
    ``Ant-v5`` (keywords win). ``reset(seed=...)`` seeds the task stream and the
    reset noise.
    """

    default_kwargs = {
        "include_cfrc_ext_in_observation": False,
        "exclude_current_positions_from_observation": False,
        "ctrl_cost_weight": 0.1,
        "healthy_reward": 0.0,
        "terminate_when_unhealthy": False,
    }
    goal_radius = 3.0

    def __init__(self, config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        self._init_v5(AntEnv, config, kwargs)

    def sample_tasks(self, n_tasks: int) -> List[np.ndarray]:
        angle = self.np_random.uniform(0.0, 2 * np.pi, size=n_tasks)
        radius = self.goal_radius * np.sqrt(self.np_random.uniform(0.0, 1.0, size=n_tasks))
        return [np.array([r * np.cos(a), r * np.sin(a)]) for r, a in zip(radius, angle)]

    def _validate_task(self, task: Any) -> np.ndarray:
        goal = np.array(task, dtype=np.float64)
        if goal.shape != (2,) or not np.isfinite(goal).all():
            raise ValueError(f"AntRandGoalEnv task must be a finite goal of shape (2,), got {task!r}")
        return goal

    def _task_reward(self, v5_reward: float, info: Dict[str, Any]) -> Tuple[float, Dict[str, Any]]:
        position = np.array([info["x_position"], info["y_position"]], dtype=np.float64)
        distance = float(np.abs(position - self._episode_task).sum())
        info.pop("reward_forward")
        info["reward_goal"] = -distance
        info["goal_distance"] = distance
        reward = -distance + info["reward_ctrl"] + info["reward_contact"] + info["reward_survive"]
        return reward, info
