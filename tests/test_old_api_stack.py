"""MAML on RLlib's old API stack (``MAMLTorchPolicy``): the gradient it applies, the same
update as the new stack's Learner, checkpoints and config errors.

Building, training and ``evaluate_adaptation`` on both stacks are in
``tests/test_training.py``, the finite-difference meta-gradient check through the old
stack's network in ``tests/test_meta_gradient.py`` and the learning test in
``tests/test_learning.py``, each parametrized over the stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch

from ray.rllib.policy.sample_batch import SampleBatch

from rllib_maml import MAML, MAMLConfig, MAMLTorchPolicy
from rllib_maml.core.maml_math import meta_loss
from tests.helpers import coefficients, task_batches, tiny_policy
from tests.test_meta_gradient import autograd_meta_gradient
from tests.test_training import _flatten, theta, tiny_config


def old_stack_config(**training: Any) -> MAMLConfig:
    return tiny_config(new_api_stack=False, **training)


# --- the meta-gradient -------------------------------------------------------------
@pytest.mark.parametrize("first_order", [False, True])
def test_policy_applies_exactly_the_meta_gradient(first_order: bool) -> None:
    """With SGD(lr=1) in place of Adam, one ``_apply_meta_gradient`` moves theta by -grad."""
    policy = tiny_policy(first_order=first_order)
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


@pytest.mark.parametrize("baseline", ["linear", "value_function"])
def test_both_stacks_compute_the_same_update_from_the_same_data(ray_session: None, baseline: str) -> None:
    """One config switch: the Learner and the Policy, given the same theta and rollouts,
    produce the same adapted weights, the same meta-update and the same KL coefficient."""
    new = tiny_config(maml_optimizer_steps=3, baseline=baseline).build_algo()
    old = old_stack_config(maml_optimizer_steps=3, baseline=baseline).build_algo()
    try:
        old.get_policy().load_theta(theta(new))
        rollouts = old.sample_adaptation(old.sample_tasks(3), num_steps=1)
        for new_w, old_w in zip(new.theta_holder.adapted_weights(rollouts),
                                old.theta_holder.adapted_weights(rollouts)):
            for name in new_w:
                np.testing.assert_allclose(old_w[name], new_w[name], rtol=1e-5, atol=1e-6)
        new_stats = new.theta_holder.meta_update(rollouts)
        old_stats = old.theta_holder.meta_update(rollouts)
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
        next_tasks = algo.sample_tasks(3)
    finally:
        algo.stop()

    restored = MAML.from_checkpoint(checkpoint)
    try:
        np.testing.assert_array_equal(np.asarray(restored.sample_tasks(3)), np.asarray(next_tasks))
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
        tiny_policy().learn_on_batch(SampleBatch({}))
