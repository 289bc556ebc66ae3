"""MAML on RLlib's old API stack (``MAMLTorchPolicy``): builds, trains, checkpoints, and
computes the same meta-gradient as the new stack's Learner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import gymnasium as gym
import numpy as np
import pytest
import torch

from ray.rllib.policy.sample_batch import SampleBatch

from rllib_maml import MAML, MAMLConfig, MAMLTorchPolicy
from rllib_maml.maml_math import meta_loss
from tests.helpers import ACT_DIM, OBS_DIM, coefficients, task_batches
from tests.test_meta_gradient import autograd_meta_gradient, flat_meta_loss
from tests.test_training import CHEAP_ENVS, _flatten, tiny_config

OLD_STACK = dict(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)


def old_stack_config(env_id: str = "rllib_maml/Navigation2D-v0", num_env_runners: int = 0, **training: Any) -> MAMLConfig:
    """``tests.test_training.tiny_config`` with the one switch that selects the old stack."""
    return tiny_config(env_id, num_env_runners, **training).api_stack(**OLD_STACK)


def theta(algo: MAML) -> Dict[str, np.ndarray]:
    return algo._learner_call("theta_weights")


def remote_policy_weights(algo: MAML) -> List[Dict[str, np.ndarray]]:
    return algo.env_runner_group.foreach_env_runner(
        lambda worker: worker.get_policy().theta_weights(), local_env_runner=False
    )


@pytest.mark.parametrize("num_env_runners", [0, 1])
@pytest.mark.parametrize("env_id", CHEAP_ENVS)
def test_build_and_train_twice_on_the_old_stack(ray_session: None, env_id: str, num_env_runners: int) -> None:
    algo = old_stack_config(env_id, num_env_runners).build_algo()
    try:
        assert isinstance(algo.get_policy(), MAMLTorchPolicy)
        assert algo.learner_group is None
        before = theta(algo)
        steps = []
        for _ in range(2):
            result = algo.train()
            maml = result["maml"]
            assert maml["adaptation_delta"] == pytest.approx(
                maml["episode_return_mean_adapt_1"] - maml["episode_return_mean_adapt_0"]
            )
            assert result["env_runners"]["episode_return_mean"] == pytest.approx(maml["episode_return_mean_adapt_0"])
            assert np.isfinite(result["info"]["learner"]["default_policy"]["learner_stats"]["meta_loss"])
            steps.append(result["num_env_steps_sampled_lifetime"])
            assert result["env_runners"]["num_env_steps_sampled_lifetime"] == steps[-1]
        horizon = 100 if "Navigation" in env_id else 200
        # 3 tasks x 2 steps (pre, post) x at least 2 complete episodes each, per iteration.
        assert steps[0] >= 3 * 2 * 2 * horizon and steps[1] == pytest.approx(2 * steps[0], rel=0.5)
        after = theta(algo)
        assert any(not np.allclose(before[k], after[k]) for k in before)
        # Remote policies sampled with adapted weights, and hold theta again after the sync.
        for weights in remote_policy_weights(algo):
            for name, value in after.items():
                np.testing.assert_array_equal(weights[name], value)
    finally:
        algo.stop()


def test_evaluate_adaptation_leaves_theta_unchanged_on_the_old_stack(ray_session: None) -> None:
    algo = old_stack_config(num_env_runners=1).build_algo()
    try:
        before = theta(algo)
        curve = algo.evaluate_adaptation(num_steps=2, tasks=algo.sample_tasks(2))
        assert set(curve) == {
            "episode_return_mean_adapt_0", "episode_return_mean_adapt_1", "episode_return_mean_adapt_2", "adaptation_delta"
        }
        for weights in [theta(algo), *remote_policy_weights(algo)]:
            for name, value in before.items():
                np.testing.assert_array_equal(weights[name], value)
    finally:
        algo.stop()


# --- the meta-gradient -------------------------------------------------------------
def standalone_policy(**training: Any) -> MAMLTorchPolicy:
    """A float64 ``MAMLTorchPolicy`` with the tiny network of ``tests.helpers``."""
    config = (
        MAMLConfig()
        .api_stack(**OLD_STACK)
        .rl_module(model_config={"fcnet_hiddens": [5]})
        .training(**training)
        .to_dict()
    )
    torch.manual_seed(0)
    policy = MAMLTorchPolicy(
        gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        config,
    )
    policy.model.double()
    return policy


@pytest.mark.parametrize("num_steps,kl_coeff", [(1, 0.0), (2, 0.0), (1, 0.3)])
def test_policy_meta_gradient_matches_finite_differences(num_steps: int, kl_coeff: float) -> None:
    """The check of ``tests/test_meta_gradient.py``, through the old stack's policy network."""
    module = standalone_policy().model.rl_module
    batches = task_batches(module, num_tasks=2, num_steps=num_steps)
    coeffs = coefficients(kl_coeff=kl_coeff)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    analytic = autograd_meta_gradient(module, batches, coeffs)
    fn, flat = flat_meta_loss(module, batches, coeffs)
    eps = 1e-6
    numeric = torch.stack([
        (fn(flat + eps * e).detach() - fn(flat - eps * e).detach()) / (2 * eps) for e in torch.eye(len(flat), dtype=flat.dtype)
    ])
    assert (analytic - numeric).norm() / numeric.norm() < 1e-4


@pytest.mark.parametrize("first_order", [False, True])
def test_policy_applies_exactly_the_meta_gradient(first_order: bool) -> None:
    """With SGD(lr=1) in place of Adam, one ``_apply_meta_gradient`` moves theta by -grad."""
    policy = standalone_policy(first_order=first_order)
    module = policy.model.rl_module
    batches = task_batches(module, num_tasks=2, num_steps=1)
    coeffs = coefficients(first_order=first_order)
    expected = autograd_meta_gradient(module, batches, coeffs)
    before = torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])
    policy._optimizers[0] = torch.optim.SGD(policy.model.parameters(), lr=1.0)
    loss, _ = meta_loss(policy.maml._forward, dict(module.named_parameters()), batches, coeffs)
    policy._apply_meta_gradient(loss)
    after = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    torch.testing.assert_close(before - after, expected)
    if not first_order:
        other = autograd_meta_gradient(module, batches, coefficients(first_order=True))
        assert not torch.allclose(expected, other), "second-order terms should matter here"


def test_both_stacks_compute_the_same_update_from_the_same_data(ray_session: None) -> None:
    """One config switch: the Learner and the Policy, given the same theta and rollouts,
    produce the same adapted weights, the same meta-update and the same KL coefficient."""
    new = tiny_config(maml_optimizer_steps=3).build_algo()
    old = old_stack_config(maml_optimizer_steps=3).build_algo()
    try:
        old.get_policy().load_theta(theta(new))
        rollouts = old._sample_adaptation(old.sample_tasks(3), num_steps=1)
        for new_w, old_w in zip(new._learner_call("adapted_weights", rollouts=rollouts),
                                old._learner_call("adapted_weights", rollouts=rollouts)):
            for name in new_w:
                np.testing.assert_allclose(old_w[name], new_w[name], rtol=1e-5, atol=1e-6)
        new_stats = new._learner_call("meta_update", rollouts=rollouts)
        old_stats = old._learner_call("meta_update", rollouts=rollouts)
        assert old_stats["kl_coeff"] == new_stats["kl_coeff"]
        assert old_stats["meta_loss"] == pytest.approx(new_stats["meta_loss"], rel=1e-4)
        new_theta, old_theta = theta(new), theta(old)
        for name in new_theta:
            np.testing.assert_allclose(old_theta[name], new_theta[name], rtol=1e-4, atol=1e-6)
    finally:
        new.stop()
        old.stop()


# --- checkpoints and config -----------------------------------------------------------
def test_checkpoint_round_trip_on_the_old_stack(ray_session: None, tmp_path: Path) -> None:
    algo = old_stack_config().build_algo()
    try:
        algo.train()
        saved_theta = theta(algo)
        saved_state = algo.get_policy().get_state()
        # Algorithm.save_to_path() is new-stack only; save() (Tune's Trainable API) serves both.
        checkpoint = algo.save(str(tmp_path)).checkpoint.path
    finally:
        algo.stop()

    restored = MAML.from_checkpoint(checkpoint)
    try:
        policy = restored.get_policy()
        assert isinstance(policy, MAMLTorchPolicy)
        for name, value in theta(restored).items():
            np.testing.assert_array_equal(value, saved_theta[name])
        assert policy.maml.kl_coeff == saved_state["maml_kl_coeff"]
        saved_adam = _flatten({"adam": saved_state["_optimizer_variables"]})
        restored_adam = _flatten({"adam": policy.get_state()["_optimizer_variables"]})
        assert saved_adam.keys() == restored_adam.keys() and len(saved_adam) > 2
        for key, value in saved_adam.items():
            np.testing.assert_array_equal(np.asarray(restored_adam[key]), np.asarray(value), err_msg=key)
        assert restored.iteration == 1
        assert restored.train()["training_iteration"] == 2
        assert any(not np.array_equal(theta(restored)[k], saved_theta[k]) for k in saved_theta)
    finally:
        restored.stop()


@pytest.mark.parametrize(
    "stack", [dict(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=False),
              dict(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=True)]
)
def test_a_mixed_api_stack_is_rejected(stack: Dict[str, bool]) -> None:
    with pytest.raises(ValueError, match="enable_rl_module_and_learner"):  # RLlib names the switch
        MAMLConfig().environment("rllib_maml/Navigation2D-v0").api_stack(**stack).validate()


def test_modelv2_settings_are_rejected_on_the_old_stack() -> None:
    config = old_stack_config().training(model={"fcnet_hiddens": [32]})
    with pytest.raises(ValueError, match=r"MAMLConfig.model .*fcnet_hiddens.*rl_module\(model_config"):
        config.validate()


def test_policy_does_not_train_through_learn_on_batch() -> None:
    with pytest.raises(NotImplementedError, match="meta_update"):
        standalone_policy().learn_on_batch(SampleBatch({}))
