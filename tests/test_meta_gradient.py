"""The meta-gradient is the one MAML claims: checked against independent references."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import functools

from rllib_maml.core.batched_math import StackedBatch, batched_adaptation_path, batched_meta_loss, stack_params
from rllib_maml.core.maml_math import inner_loss, inner_step, meta_loss, ppo_clip_loss
from rllib_maml.algorithm.rl_module import INNER_LR_PARAM, batched_functional_forward
from tests.helpers import coefficients, forward_of, params_of, random_batch, task_batches, tiny_module, tiny_policy

#: The two implementations of the meta-loss: a loop over tasks, and all tasks stacked (the one training uses).
IMPLEMENTATIONS = pytest.mark.parametrize("implementation", ["per_task", "batched"])


def meta_loss_of(implementation, module, params, batches, coeffs):
    if implementation == "per_task":
        return meta_loss(forward_of(module), params, batches, coeffs)
    steps = [StackedBatch.stack([task[j] for task in batches]) for j in range(len(batches[0]))]
    return batched_meta_loss(functools.partial(batched_functional_forward, module), params, steps, coeffs)


def flat_meta_loss(module, batches, coeffs, implementation="per_task"):
    """The meta-loss as a function of one flat parameter vector (for finite differences)."""
    names_shapes = [(n, p.shape) for n, p in module.named_parameters()]

    def fn(flat: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in names_shapes:
            size = int(torch.tensor(shape).prod()) if len(shape) else 1
            params[name] = flat[offset : offset + size].reshape(shape).requires_grad_(True)
            offset += size
        return meta_loss_of(implementation, module, params, batches, coeffs)[0]

    flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    return fn, flat


def autograd_meta_gradient(module, batches, coeffs, implementation="per_task") -> torch.Tensor:
    params = params_of(module)
    loss, _ = meta_loss_of(implementation, module, params, batches, coeffs)
    grads = torch.autograd.grad(loss, list(params.values()))
    return torch.cat([g.reshape(-1) for g in grads])


@IMPLEMENTATIONS
@pytest.mark.parametrize("network", ["rl_module", "old_stack_policy"])
@pytest.mark.parametrize("num_steps,kl_coeff", [(1, 0.0), (2, 0.0), (1, 0.3)])
def test_second_order_meta_gradient_matches_finite_differences(
    num_steps: int, kl_coeff: float, network: str, implementation: str
) -> None:
    """On the new stack's RLModule, and on the same network as the old stack's policy builds it."""
    module = tiny_module() if network == "rl_module" else tiny_policy().model.rl_module
    batches = task_batches(module, num_tasks=2, num_steps=num_steps)
    coeffs = coefficients(kl_coeff=kl_coeff)
    # Evaluate away from theta_sampling, where the clip and KL terms are not flat.
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    analytic = autograd_meta_gradient(module, batches, coeffs, implementation)

    fn, flat = flat_meta_loss(module, batches, coeffs, implementation)
    eps = 1e-6
    numeric = torch.empty_like(flat)
    for i in range(len(flat)):
        step = torch.zeros_like(flat)
        step[i] = eps
        numeric[i] = (fn(flat + step).detach() - fn(flat - step).detach()) / (2 * eps)
    rel_error = (analytic - numeric).norm() / numeric.norm()
    assert rel_error < 1e-4, f"relative error {rel_error:.2e}"


def test_first_order_drops_exactly_the_second_order_term() -> None:
    """second_order = (I - a H_inner) g_outer(theta');  first_order = g_outer(theta')."""
    module = tiny_module(seed=3)
    batches = task_batches(module, num_tasks=1, num_steps=1)
    coeffs = coefficients(kl_coeff=0.0)
    forward = forward_of(module)
    second = autograd_meta_gradient(module, batches, coeffs)
    first = autograd_meta_gradient(module, batches, dataclasses.replace(coeffs, first_order=True))

    # Independent reference: explicit unrolled inner step, outer gradient at theta',
    # and the Hessian-vector product of the inner loss.
    theta = params_of(module)
    names = list(theta)
    pre, post = batches[0]
    inner_grads = torch.autograd.grad(inner_loss(forward, theta, pre, coeffs.vf_loss_coeff), [theta[n] for n in names])
    theta_prime = {n: (theta[n] - coeffs.inner_lr * g).detach().requires_grad_(True) for n, g in zip(names, inner_grads)}
    outer = ppo_clip_loss(forward, theta_prime, post, coeffs)[0]
    outer_grad = torch.autograd.grad(outer, [theta_prime[n] for n in names])
    flat_outer = torch.cat([g.reshape(-1) for g in outer_grad])

    def inner_grad_flat(flat: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name in names:
            size = theta[name].numel()
            params[name] = flat[offset : offset + size].reshape(theta[name].shape)
            offset += size
        g = torch.autograd.grad(inner_loss(forward, params, pre, coeffs.vf_loss_coeff), list(params.values()), create_graph=True)
        return torch.cat([x.reshape(-1) for x in g])

    flat_theta = torch.cat([theta[n].detach().reshape(-1) for n in names]).requires_grad_(True)
    _, hvp = torch.autograd.functional.vjp(inner_grad_flat, flat_theta, flat_outer)

    torch.testing.assert_close(first, flat_outer, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(second, flat_outer - coeffs.inner_lr * hvp, rtol=1e-7, atol=1e-10)
    # The second-order term is really there in this setting.
    assert (second - first).norm() > 1e-3 * first.norm()


def test_meta_loss_reads_the_post_adaptation_batch() -> None:
    """RLlib's old torch MAML computed its meta-loss on pre-adaptation data; here the
    loss must change when only the post-adaptation (step K) batch changes."""
    module = tiny_module()
    batches = task_batches(module, num_tasks=2, num_steps=1)
    coeffs = coefficients()
    theta = params_of(module)
    base = meta_loss(forward_of(module), theta, batches, coeffs)[0].item()

    changed_post = [[pre, dataclasses.replace(post, advantages=-post.advantages)] for pre, post in batches]
    assert meta_loss(forward_of(module), theta, changed_post, coeffs)[0].item() != pytest.approx(base, rel=1e-6)

    # Labels, not positions, decide the role of a batch: shuffled order, same loss.
    reordered = [[post, pre] for pre, post in batches]
    assert meta_loss(forward_of(module), theta, reordered, coeffs)[0].item() == pytest.approx(base, rel=1e-12)


def test_meta_loss_rejects_mislabelled_batches() -> None:
    module = tiny_module()
    pre, post = task_batches(module, num_tasks=1, num_steps=1)[0]
    with pytest.raises(ValueError, match="labelled 0..K"):
        meta_loss(forward_of(module), params_of(module), [[pre, dataclasses.replace(post, step=0)]], coefficients())


def test_inner_step_does_not_modify_module_parameters() -> None:
    module = tiny_module()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    batches = task_batches(module, num_tasks=2, num_steps=2)
    meta_loss(forward_of(module), dict(module.named_parameters()), batches, coefficients())
    for name, param in module.named_parameters():
        assert torch.equal(param.detach(), before[name]), name


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("num_steps,kl_coeff", [(1, 0.0), (2, 0.3)])
def test_batched_meta_loss_equals_the_per_task_loop(num_steps: int, kl_coeff: float, first_order: bool) -> None:
    """Tasks with different batch sizes (so padding is exercised): same loss, statistics and gradient."""
    module = tiny_module()
    batches = [
        [random_batch(module, task_index=i, step=k, n=9 + 4 * i) for k in range(num_steps + 1)] for i in range(3)
    ]
    coeffs = coefficients(kl_coeff=kl_coeff, first_order=first_order)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    results = {}
    for implementation in ("per_task", "batched"):
        params = params_of(module)
        loss, stats = meta_loss_of(implementation, module, params, batches, coeffs)
        grads = torch.autograd.grad(loss, list(params.values()))
        results[implementation] = (loss.detach(), {k: float(v) for k, v in stats.items()}, torch.cat([g.reshape(-1) for g in grads]))
    (loss_a, stats_a, grad_a), (loss_b, stats_b, grad_b) = results["per_task"], results["batched"]
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-9, atol=1e-12)
    assert stats_b == pytest.approx(stats_a, rel=1e-9)


@pytest.mark.parametrize("first_order", [False, True])
def test_a_policy_only_forward_gives_the_policy_the_same_meta_gradient(first_order: bool) -> None:
    """With the linear baseline the update skips the value network (``with_values=False``).

    The value net's inner step moves only ``vf.*`` and its loss is a separate term,
    so the policy's meta-gradient must be exactly the one of the full forward, and
    the value net must get no gradient at all.
    """
    module = tiny_module(seed=3)
    batches = task_batches(module, num_tasks=3, num_steps=2)
    steps = [StackedBatch.stack([task[j] for task in batches]) for j in range(3)]
    coeffs = coefficients(first_order=first_order)
    grads = {}
    for with_values in (True, False):
        params = params_of(module)
        forward = functools.partial(batched_functional_forward, module, with_values=with_values)
        loss, stats = batched_meta_loss(forward, params, steps, coeffs)
        names = list(params)
        grads[with_values] = dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)))
    assert stats["vf_loss"] == 0.0
    for name, full in grads[True].items():
        if name.startswith("vf."):
            assert grads[False][name] is None
        else:
            torch.testing.assert_close(grads[False][name], full, rtol=1e-12, atol=1e-12)


def _grouped_tasks(module, groups, num_steps: int = 2):
    """Task ``i`` of group ``groups[i]``, batches labelled ``0..num_steps`` of unequal sizes."""
    return [
        [random_batch(module, task_index=i, step=k, n=8 + 3 * i, group=g) for k in range(num_steps + 1)]
        for i, g in enumerate(groups)
    ]


def _learned_lr_module(factors):
    module = tiny_module(seed=4, action_masks=[[1, 1], [1, 0]], learn_inner_lr=True)
    with torch.no_grad():
        getattr(module, INNER_LR_PARAM).copy_(torch.tensor(factors, dtype=torch.float64).log())
    return module


def _learned_lr_loss(module, params, batches, coeffs):
    steps = [StackedBatch.stack([task[j] for task in batches]) for j in range(len(batches[0]))]
    forward = functools.partial(batched_functional_forward, module)
    return batched_meta_loss(forward, params, steps, coeffs, module.inner_lr_scale)[0]


@pytest.mark.parametrize("first_order", [False, True])
def test_a_learned_inner_lr_steps_each_task_with_its_groups_size(first_order: bool) -> None:
    """``learn_inner_lr``: the meta-loss (value and gradient) is the per-task reference's with
    each task's own ``inner_lr`` = ``inner_lr`` times its group's learned factor."""
    factors, groups = [2.0, 0.5], [0, 1, 0]
    module = _learned_lr_module(factors)
    batches = _grouped_tasks(module, groups)
    coeffs = coefficients(first_order=first_order, kl_coeff=0.3)
    params = params_of(module)
    loss = _learned_lr_loss(module, params, batches, coeffs)
    reference_params = params_of(module)
    reference = sum(
        meta_loss(forward_of(module), reference_params, [task], dataclasses.replace(coeffs, inner_lr=coeffs.inner_lr * factors[g]))[0]
        for task, g in zip(batches, groups)
    ) / len(batches)
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-12)
    names = [n for n in params if n != INNER_LR_PARAM]
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    reference_grads = torch.autograd.grad(reference, [reference_params[n] for n in names])
    for name, grad, expected in zip(names, grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("first_order", [False, True])
def test_the_learned_inner_lr_gets_its_meta_gradient(first_order: bool) -> None:
    """d meta-loss / d log-factor matches central finite differences, for each group; a group
    with no task in the meta-batch gets exactly 0 (its step size is never used)."""
    module = _learned_lr_module([1.5, 0.7])
    coeffs = coefficients(first_order=first_order)
    for groups, absent in (([0, 1, 1], None), ([1, 1], 0)):
        batches = _grouped_tasks(module, groups, num_steps=1)
        params = params_of(module)
        (grad,) = torch.autograd.grad(_learned_lr_loss(module, params, batches, coeffs), [params[INNER_LR_PARAM]])
        eps = 1e-6
        for g in range(2):
            shifted = []
            for sign in (1.0, -1.0):
                p = params_of(module)
                with torch.no_grad():
                    p[INNER_LR_PARAM][g] += sign * eps
                shifted.append(float(_learned_lr_loss(module, p, batches, coeffs).detach()))
            assert float(grad[g]) == pytest.approx((shifted[0] - shifted[1]) / (2 * eps), rel=1e-5, abs=1e-9)
        if absent is not None:
            assert float(grad[absent]) == 0.0
        else:
            assert (grad.abs() > 1e-6).all()


def test_the_sampling_step_uses_the_learned_inner_lr() -> None:
    """The weights the runners sample with (:func:`batched_adaptation_path`) take each task's
    own step size, as the per-task :func:`inner_step` with that task's ``inner_lr``."""
    factors, groups = [3.0, 0.25], [1, 0]
    module = _learned_lr_module(factors)
    batches = _grouped_tasks(module, groups, num_steps=0)
    coeffs = coefficients()
    stacked = {n: p.clone().requires_grad_(True) for n, p in stack_params(params_of(module), len(groups)).items()}
    forward = functools.partial(batched_functional_forward, module)
    adapted = batched_adaptation_path(forward, stacked, [StackedBatch.stack([t[0] for t in batches])], coeffs, module.inner_lr_scale)[-1]
    for i, (task, g) in enumerate(zip(batches, groups)):
        expected = inner_step(forward_of(module), params_of(module), task[0], coeffs.inner_lr * factors[g], coeffs.vf_loss_coeff, False)
        for name, value in expected.items():
            torch.testing.assert_close(adapted[name][i], value.detach(), rtol=1e-10, atol=1e-12, msg=name)
