"""``meta_optimizer="trpo"`` and ``"vpg"``: TRPO's pieces against dense references, and each option on both stacks.

TRPO's Fisher is the Hessian of the post-adaptation KL taken through the inner step;
here it is built densely with ``torch.autograd.functional.hessian`` on a tiny float64
network, and the Fisher-vector products and the conjugate-gradient direction are
checked against it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, List

import numpy as np
import pytest
import torch

from rllib_maml import MAMLConfig
from rllib_maml.core.batched_math import StackedBatch, batched_meta_loss, batched_meta_terms
from rllib_maml.core.maml_math import inner_step
from rllib_maml.algorithm.rl_module import INNER_LR_PARAM, batched_functional_forward
from rllib_maml.core.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product_fn,
    flatten,
    natural_step,
    unflatten,
)
from rllib_maml.algorithm.rl_module import meta_updater_for
from tests.helpers import coefficients, forward_of, one_episode_rollout, params_of, random_batch, tiny_module

DAMPING = 1e-3


def adapted_sampling_batches(module) -> List[StackedBatch]:
    """Two tasks' steps 0 and 1, step 1 'sampled' by the adapted policy theta'_i (so the
    post-adaptation KL is 0 at theta, and its Hessian there is the Fisher)."""
    coeffs = coefficients(kl_coeff=0.0)
    theta = params_of(module)
    tasks = []
    for i in range(2):
        pre, post = random_batch(module, task_index=i, step=0), random_batch(module, task_index=i, step=1)
        adapted = inner_step(forward_of(module), theta, pre, coeffs.inner_lr, coeffs.vf_loss_coeff, create_graph=False)
        with torch.no_grad():
            dist, _ = forward_of(module)(adapted, post.obs)
            inputs = torch.cat([dist.loc, dist._dist.scale.log(), dist.mask], -1)
        tasks.append([pre, dataclasses.replace(post, dist_inputs_old=inputs)])
    return [StackedBatch.stack([t[j] for t in tasks]) for j in range(2)]


def kl_of_policy_vector(module, steps, first_order: bool = False):
    """``flat policy parameters -> mean post-adaptation KL`` (the value network held fixed)."""
    theta = params_of(module)
    names = [n for n in theta if not n.startswith("vf.")]
    coeffs = dataclasses.replace(coefficients(kl_coeff=0.0), first_order=first_order, meta_optimizer="trpo")
    forward = functools.partial(batched_functional_forward, module)

    def kl(flat: torch.Tensor) -> torch.Tensor:
        params = {**theta, **dict(zip(names, unflatten(flat, [theta[n] for n in names])))}
        return batched_meta_terms(forward, params, steps, coeffs)["kl_post"].mean()

    return kl, flatten([theta[n].detach() for n in names])


@pytest.mark.parametrize("first_order", [False, True])
def test_fisher_vector_product_matches_the_dense_hessian_of_the_kl(first_order: bool) -> None:
    module = tiny_module()
    steps = adapted_sampling_batches(module)
    kl, flat = kl_of_policy_vector(module, steps, first_order)
    dense = torch.autograd.functional.hessian(kl, flat)
    leaf = flat.clone().requires_grad_(True)
    fvp = fisher_vector_product_fn(kl(leaf), [leaf], DAMPING)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = torch.randn(flat.shape, generator=gen, dtype=flat.dtype)
        torch.testing.assert_close(fvp(v), dense @ v + DAMPING * v, rtol=1e-8, atol=1e-10)
    assert kl(leaf).abs() < 1e-12  # at the sampling policies: a minimum, so the Hessian is the Fisher
    assert torch.linalg.eigvalsh(dense).min() > -1e-9


def test_conjugate_gradient_direction_matches_the_dense_solve() -> None:
    module = tiny_module()
    steps = adapted_sampling_batches(module)
    kl, flat = kl_of_policy_vector(module, steps)
    fisher = torch.autograd.functional.hessian(kl, flat) + DAMPING * torch.eye(len(flat), dtype=flat.dtype)
    g = torch.randn(flat.shape, generator=torch.Generator().manual_seed(1), dtype=flat.dtype)
    exact = torch.linalg.solve(fisher, g)
    x = conjugate_gradient(lambda v: fisher @ v, g, iters=10 * len(flat), residual_tol=1e-24)
    torch.testing.assert_close(x, exact, rtol=1e-6, atol=1e-8)
    # The scaled step's quadratic KL estimate is exactly max_kl.
    step = natural_step(-g, lambda v: fisher @ v, max_kl=0.01, cg_iters=10 * len(flat))
    assert float(0.5 * step @ fisher @ step) == pytest.approx(0.01, rel=1e-6)


def test_line_search_rejects_steps_that_break_max_kl() -> None:
    # loss falls along the step; kl = 0.04 * fraction**2 exceeds max_kl 0.01 above fraction 0.5.
    def evaluate(step: torch.Tensor) -> tuple:
        fraction = float(step[0])
        return -fraction, 0.04 * fraction**2

    result = backtracking_line_search(evaluate, torch.ones(1), loss_before=0.0, max_kl=0.01, max_steps=10, backtrack_ratio=0.8)
    assert result.fraction == pytest.approx(0.8**4)  # 1, 0.8, 0.64, 0.512 break it; 0.41 is the first within
    assert result.kl <= 0.01 and result.tries == 5
    nothing = backtracking_line_search(evaluate, torch.ones(1), loss_before=-5.0, max_kl=0.01, max_steps=10, backtrack_ratio=0.8)
    assert nothing.fraction is None  # no candidate improves the loss: theta must stay


def test_vpg_meta_loss_is_the_plain_surrogate() -> None:
    module = tiny_module()
    steps = adapted_sampling_batches(module)
    forward = functools.partial(batched_functional_forward, module)
    coeffs = dataclasses.replace(coefficients(kl_coeff=0.3, entropy_coeff=0.0, vf_loss_coeff=0.0), meta_optimizer="vpg")
    # Far from the sampler, where clipping would bind.
    params = {n: (p.detach() * 1.3).requires_grad_(True) for n, p in params_of(module).items()}
    loss, _ = batched_meta_loss(forward, params, steps, coeffs)
    terms = {k: float(v.detach().mean()) for k, v in batched_meta_terms(forward, params, steps, coeffs).items()}
    assert float(loss.detach()) == pytest.approx(terms["surrogate"])
    assert terms["surrogate"] != pytest.approx(terms["surrogate_clipped"])


def tiny_config(meta_optimizer: str, new_api_stack: bool) -> MAMLConfig:
    return (
        MAMLConfig()
        .api_stack(enable_rl_module_and_learner=new_api_stack, enable_env_runner_and_connector_v2=new_api_stack)
        .environment("rllib_maml/Navigation2D-v0")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(meta_batch_size=2, episodes_per_task=2, maml_optimizer_steps=2, meta_optimizer=meta_optimizer)
        .debugging(seed=0)
    )


def theta_of(algo) -> Dict[str, np.ndarray]:
    return algo.theta_holder.theta_weights()


@pytest.mark.parametrize("new_api_stack", [True, False], ids=["new_api_stack", "old_api_stack"])
@pytest.mark.parametrize("meta_optimizer", ["trpo", "vpg"])
def test_each_meta_optimizer_trains_on_both_stacks(ray_session: None, meta_optimizer: str, new_api_stack: bool) -> None:
    algo = tiny_config(meta_optimizer, new_api_stack).build_algo()
    try:
        before = theta_of(algo)
        result = algo.train()
        after = theta_of(algo)
        stats = result["learners"] if new_api_stack else result["info"]["learner"]["default_policy"]["learner_stats"]
        policy = [n for n in before if not n.startswith("vf.")]
        assert any(not np.array_equal(before[n], after[n]) for n in policy), "the policy did not move"
        if meta_optimizer == "trpo":
            assert stats["kl"] <= algo.config.max_kl * 1.0001
            assert 0 < stats["trpo_step_fraction"] <= 1
        assert stats["kl_coeff"] == algo.config.kl_coeff  # no adaptive penalty outside PPO
    finally:
        algo.stop()


@pytest.mark.parametrize("new_api_stack", [True, False], ids=["new_api_stack", "old_api_stack"])
@pytest.mark.parametrize("meta_optimizer", ["ppo", "trpo"])
def test_a_learned_inner_lr_is_meta_trained_on_both_stacks(ray_session: None, meta_optimizer: str, new_api_stack: bool) -> None:
    """``model_config.learn_inner_lr``: the meta-step moves the step size, which is reported."""
    algo = tiny_config(meta_optimizer, new_api_stack).rl_module(model_config={"learn_inner_lr": True}).build_algo()
    try:
        before = theta_of(algo)[INNER_LR_PARAM]
        result = algo.train()
        after = theta_of(algo)[INNER_LR_PARAM]
        stats = result["learners"] if new_api_stack else result["info"]["learner"]["default_policy"]["learner_stats"]
        assert before.tolist() == [0.0] and after[0] != 0.0
        assert stats["inner_lr_all"] == pytest.approx(algo.config.inner_lr * float(np.exp(after[0])), rel=1e-5)
    finally:
        algo.stop()


@pytest.mark.parametrize(
    "name,value", [("meta_optimizer", "adam"), ("max_kl", 0.0), ("cg_iters", 0), ("line_search_backtrack_ratio", 1.0)]
)
def test_invalid_meta_optimizer_settings_are_named(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"MAMLConfig\.{name}="):
        MAMLConfig().environment("rllib_maml/Navigation2D-v0").training(**{name: value}).validate()


@pytest.mark.parametrize("meta_optimizer", ["ppo", "vpg"])
def test_kl_early_stop_skips_the_remaining_meta_steps(meta_optimizer: str) -> None:
    """With ``kl_early_stop`` the Adam steps stop once the meta-objective's KL exceeds it
    (the first step always runs); without it, or above every KL, all steps run."""

    def update(kl_early_stop):
        module = tiny_module()
        optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
        applied = []

        def apply(loss: torch.Tensor) -> None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            applied.append(1)

        settings = dataclasses.replace(
            coefficients(), meta_optimizer=meta_optimizer, maml_optimizer_steps=4, kl_early_stop=kl_early_stop,
            baseline="value_function",
        )
        stats = meta_updater_for(module, apply, settings).meta_update([[one_episode_rollout(0), one_episode_rollout(1)]])
        return len(applied), stats

    steps, stats = update(None)
    assert steps == stats["meta_optimizer_steps"] == 4
    steps, stats = update(1e9)
    assert steps == stats["meta_optimizer_steps"] == 4
    steps, stats = update(1e-9)
    assert steps == stats["meta_optimizer_steps"] == 1 and stats["kl"] > 1e-9  # the KL that stopped it
