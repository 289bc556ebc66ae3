"""Task distributions for MAML, registered with gymnasium under the ``rllib_maml/`` namespace.

Installed as ``rllib_maml.envs``; importing :mod:`rllib_maml` registers every env.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, NamedTuple

import gymnasium as gym


class EnvEntry(NamedTuple):
    """One registered task distribution: gymnasium id, entry point and horizon."""

    entry_point: str
    max_episode_steps: int


#: gymnasium id -> (entry point, horizon). The README's env table lists the same.
ENVS: Dict[str, EnvEntry] = {
    "rllib_maml/Navigation2D-v0": EnvEntry("rllib_maml.envs.navigation2d:Navigation2DEnv", 100),
    "rllib_maml/PendulumMass-v0": EnvEntry("rllib_maml.envs.pendulum_mass:PendulumMassEnv", 200),
    "rllib_maml/HalfCheetahRandDirec-v0": EnvEntry("rllib_maml.envs.mujoco_locomotion:HalfCheetahRandDirecEnv", 100),
    "rllib_maml/HalfCheetahRandVel-v0": EnvEntry("rllib_maml.envs.mujoco_locomotion:HalfCheetahRandVelEnv", 100),
    "rllib_maml/AntRandDirec-v0": EnvEntry("rllib_maml.envs.mujoco_locomotion:AntRandDirecEnv", 100),
    "rllib_maml/AntRandGoal-v0": EnvEntry("rllib_maml.envs.mujoco_locomotion:AntRandGoalEnv", 200),
    "rllib_maml/MultiMorphologyLocomotion-v0": EnvEntry(
        "rllib_maml.envs.multi_morphology:MultiMorphologyLocomotionEnv", 200
    ),
}


def make_env(env_id: str, env_config: Mapping[str, Any]) -> gym.Env:
    """``gym.make(env_id, **env_config)``: the env creator registered with Ray Tune."""
    import rllib_maml.envs  # noqa: F401  (in a fresh Ray worker this registers the gymnasium ids)

    return gym.make(env_id, **dict(env_config))


def register_envs() -> None:
    """Registers every env in :data:`ENVS` with gymnasium and with Ray Tune (idempotent).

    The Tune registration is what lets any RLlib algorithm (built-in PPO included) use
    these ids on remote EnvRunners: Tune's registry reaches every Ray worker, and its
    creator imports this package there, which a bare gymnasium id would not.
    """
    from ray.tune.registry import register_env

    for env_id, entry in ENVS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=entry.entry_point,
                max_episode_steps=entry.max_episode_steps,
            )
        register_env(env_id, functools.partial(make_env, env_id))
