"""The MAML-with-PPO math, as pure functions of a parameter dict.

Everything here is functional: parameters are a ``{name: tensor}`` dict passed to a
``forward(params, obs)`` callable, so an inner step returns *new* tensors
``theta' = theta - inner_lr * grad`` that stay differentiable functions of
``theta`` (second order) instead of overwriting the module's parameters in place.
The Learner is a thin shell around these functions; tests call them directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from rllib_maml.core.distributions import MaskedDiagGaussian
from rllib_maml.core.data import TaskBatch

Params = Dict[str, torch.Tensor]
#: ``forward(params, obs [B, obs_dim]) -> (action distribution, values [B])``.
ForwardFn = Callable[[Params, torch.Tensor], Tuple[MaskedDiagGaussian, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class MAMLSettings:
    """Every hyperparameter the inner step, the meta-loss and the update read: the one
    object that flows from ``MAMLConfig`` (whose defaults these are) into the math.

    ``kl_coeff`` is the KL penalty's coefficient: the initial one in the config, the
    current adaptive one (``MAMLMetaUpdater.coefficients()``) when the loss reads it.
    ``meta_optimizer``: ``"ppo"``, clipped surrogate + KL penalty; ``"vpg"`` and
    ``"trpo"``, the plain importance-weighted surrogate (TRPO's trust region is a
    constraint, not a penalty).
    """

    inner_lr: float = 0.1
    clip_param: float = 0.3
    vf_loss_coeff: float = 0.5
    entropy_coeff: float = 0.0
    first_order: bool = False
    gamma: float = 0.99
    lambda_: float = 1.0
    kl_coeff: float = 0.0005
    kl_target: float = 0.01
    maml_optimizer_steps: int = 5
    baseline: str = "value_function"
    update_num_threads: Optional[int] = None
    meta_optimizer: str = "ppo"
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    line_search_steps: int = 15
    line_search_backtrack_ratio: float = 0.8

    @classmethod
    def from_config(cls, config: Any) -> "MAMLSettings":
        """Reads a ``MAMLConfig`` (the Learner's) or the config dict a Policy gets.

        ``AlgorithmConfig.to_dict()`` renames ``lambda_`` to ``lambda``.
        """
        if isinstance(config, Mapping):
            values = dict(config)
            values.setdefault("lambda_", values.get("lambda"))
        else:
            values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


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


# --- the same math, batched over tasks ------------------------------------------------
#: ``forward(stacked params {name: [M, ...]}, obs [M, N, obs_dim]) -> (dist over [M, N], values [M, N])``;
#: values may be ``None`` (a policy-only forward): the value loss is then 0.
BatchedForwardFn = Callable[[Params, torch.Tensor], Tuple[MaskedDiagGaussian, Optional[torch.Tensor]]]


@dataclasses.dataclass
class StackedBatch:
    """The :class:`TaskBatch` es of ``M`` tasks at one adaptation step, padded to ``N`` rows.

    Tensors are ``[M, N, ...]``; ``mask`` ``[M, N]`` is 1 on real rows and 0 on padding,
    so every per-task mean below is over that task's own rows only, exactly as in
    the per-task functions above.
    """

    step: int
    obs: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    dist_inputs_old: torch.Tensor
    advantages: torch.Tensor
    value_targets: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def stack(cls, batches: Sequence[TaskBatch]) -> "StackedBatch":
        steps = {b.step for b in batches}
        if len(steps) != 1:
            raise ValueError(f"a StackedBatch holds one adaptation step, got steps {sorted(steps)}")
        rows = max(len(b.obs) for b in batches)

        def pad(name: str) -> torch.Tensor:
            columns = [getattr(b, name) for b in batches]
            out = columns[0].new_zeros((len(columns), rows, *columns[0].shape[1:]))
            for i, column in enumerate(columns):
                out[i, : len(column)] = column
            return out

        mask = torch.zeros(len(batches), rows, dtype=batches[0].obs.dtype)
        for i, b in enumerate(batches):
            mask[i, : len(b.obs)] = 1.0
        # Padded rows need a valid distribution input (log-std 0, mask 1) to stay finite.
        dist_inputs = pad("dist_inputs_old")
        act_dim = batches[0].actions.shape[-1]
        dist_inputs[..., 2 * act_dim :] += (1.0 - mask)[..., None]
        return cls(
            step=steps.pop(),
            obs=pad("obs"),
            actions=pad("actions"),
            logp_old=pad("logp_old"),
            dist_inputs_old=dist_inputs,
            advantages=pad("advantages"),
            value_targets=pad("value_targets"),
            mask=mask,
        )


def _task_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[M, N] -> [M]``: each task's mean over its real rows."""
    return torch.where(mask > 0, values, torch.zeros_like(values)).sum(-1) / mask.sum(-1)


def stack_params(params: Params, num_tasks: int) -> Params:
    """``theta`` as ``num_tasks`` identical rows ``[M, ...]`` (views: gradients flow back to theta)."""
    return {name: p.unsqueeze(0).expand(num_tasks, *p.shape) for name, p in params.items()}


def _value_loss(values: Optional[torch.Tensor], batch: StackedBatch) -> torch.Tensor:
    """Per-task mean squared value error ``[M]``; 0 for a policy-only forward (``values`` None)."""
    if values is None:
        return batch.mask.new_zeros(batch.mask.shape[0])
    return _task_mean((values - batch.value_targets).pow(2), batch.mask)


def _inner_terms(dist: MaskedDiagGaussian, values: Optional[torch.Tensor], batch: StackedBatch, vf_loss_coeff: float) -> torch.Tensor:
    """Per-task :func:`inner_loss` ``[M]`` from a forward pass already made."""
    ratio = torch.exp(dist.logp(batch.actions) - batch.logp_old)
    surrogate = -_task_mean(ratio * batch.advantages, batch.mask)
    return surrogate + vf_loss_coeff * _value_loss(values, batch)


def _batched_step(
    params: Params, loss: torch.Tensor, inner_lr: float, create_graph: bool
) -> Params:
    """``theta'_i = theta_i - inner_lr * grad_i`` for all tasks at once from per-task losses ``[M]``.

    Task ``i``'s loss depends only on row ``i`` of the stacked parameters, so the
    gradient of the sum is each task's own gradient, row by row.
    """
    names = list(params)
    grads = torch.autograd.grad(
        loss.sum(), [params[n] for n in names], create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    return {n: params[n] if g is None else params[n] - inner_lr * g for n, g in zip(names, grads)}


def batched_adaptation_path(
    forward: BatchedForwardFn, params: Params, inner_batches: Sequence[StackedBatch], coeffs: MAMLSettings
) -> List[Params]:
    """:func:`adaptation_path` for all tasks at once, without a graph: stacked ``theta^0..theta^k``."""
    path = [params]
    for batch in inner_batches:
        dist, values = forward(path[-1], batch.obs)
        loss = _inner_terms(dist, values, batch, coeffs.vf_loss_coeff)
        step = _batched_step(path[-1], loss, coeffs.inner_lr, create_graph=False)
        path.append({n: p.detach().requires_grad_(True) for n, p in step.items()})
    return path


def batched_meta_terms(
    forward: BatchedForwardFn, params: Params, steps: Sequence[StackedBatch], coeffs: MAMLSettings
) -> Dict[str, torch.Tensor]:
    """The meta-objective's per-task terms ``[M]``, differentiable w.r.t. ``params`` through the inner steps.

    ``steps[j]`` holds every task's batch labelled ``j`` (``j = 0..K``). Each forward
    pass of ``theta^j`` on step ``j`` serves both the inner step and the KL term.
    Keys: ``surrogate_clipped`` (PPO's), ``surrogate`` (plain ``-E[ratio * A]``),
    ``vf_loss``, ``entropy`` (post-adaptation), ``kl`` (mean over steps ``0..K`` of the
    KL from each step's sampling policy) and ``kl_post`` (that KL at step ``K`` alone).
    """
    if [s.step for s in steps] != list(range(len(steps))) or len(steps) < 2:
        raise ValueError(f"expected stacked batches labelled 0..K with K >= 1, got steps {[s.step for s in steps]}")
    num_tasks = steps[0].obs.shape[0]
    path = [stack_params(params, num_tasks)]
    kls = []
    for batch in steps[:-1]:
        dist, values = forward(path[-1], batch.obs)
        kls.append(_task_mean(MaskedDiagGaussian.from_logits(batch.dist_inputs_old).kl(dist), batch.mask))
        loss = _inner_terms(dist, values, batch, coeffs.vf_loss_coeff)
        path.append(_batched_step(path[-1], loss, coeffs.inner_lr, create_graph=not coeffs.first_order))
    outer = steps[-1]
    dist, values = forward(path[-1], outer.obs)
    kls.append(_task_mean(MaskedDiagGaussian.from_logits(outer.dist_inputs_old).kl(dist), outer.mask))
    ratio = torch.exp(dist.logp(outer.actions) - outer.logp_old)
    clipped = torch.clamp(ratio, 1.0 - coeffs.clip_param, 1.0 + coeffs.clip_param)
    return {
        "surrogate_clipped": -_task_mean(torch.min(ratio * outer.advantages, clipped * outer.advantages), outer.mask),
        "surrogate": -_task_mean(ratio * outer.advantages, outer.mask),
        "vf_loss": _value_loss(values, outer),
        "entropy": _task_mean(dist.entropy(), outer.mask),
        "kl": torch.stack(kls).mean(0),
        "kl_post": kls[-1],
    }


def batched_meta_loss(
    forward: BatchedForwardFn, params: Params, steps: Sequence[StackedBatch], coeffs: MAMLSettings
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """:func:`meta_loss` with the tasks stacked: the same value and gradient, in one pass per step.

    ``meta_optimizer="ppo"``: the clipped surrogate plus the adaptive KL penalty;
    ``"vpg"`` (and TRPO's objective): the plain surrogate, no clipping, no penalty.
    """
    terms = batched_meta_terms(forward, params, steps, coeffs)
    if coeffs.meta_optimizer == "ppo":
        surrogate, penalty = terms["surrogate_clipped"], coeffs.kl_coeff * terms["kl"]
    else:
        surrogate, penalty = terms["surrogate"], 0.0
    per_task = surrogate + coeffs.vf_loss_coeff * terms["vf_loss"] - coeffs.entropy_coeff * terms["entropy"] + penalty
    stats = {"policy_loss": surrogate, "vf_loss": terms["vf_loss"], "entropy": terms["entropy"], "kl": terms["kl"]}
    return per_task.mean(), {k: v.detach().mean() for k, v in stats.items()}
