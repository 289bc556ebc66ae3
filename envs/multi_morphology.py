"""Locomotion across robot morphologies: one task distribution over several v5 MuJoCo envs."""

from __future__ import annotations

from collections import abc
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.mujoco_env import DEFAULT_SIZE, MujocoEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.utils import EzPickle, seeding

from rllib_maml.envs.mujoco_locomotion import direction_task, env_options, sample_directions
from rllib_maml.core.tasks import TaskSettableEnv

#: A task: the morphology's name, or ``(name, direction)`` with ``directions=True``.
MorphologyTask = Union[str, Tuple[str, float]]

#: Morphology name -> (gymnasium v5 env class, constructor arguments).
MORPHOLOGIES: Dict[str, Tuple[type, Dict[str, Any]]] = {
    "Ant": (AntEnv, {"include_cfrc_ext_in_observation": False}),
    "HalfCheetah": (HalfCheetahEnv, {}),
    "Hopper": (HopperEnv, {}),
    "Walker2d": (Walker2dEnv, {}),
    "Swimmer": (SwimmerEnv, {}),
}


class MultiMorphologyLocomotionEnv(TaskSettableEnv[MorphologyTask], EzPickle):
    """Run forward (or in a given direction) with one of several robot bodies.

    ## Description
    A task picks a morphology among gymnasium's ``Ant-v5``, ``HalfCheetah-v5``,
    ``Hopper-v5``, ``Walker2d-v5`` and ``Swimmer-v5`` (the same models, dynamics,
    rewards and terminations; no XML is copied). One policy must control all of
    them, so observations and actions are padded to a common size and the
    observation ends with a one-hot morphology id. The env has an
    ``action_mask_table``, which :class:`rllib_maml.MAMLConfig` hands to
    :class:`rllib_maml.MAMLTorchRLModule`, so the padding action dimensions do not
    exist for the policy (zero log-probability, entropy, KL and gradient).

    Each chosen morphology's env is built once, in ``__init__``;
    ``set_task`` + ``reset`` switch between them, nothing is rebuilt (the class
    counter ``num_morphology_builds`` counts the builds). The env a morphology
    episode runs in is :attr:`morphology_env`.

    ## Task distribution
    With ``directions=False`` (default), a task is a morphology name (``str``),
    uniform over ``morphologies``. With ``directions=True``, a task is a tuple
    ``(name, direction)``: a uniform morphology and a direction ``+1.0`` (forward,
    +x) or ``-1.0`` (backward), each with probability 1/2. ``task_group(task)``
    is the morphology name, so MAML reports ``result["maml"]["per_task"][name]``.

    ``sample_tasks(n)`` draws the morphologies in shuffled rounds (each round a
    random permutation of ``morphologies``): every task is still uniform, and a
    meta-batch of at least ``len(morphologies)`` tasks contains every morphology.
    Each ``reset`` without a set task draws one task, i.e. a uniform morphology.

    ``shares`` skews the morphologies: a round then holds ``shares[name]`` copies of
    each name (1 for a name it leaves out), so ``{"Ant": 4}`` over all five bodies
    makes half of all tasks Ant and an eighth each of the others. It gives a body
    that needs more env steps a larger part of a fixed budget. Held-out tasks are
    drawn by the same ``sample_tasks``, so they follow the shares too.

    ## Action Space
    ``Box(-1, 1, (A,), float32)``, ``A`` the largest action size of the chosen
    morphologies (Ant 8, HalfCheetah 6, Walker2d 6, Hopper 3, Swimmer 2; all
    bounded by [-1, 1] in v5). Only the first ``a`` entries (the morphology's own
    action size) reach the env; the rest are ignored. ``action_mask_table``
    (``float32 [len(morphologies), A]``) has a 1 for each valid entry.

    ## Observation Space
    ``Box(-inf, inf, (O + M,), float64)``: the morphology env's v5 observation,
    zero-padded to ``O``, the largest observation size of the chosen morphologies
    (Ant 27 without contact forces, HalfCheetah 17, Walker2d 17, Hopper 11,
    Swimmer 8), then a one-hot id of the morphology (``M = len(morphologies)``, in
    the order of ``morphologies``) as the last ``M`` entries.

    ## Rewards
    The morphology env's v5 reward. With ``directions=True``, its forward term
    ``info["reward_forward"]`` is multiplied by the direction (the other terms,
    e.g. healthy reward and control cost, stay).

    ## Episode End
    Terminates when the morphology env does (Ant, Hopper and Walker2d when
    unhealthy); truncated after 200 steps (``max_episode_steps`` of the
    registered ``rllib_maml/MultiMorphologyLocomotion-v0``).

    ## Arguments
    * ``config``: optional dict (RLlib's ``env_config``) with the keys below;
      keyword arguments win over it.
    * ``morphologies``: a sequence of names from ``"Ant"``, ``"HalfCheetah"``,
      ``"Hopper"``, ``"Walker2d"``, ``"Swimmer"`` (default: all five, in that order).
    * ``directions``: bool, default False (see Task distribution).
    * ``shares``: a mapping from morphology name to a positive integer, default 1
      for each (see Task distribution).

    ``gym.make("rllib_maml/MultiMorphologyLocomotion-v0", morphologies=["Hopper",
    "HalfCheetah"])``. ``reset(seed=...)`` seeds the task stream and every
    morphology env's reset noise.

    ## Rendering
    ``render_mode="rgb_array"`` (with MuJoCo's ``width`` and ``height``, default 480)
    is handed to every morphology env; ``render()`` returns the current episode's
    body's frame, and ``metadata["render_fps"]`` follows that body (set on ``reset``:
    Ant, HalfCheetah 20; Swimmer 25; Hopper, Walker2d 125), so a video of one episode
    plays at the body's real speed.

    ## Source
    This package's own definition (neither ProMP, the MAML paper nor RLlib's old
    examples have a multi-morphology distribution); the per-morphology models,
    rewards and terminations are gymnasium's v5 ones unchanged.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    #: Options that only weight which tasks ``sample_tasks`` draws (spaces, dynamics and
    #: rewards stay): ``rllib-maml compare`` accepts checkpoints that differ only in them.
    task_distribution_options: ClassVar[Tuple[str, ...]] = ("shares",)
    #: How many morphology envs any instance has built (a test hook: never on reset).
    num_morphology_builds: ClassVar[int] = 0

    def __init__(
        self,
        config: Optional[Mapping[str, Any]] = None,
        morphologies: Optional[Sequence[str]] = None,
        directions: Optional[bool] = None,
        render_mode: Optional[str] = None,
        width: int = DEFAULT_SIZE,
        height: int = DEFAULT_SIZE,
        shares: Optional[Mapping[str, int]] = None,
    ) -> None:
        EzPickle.__init__(self, config, morphologies, directions, render_mode, width, height, shares)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.metadata = dict(self.metadata)  # per instance: render_fps follows the episode's body
        given = {"morphologies": morphologies, "directions": directions, "shares": shares}
        given = {k: v for k, v in given.items() if v is not None}
        options = env_options(config, given, {"morphologies": tuple(MORPHOLOGIES), "directions": False, "shares": {}})
        unknown = set(options) - {"morphologies", "directions", "shares"}
        if unknown:
            raise ValueError(
                f"MultiMorphologyLocomotionEnv got unknown options {sorted(unknown)}; "
                "it takes 'morphologies', 'directions' and 'shares'."
            )
        names = options["morphologies"]
        names = (names,) if isinstance(names, str) else tuple(names)
        if not names or len(set(names)) != len(names) or not set(names) <= set(MORPHOLOGIES):
            raise ValueError(
                f"morphologies={options['morphologies']!r} is invalid: give distinct names "
                f"from {list(MORPHOLOGIES)}."
            )
        self.morphologies: Tuple[str, ...] = names
        self.directions: bool = bool(options["directions"])
        self.shares: Dict[str, int] = self._validate_shares(options["shares"], names)
        #: One round of :meth:`sample_tasks`: each morphology's index, ``shares[name]`` times.
        self._round = np.repeat(np.arange(len(names)), [self.shares[n] for n in names])

        render = {"render_mode": render_mode, "width": width, "height": height} if render_mode else {}
        self._envs: Dict[str, MujocoEnv] = {name: self._build(name, **render) for name in names}
        self._obs_dims = {n: int(np.prod(e.observation_space.shape)) for n, e in self._envs.items()}
        self._action_dims = {n: int(np.prod(e.action_space.shape)) for n, e in self._envs.items()}
        self.max_obs_dim = max(self._obs_dims.values())
        self.max_action_dim = max(self._action_dims.values())

        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.max_obs_dim + len(names),), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.max_action_dim,), np.float32)
        self.action_mask_table = np.zeros((len(names), self.max_action_dim), dtype=np.float32)
        for i, name in enumerate(names):
            self.action_mask_table[i, : self._action_dims[name]] = 1.0

        self._episode_task: Optional[MorphologyTask] = None
        self._envs_seeded = False

    @staticmethod
    def _validate_shares(shares: Any, names: Tuple[str, ...]) -> Dict[str, int]:
        if not isinstance(shares, abc.Mapping):
            raise ValueError(f"shares={shares!r} is invalid: give a mapping from morphology name to a positive integer.")
        for name, share in shares.items():
            if name not in names:
                raise ValueError(f"shares names {name!r}, which is not one of morphologies={list(names)}.")
            if isinstance(share, bool) or not isinstance(share, (int, np.integer)) or share < 1:
                raise ValueError(f"shares[{name!r}]={share!r} is invalid: give a positive integer.")
        return {name: int(shares.get(name, 1)) for name in names}

    @staticmethod
    def _build(name: str, **render: Any) -> MujocoEnv:
        env_class, kwargs = MORPHOLOGIES[name]
        env = env_class(**kwargs, **render)
        MultiMorphologyLocomotionEnv.num_morphology_builds += 1
        space = env.action_space
        if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
            raise ValueError(f"{name}'s action space {space} is not bounded by [-1, 1]")
        return env

    # --- tasks ---------------------------------------------------------------------
    def sample_tasks(self, n_tasks: int) -> List[MorphologyTask]:
        # Shuffled rounds: each round is a random permutation of all morphologies (with their shares).
        num_rounds = -(-n_tasks // len(self._round))
        rounds = [self.np_random.permutation(self._round) for _ in range(num_rounds)]
        indices = np.concatenate(rounds)[:n_tasks] if rounds else []
        names = [self.morphologies[i] for i in indices]
        if not self.directions:
            return names
        signs = sample_directions(self.np_random, n_tasks)
        return [(name, sign) for name, sign in zip(names, signs)]

    def _validate_task(self, task: Any) -> MorphologyTask:
        if self.directions:
            if isinstance(task, str) or not isinstance(task, abc.Sequence) or len(task) != 2:
                raise ValueError(
                    f"With directions=True a task is (morphology, +1.0 or -1.0), got {task!r}"
                )
            return self._validate_name(task[0]), direction_task(task[1], type(self).__name__)
        return self._validate_name(task)

    def _validate_name(self, name: Any) -> str:
        if not isinstance(name, str) or name not in self.morphologies:
            raise ValueError(f"Unknown morphology {name!r}; this env has {list(self.morphologies)}")
        return name

    def task_group(self, task: MorphologyTask) -> str:
        """The morphology name of ``task``."""
        return self._morphology_of(self._validate_task(task))

    @staticmethod
    def _morphology_of(task: MorphologyTask) -> str:
        return task if isinstance(task, str) else task[0]

    # --- the episode's morphology --------------------------------------------------
    @property
    def morphology(self) -> str:
        """The morphology of the current episode (of ``get_task()`` before the first reset)."""
        return self._morphology_of(self._episode_task if self._episode_task is not None else self.get_task())

    @property
    def morphology_env(self) -> MujocoEnv:
        """The v5 env of :attr:`morphology` (one of the envs built in ``__init__``)."""
        return self._envs[self.morphology]

    def _observation(self, raw: np.ndarray) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float64)
        obs[: raw.size] = raw
        obs[self.max_obs_dim + self.morphologies.index(self.morphology)] = 1.0
        return obs

    def reset(
        self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None
    ) -> Tuple[np.ndarray, Dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._envs_seeded:
            # Every morphology env's reset noise comes from this env's seeded stream.
            env_seeds = self.np_random.integers(2**32, size=len(self.morphologies), dtype=np.uint64)
            for env_seed, env in zip(env_seeds, self._envs.values()):
                env.np_random, _ = seeding.np_random(int(env_seed))
            self._envs_seeded = True
        self._episode_task = self._task_for_new_episode()
        raw, info = self.morphology_env.reset()
        self.metadata["render_fps"] = self.morphology_env.metadata["render_fps"]
        return self._observation(raw), {**info, "task": self._episode_task, "morphology": self.morphology}

    @property
    def dt(self) -> float:
        """Seconds per step of the current episode's body (MuJoCo envs' ``dt``)."""
        return float(self.morphology_env.dt)

    def render(self) -> Optional[np.ndarray]:
        """The current body's ``rgb_array`` frame (``None`` without a ``render_mode``)."""
        if self.render_mode is None:
            return None
        return self.morphology_env.render()

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        if self._episode_task is None:
            raise gym.error.ResetNeeded("MultiMorphologyLocomotionEnv: call reset() before step()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self.action_space.shape}")
        name = self.morphology
        raw, reward, terminated, truncated, info = self.morphology_env.step(action[: self._action_dims[name]])
        reward = float(reward)
        if self.directions:
            direction = self._episode_task[1]
            forward = float(info["reward_forward"])
            reward += (direction - 1.0) * forward
            info = {**info, "reward_forward": direction * forward}
        info = {**info, "task": self._episode_task, "morphology": name}
        return self._observation(raw), reward, bool(terminated), bool(truncated), info

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        super().close()
