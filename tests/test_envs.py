"""The cheap task distributions: gymnasium-conformant, seeded, and task-settable."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rllib_maml import TaskSettableEnv

CHEAP_ENVS = ["rllib_maml/Navigation2D-v0", "rllib_maml/PendulumMass-v0"]


def rollout(env: gym.Env, seed: int, steps: int = 20) -> list:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    trajectory = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        trajectory.append((obs, reward))
    return trajectory


@pytest.mark.parametrize("env_id", CHEAP_ENVS)
def test_passes_gymnasium_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    assert isinstance(env.unwrapped, TaskSettableEnv)


@pytest.mark.parametrize("env_id", CHEAP_ENVS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    first, second = rollout(gym.make(env_id), seed=7), rollout(gym.make(env_id), seed=7)
    other = rollout(gym.make(env_id), seed=8)
    for a, b in zip(first[1:], second[1:]):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first[1:], other[1:]))


@pytest.mark.parametrize("env_id", CHEAP_ENVS)
def test_set_task_get_task_round_trip_and_sticks(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    tasks = env.sample_tasks(3)
    assert len(tasks) == 3
    for task in tasks:
        env.set_task(task)
        np.testing.assert_array_equal(env.get_task(), task)
        env.reset()
        env.reset()
        np.testing.assert_array_equal(env.get_task(), task)


@pytest.mark.parametrize("env_id", CHEAP_ENVS)
def test_without_set_task_each_reset_draws_a_new_task(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    first = np.copy(env.get_task())
    env.reset()
    assert not np.array_equal(first, env.get_task())


def test_navigation2d_reward_is_minus_distance_to_goal() -> None:
    env = gym.make("rllib_maml/Navigation2D-v0")
    env.unwrapped.set_task(np.array([0.3, -0.2], np.float32))
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([0.5, 0.5], np.float32))  # clipped to 0.1
    np.testing.assert_allclose(obs, [0.1, 0.1])
    assert reward == pytest.approx(-np.hypot(0.2, 0.3), rel=1e-5)


def test_navigation2d_goals_lie_in_the_unit_square_and_horizon_is_100() -> None:
    env = gym.make("rllib_maml/Navigation2D-v0")
    env.reset(seed=0)
    goals = np.array(env.unwrapped.sample_tasks(500))
    assert goals.min() >= -0.5 and goals.max() <= 0.5
    assert env.spec.max_episode_steps == 100


def test_pendulum_mass_changes_the_dynamics() -> None:
    env = gym.make("rllib_maml/PendulumMass-v0").unwrapped
    masses = env.sample_tasks(200)
    assert 0.5 <= min(masses) and max(masses) <= 2.0
    next_obs = []
    for mass in (0.5, 2.0):
        env.set_task(mass)
        env.reset(seed=3)
        next_obs.append(env.step(np.array([2.0], np.float32))[0])
    assert not np.allclose(next_obs[0], next_obs[1])


def test_invalid_task_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        gym.make("rllib_maml/Navigation2D-v0").unwrapped.set_task([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive mass"):
        gym.make("rllib_maml/PendulumMass-v0").unwrapped.set_task(-1.0)
