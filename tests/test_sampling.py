"""What the runners sample: fresh initial states on every call, reproducible from config.seed."""

from __future__ import annotations

from typing import Any, ClassVar, List

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from rllib_maml import MAML
from rllib_maml.algorithm.metrics import DROPPED_ENV_STEPS_FRACTION, MAML_RESULTS
from rllib_maml.core.tasks import TaskSettableEnv
from tests.test_training import STACKS, tiny_config


def first_observations(algo: MAML, task: float, calls: int) -> List[np.ndarray]:
    """The first observation of every episode of ``task`` in ``calls`` sampling calls (step 0)."""
    theta = algo.theta_holder.theta_weights()
    firsts = []
    for _ in range(calls):
        rollout = algo.sample_on_runners([task], [theta], step=0)[0]
        starts = np.r_[0, np.cumsum(rollout.episode_lens + 1)[:-1]]
        firsts.append(rollout.obs[starts])
    return firsts


@STACKS
@pytest.mark.parametrize("num_env_runners", [0, 1])
def test_each_call_starts_from_new_states_and_the_run_is_reproducible(
    ray_session: None, new_api_stack: bool, num_env_runners: int
) -> None:
    """Ray reseeds sub-envs with the same seed on every ``sample(num_episodes=...)``; MAML must not."""
    calls = []
    for _ in range(2):
        algo = tiny_config(
            "rllib_maml/PendulumMass-v0", num_env_runners=num_env_runners, new_api_stack=new_api_stack
        ).build_algo()
        try:
            calls.append(first_observations(algo, task=1.0, calls=3))
        finally:
            algo.stop()
    first_run, second_run = calls
    for a, b in zip(first_run, second_run):
        np.testing.assert_array_equal(a, b)  # same config.seed, same start states
    for earlier, later in zip(first_run, first_run[1:]):
        assert not np.allclose(earlier, later), "two sampling calls replayed the same initial states"


def constant_policy(theta: dict, action: float) -> dict:
    """``theta`` changed to act ``action`` in every dimension, with a negligible std."""
    weights = {name: np.array(value, copy=True) for name, value in theta.items()}
    last = max(int(name.split(".")[1]) for name in weights if name.startswith("pi.") and name.endswith(".weight"))
    weights[f"pi.{last}.weight"][:] = 0.0
    weights[f"pi.{last}.bias"][:] = action
    weights["log_std"][:] = -20.0
    return weights


@pytest.mark.parametrize("num_env_runners", [0, 1])
def test_one_runner_samples_each_task_with_its_own_weights(ray_session: None, num_env_runners: int) -> None:
    """Three tasks on one runner of 4 sub-envs: every episode acts with its task's weights and
    is rewarded by its task's goal."""
    from rllib_maml.algorithm.env_runner import MAMLEnvRunner

    algo = (
        tiny_config("rllib_maml/Navigation2D-v0", num_env_runners=num_env_runners, episodes_per_task=3)
        .env_runners(num_envs_per_env_runner=4)
        .build_algo()
    )
    try:
        runner_classes = algo.env_runner_group.foreach_env_runner(
            lambda runner: type(runner).__name__, local_env_runner=num_env_runners == 0
        )
        assert runner_classes == [MAMLEnvRunner.__name__]
        theta = algo.theta_holder.theta_weights()
        actions = [0.05, -0.05, 0.02]
        goals = [np.array(g, np.float32) for g in ([0.4, 0.4], [-0.3, 0.2], [0.1, -0.45])]
        rollouts = algo.sample_on_runners(goals, [constant_policy(theta, a) for a in actions], step=1)
        for index, (rollout, action, goal) in enumerate(zip(rollouts, actions, goals)):
            assert (rollout.task_index, rollout.step) == (index, 1)
            assert len(rollout.episode_lens) >= 3
            np.testing.assert_allclose(rollout.actions, action, atol=1e-6)
            next_obs = rollout.obs[rollout.step_rows + 1]
            np.testing.assert_allclose(rollout.rewards, -np.linalg.norm(next_obs - goal, axis=1), rtol=1e-5)
    finally:
        algo.stop()


class CountingEnv(TaskSettableEnv[float]):
    """Episodes that end at random lengths (task: the chance to terminate per step), counting
    every ``step`` the simulator runs in this process (``num_steps``)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    num_steps: ClassVar[int] = 0

    def __init__(self, config: Any = None) -> None:
        self.t = 0

    def sample_tasks(self, n_tasks: int) -> List[float]:
        return [float(p) for p in self.np_random.uniform(0.02, 0.3, n_tasks)]

    def reset(self, *, seed: Any = None, options: Any = None) -> Any:
        super().reset(seed=seed)
        self._task_for_new_episode()
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: np.ndarray) -> Any:
        CountingEnv.num_steps += 1
        self.t += 1
        terminated = bool(self.np_random.random() < self.get_task())
        return np.array([self.t, self.get_task()], np.float32), float(action[0]), terminated, self.t >= 40, {}


@STACKS
def test_every_simulated_env_step_is_counted(ray_session: None, new_api_stack: bool) -> None:
    """Sampling stops once it has enough finished episodes and drops the ones still running
    (RLlib's ``sample(num_episodes=...)``); their steps were simulated, so the budget counts them."""
    algo = (
        tiny_config(CountingEnv, new_api_stack=new_api_stack, meta_batch_size=4, episodes_per_task=3)
        .env_runners(num_envs_per_env_runner=6)
        .build_algo()
    )
    try:
        before = CountingEnv.num_steps
        result = algo.train()
        simulated = CountingEnv.num_steps - before
    finally:
        algo.stop()
    fraction = result[MAML_RESULTS][DROPPED_ENV_STEPS_FRACTION]
    assert result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME] == simulated
    assert 0.0 < fraction < 1.0, "episodes of random length must leave some unfinished at the end of a call"
