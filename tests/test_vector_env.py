"""MAML's runner hands RLlib the same sub-env infos as gymnasium's dict round trip, and
still calls every episode callback that somebody listens to."""

from __future__ import annotations

import gc
from typing import Any, Callable, List

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.callbacks.callbacks import RLlibCallback

from rllib_maml.algorithm.env_runner import MAMLEnvRunner
from rllib_maml.algorithm.vector_env import ListInfoSyncVectorEnv, ListInfoToList
from tests.test_training import tiny_config


class InfoEnv(gym.Env):
    """Episodes of ``horizon`` steps whose infos vary by sub-env and step, with keys that
    only some steps have (as ``final``), a nested dict and a Python float."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, index: int, horizon: int) -> None:
        self.index, self.horizon, self.t, self.closed = index, horizon, 0, False

    def close(self) -> None:
        self.closed = True
        super().close()

    def reset(self, *, seed: Any = None, options: Any = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {"reset_of": self.index}

    def step(self, action: np.ndarray) -> Any:
        self.t += 1
        info = {"index": self.index, "t": float(self.t), "nested": {"a": np.arange(2) + self.t}}
        if self.t % 2 == 0:
            info["even"] = True
        truncated = self.t >= self.horizon + self.index  # sub-envs end their episodes at different steps
        return np.full(1, self.t, np.float32), 1.0, False, truncated, info


def vector(cls: Callable[..., SyncVectorEnv], n: int) -> SyncVectorEnv:
    return cls([lambda i=i: InfoEnv(i, horizon=3) for i in range(n)])


def assert_same_infos(ours: List[dict], gymnasiums: List[dict]) -> None:
    assert len(ours) == len(gymnasiums)
    for mine, theirs in zip(ours, gymnasiums):
        assert mine.keys() == theirs.keys()
        for key in mine:
            if isinstance(mine[key], dict):
                assert_same_infos([mine[key]], [theirs[key]])
            else:
                np.testing.assert_array_equal(mine[key], theirs[key])


def test_list_infos_equal_gymnasiums_dict_round_trip_through_resets_and_autoresets() -> None:
    n = 3
    ours = ListInfoToList(vector(ListInfoSyncVectorEnv, n))
    gymnasiums = DictInfoToList(vector(SyncVectorEnv, n))
    obs_a, infos_a = ours.reset(seed=0)
    obs_b, infos_b = gymnasiums.reset(seed=0)
    assert_same_infos(infos_a, infos_b)
    autoresets = 0
    for _ in range(9):  # several episodes of each sub-env, ending at different steps
        actions = np.zeros((n, 1), np.float32)
        *step_a, infos_a = ours.step(actions)
        *step_b, infos_b = gymnasiums.step(actions)
        for a, b in zip(step_a, step_b):
            np.testing.assert_array_equal(a, b)
        assert_same_infos(infos_a, infos_b)
        autoresets += sum("reset_of" in info for info in infos_a)
    assert autoresets >= 3  # steps where a sub-env autoreset were compared too


def test_the_replaced_vector_env_does_not_close_the_sub_envs_it_hands_over() -> None:
    """gymnasium closes a vector env's sub-envs when it is garbage-collected; the old one's
    sub-envs live on in the new one."""
    old = vector(SyncVectorEnv, 2)
    sub_envs = list(old.envs)
    new = ListInfoSyncVectorEnv.around(old)
    assert new.envs == sub_envs
    del old
    gc.collect()
    assert not any(sub_env.closed for sub_env in sub_envs)
    new.close()
    assert all(sub_env.closed for sub_env in sub_envs)


def test_maml_runner_uses_the_list_infos_on_the_same_sub_envs(ray_session: None) -> None:
    algo = tiny_config("rllib_maml/Navigation2D-v0", num_env_runners=0).build_algo()
    try:
        runner = algo.env_runner
        assert isinstance(runner, MAMLEnvRunner)
        assert isinstance(runner.env, ListInfoToList) and isinstance(runner.env.unwrapped, ListInfoSyncVectorEnv)
        assert runner.env.num_envs == algo.config.num_envs_per_env_runner
        assert runner.env.unwrapped.spec is not None and runner.env.unwrapped.spec.kwargs["vectorization_mode"] == "sync"
    finally:
        algo.stop()


STEP_CALLS: List[int] = []


class CountSteps(RLlibCallback):
    def on_episode_step(self, *, episode: Any, **kwargs: Any) -> None:
        STEP_CALLS.append(1)


@pytest.mark.parametrize("how", ["class", "function"])
def test_on_episode_step_still_reaches_a_callback_that_listens(ray_session: None, how: str) -> None:
    """The runner skips RLlib's per-step callback call only when nothing overrides it."""
    config = tiny_config("rllib_maml/Navigation2D-v0", num_env_runners=0)
    config = config.callbacks(CountSteps) if how == "class" else config.callbacks(on_episode_step=lambda **kw: STEP_CALLS.append(1))
    algo = config.build_algo()
    try:
        STEP_CALLS.clear()
        theta = algo.theta_holder.theta_weights()
        rollout = algo.sample_on_runners([np.array([0.3, -0.2], np.float32)], [theta], step=0)[0]
        assert len(STEP_CALLS) == int(np.sum(rollout.episode_lens)) > 0
        assert algo.env_runner._listens_to_episode_step
    finally:
        algo.stop()


def test_without_a_listener_the_runner_skips_on_episode_step(ray_session: None) -> None:
    algo = tiny_config("rllib_maml/Navigation2D-v0", num_env_runners=0).build_algo()
    try:
        assert not algo.env_runner._listens_to_episode_step
    finally:
        algo.stop()
