"""NaN or infinite data stops training with an error that names it, on both API stacks.

The env gives NaN rewards either from the first step or only once a task is sampled
again (i.e. after adaptation). Either way ``train()`` raises
:class:`rllib_maml.NonFiniteDataError` naming the rewards, the task, the adaptation
step and the env, and no result with a NaN ``maml/*`` metric is ever returned.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Dict

import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit
from ray import cloudpickle, tune

from rllib_maml import MAMLConfig, NonFiniteDataError
from rllib_maml.envs.navigation2d import Navigation2DEnv
from rllib_maml.algorithm.rl_module import meta_updater_for
from rllib_maml.core.settings import MAMLSettings
from rllib_maml.core.updater import MAMLMetaUpdater
from rllib_maml.core.data import TaskRollout, nonfinite_report

from helpers import one_episode_rollout, tiny_module

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class NaNNavigation2D(Navigation2DEnv):
    """``env_config["when"]``: ``"always"`` (NaN rewards from the start) or ``"adapted"``
    (NaN on a task set before, i.e. from adaptation step 1 on)."""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self._when = config["when"]
        self._seen: list = []
        self._repeat = False

    def set_task(self, task: Any) -> None:
        self._repeat = any(np.array_equal(task, seen) for seen in self._seen)
        self._seen.append(np.asarray(task))
        super().set_task(task)

    def step(self, action: np.ndarray):  # type: ignore[override]
        obs, reward, terminated, truncated, info = super().step(action)
        if self._when == "always" or self._repeat:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


def nan_config(when: str, new_api_stack: bool) -> MAMLConfig:
    tune.register_env("NaNNavigation2D", lambda config: TimeLimit(NaNNavigation2D(config), 20))
    return (
        MAMLConfig()
        .api_stack(enable_rl_module_and_learner=new_api_stack, enable_env_runner_and_connector_v2=new_api_stack)
        .environment("NaNNavigation2D", env_config={"when": when})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(meta_batch_size=2, episodes_per_task=2, maml_optimizer_steps=1)
        .debugging(seed=0)
    )


@pytest.mark.parametrize("when,step", [("always", 0), ("adapted", 1)])
@pytest.mark.parametrize("new_api_stack", [True, False], ids=["new_api_stack", "old_api_stack"])
def test_nan_rewards_stop_training_by_name(ray_session: None, when: str, step: int, new_api_stack: bool) -> None:
    algo = nan_config(when, new_api_stack).build_algo()
    try:
        theta = {k: v.copy() for k, v in algo.get_module().get_state().items()} if new_api_stack else None
        with pytest.raises(NonFiniteDataError) as error:
            algo.train()
        message = str(error.value)
        assert "non-finite rewards" in message and "NaNNavigation2D" in message
        assert f"at adaptation step {step}" in message and "on task 0" in message
        assert "episode 0 at t=0" in message
        if theta is not None:  # the meta-update never ran on it
            after = algo.get_module().get_state()
            assert all(np.array_equal(theta[k], after[k]) for k in theta)
    finally:
        algo.stop()


def test_report_locates_the_first_bad_value() -> None:
    rollout = TaskRollout.from_episode_columns(
        task_index=3, step=1, task=None, group=None,
        obs=[np.zeros((3, 2)), np.array([[0, 0], [np.inf, 0], [0, 0]])],
        actions=[np.zeros((2, 1))] * 2, logp=[np.zeros(2)] * 2, dist_inputs=[np.zeros((2, 2))] * 2,
        rewards=[np.zeros(2), np.zeros(2)], terminated=[False, False],
    )
    assert nonfinite_report(rollout) == "1 non-finite observations (the first, [inf, 0.0], in episode 1 at t=1)"
    rollout.rewards[3] = np.nan
    assert nonfinite_report(rollout).startswith("1 non-finite rewards (the first, nan, in episode 1 at t=1)")
    rollout.rewards[3] = 0.0
    rollout.obs[4, 0] = 0.0
    assert nonfinite_report(rollout) is None


def _updater(inner_lr: float) -> MAMLMetaUpdater:
    module = tiny_module().float()  # float32, as in training: 1e39 * gradient overflows
    settings = MAMLSettings(
        inner_lr=inner_lr, clip_param=0.2, vf_loss_coeff=0.5, entropy_coeff=0.0, first_order=False, gamma=0.99,
        lambda_=1.0, kl_coeff=0.0, kl_target=0.01, maml_optimizer_steps=1, baseline="value_function",
        update_num_threads=1,
    )
    return meta_updater_for(module, lambda loss: None, settings)


def test_an_inner_step_that_overflows_is_named() -> None:
    with pytest.raises(NonFiniteDataError, match=r"non-finite weights .* for tasks \[0\]; lower inner_lr"):
        _updater(inner_lr=1e39).adapted_weights([[one_episode_rollout(0)]])


def test_a_nonfinite_meta_loss_is_named_and_not_applied() -> None:
    updater = _updater(inner_lr=0.1)
    applied = []
    updater._apply_meta_gradient = applied.append
    rollouts = [[one_episode_rollout(0), one_episode_rollout(1)]]
    rollouts[0][1].dist_inputs[:, 0] = math.nan  # a corrupt record of the sampling policy: its KL is nan
    with pytest.raises(NonFiniteDataError, match="became non-finite at meta-optimizer step 0"):
        updater.meta_update(rollouts)
    assert applied == []
    assert torch.isfinite(torch.cat([p.flatten() for p in updater._theta().values()])).all()
