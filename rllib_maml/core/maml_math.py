"""The MAML-with-PPO math, as pure functions of a parameter dict.

Everything here is functional: parameters are a ``{name: tensor}`` dict passed to a
``forward(params, obs)`` callable, so an inner step returns *new* tensors
``theta' = theta - inner_lr * grad`` that stay differentiable functions of
``theta`` (second order) instead of overwriting the module's parameters in place.
The Learner is a thin shell around these functions; tests call them directly.
These are the per-task reference forms; :mod:`rllib_maml.core.batched_math` computes
the same values with the tasks stacked, which is what the updater runs.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import torch

from rllib_maml.core.distributions import MaskedDiagGaussian
from rllib_maml.core.data import TaskBatch
from rllib_maml.core.settings import MAMLSettings

Params = Dict[str, torch.Tensor]
#: ``forward(params, obs [B, obs_dim]) -> (action distribution, values [B])``.
ForwardFn = Callable[[Params, torch.Tensor], Tuple[MaskedDiagGaussian, torch.Tensor]]


def inner_loss(forward: ForwardFn, params: Params, batch: TaskBatch, vf_loss_coeff: float) -> torch.Tensor:
    """The inner (adaptation) loss: the unclipped PPO surrogate ``-E[ratio * A]`` plus value loss.

    At the parameters that sampled ``batch`` the ratio is 1, and the surrogate's
    gradient is the policy gradient ``-E[grad log pi * A]``.
    """
    dist, values = forward(params, batch.obs)
    ratio = torch.exp(dist.logp(batch.actions) - batch.logp_old)
    surrogate = -(ratio * batch.advantages).mean()
    value_loss = (values - batch.value_targets).pow(2).mean()
    return surrogate + vf_loss_coeff * value_loss


def inner_step(
    forward: ForwardFn,
    params: Params,
    batch: TaskBatch,
    inner_lr: float,
    vf_loss_coeff: float,
    create_graph: bool,
) -> Params:
    """One adaptation step ``theta' = theta - inner_lr * grad inner_loss(theta; batch)``.

    With ``create_graph=True`` the gradient itself is differentiable, so ``theta'``
    carries the second-order terms. With ``create_graph=False`` the gradient is a
    constant and ``d theta' / d theta = I`` (first-order MAML). Never in place.
    """
    loss = inner_loss(forward, params, batch, vf_loss_coeff)
    names = list(params)
    grads = torch.autograd.grad(
        loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True
    )
    return {
        name: params[name] if grad is None else params[name] - inner_lr * grad
        for name, grad in zip(names, grads)
    }


def adaptation_path(
    forward: ForwardFn,
    params: Params,
    inner_batches: Sequence[TaskBatch],
    coeffs: MAMLSettings,
    create_graph: bool,
) -> List[Params]:
    """``[theta^0, theta^1, ..., theta^k]``: ``theta^{j+1}`` is one inner step on ``inner_batches[j]``."""
    path = [params]
    for batch in inner_batches:
        path.append(inner_step(forward, path[-1], batch, coeffs.inner_lr, coeffs.vf_loss_coeff, create_graph))
    return path


def ppo_clip_loss(
    forward: ForwardFn, params: Params, batch: TaskBatch, coeffs: MAMLSettings
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """PPO's clipped surrogate + value loss - entropy bonus of ``params`` on ``batch``."""
    dist, values = forward(params, batch.obs)
    ratio = torch.exp(dist.logp(batch.actions) - batch.logp_old)
    clipped = torch.clamp(ratio, 1.0 - coeffs.clip_param, 1.0 + coeffs.clip_param)
    surrogate = -torch.min(ratio * batch.advantages, clipped * batch.advantages).mean()
    value_loss = (values - batch.value_targets).pow(2).mean()
    entropy = dist.entropy().mean()
    loss = surrogate + coeffs.vf_loss_coeff * value_loss - coeffs.entropy_coeff * entropy
    return loss, {"policy_loss": surrogate, "vf_loss": value_loss, "entropy": entropy}


def kl_from_sampling_policy(forward: ForwardFn, params: Params, batch: TaskBatch) -> torch.Tensor:
    """Mean ``KL(pi_sampling || pi_params)`` over ``batch``'s observations."""
    dist, _ = forward(params, batch.obs)
    return MaskedDiagGaussian.from_logits(batch.dist_inputs_old).kl(dist).mean()


def meta_loss(
    forward: ForwardFn,
    params: Params,
    task_batches: Sequence[Sequence[TaskBatch]],
    coeffs: MAMLSettings,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The MAML meta-objective, averaged over tasks.

    ``task_batches[i]`` holds task ``i``'s batches for adaptation steps ``0..K``.
    For each task, ``theta'_i(theta)`` is recomputed from the batches labelled
    ``0..K-1``; the PPO clip loss is taken on the batch *labelled* ``K`` (the
    post-adaptation data) under ``theta'_i``. A KL penalty ``kl_coeff * KL`` keeps
    the policy of every step ``j`` close to the one that sampled step ``j``'s data
    (a trust region, as in ProMP and RLlib's old MAML).
    """
    if not task_batches:
        raise ValueError("meta_loss needs at least one task")
    total = torch.zeros(())
    stats: Dict[str, torch.Tensor] = {}
    for batches in task_batches:
        by_step = {batch.step: batch for batch in batches}
        num_steps = len(batches) - 1
        if sorted(by_step) != list(range(num_steps + 1)) or num_steps < 1:
            raise ValueError(
                f"task {batches[0].task_index}: expected batches labelled 0..K with K >= 1, "
                f"got steps {[b.step for b in batches]}"
            )
        inner = [by_step[j] for j in range(num_steps)]
        path = adaptation_path(forward, params, inner, coeffs, create_graph=not coeffs.first_order)
        loss, task_stats = ppo_clip_loss(forward, path[-1], by_step[num_steps], coeffs)
        kl = torch.stack([kl_from_sampling_policy(forward, path[j], by_step[j]) for j in range(num_steps + 1)]).mean()
        total = total + loss + coeffs.kl_coeff * kl
        for key, value in {**task_stats, "kl": kl}.items():
            stats[key] = stats.get(key, 0.0) + value.detach() / len(task_batches)
    return total / len(task_batches), stats


def update_kl_coeff(kl_coeff: float, kl: float, kl_target: float) -> float:
    """PPO's adaptive KL rule: x1.5 above twice the target, x0.5 below half of it."""
    if kl > 2.0 * kl_target:
        return kl_coeff * 1.5
    if kl < 0.5 * kl_target:
        return kl_coeff * 0.5
    return kl_coeff

