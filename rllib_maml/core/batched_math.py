"""The MAML math of :mod:`rllib_maml.core.maml_math` with the tasks stacked: ``M``
tasks' batches padded to ``[M, N, ...]`` and the parameters stacked to ``[M, ...]``,
so each inner step and the meta-loss are one batched pass per adaptation step, not a
Python loop over tasks. Same values and gradients as the per-task forms (tested).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from rllib_maml.core.data import TaskBatch
from rllib_maml.core.distributions import MaskedDiagGaussian
from rllib_maml.core.maml_math import Params
from rllib_maml.core.settings import MAMLSettings

#: ``forward(stacked params {name: [M, ...]}, obs [M, N, obs_dim]) -> (dist over [M, N], values [M, N])``;
#: values may be ``None`` (a policy-only forward): the value loss is then 0.
BatchedForwardFn = Callable[[Params, torch.Tensor], Tuple[MaskedDiagGaussian, Optional[torch.Tensor]]]
#: ``lr_scale(stacked params, obs [M, N, obs_dim]) -> [M]``: each task's factor on ``inner_lr``, read
#: from parameters that the meta-update learns (``model_config["learn_inner_lr"]``); None: 1 for all.
LRScaleFn = Callable[[Params, torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class StackedBatch:
    """The :class:`TaskBatch` es of ``M`` tasks at one adaptation step, padded to ``N`` rows.

    Tensors are ``[M, N, ...]``; ``mask`` ``[M, N]`` is 1 on real rows and 0 on padding,
    so every per-task mean below is over that task's own rows only, exactly as in
    the per-task functions of :mod:`rllib_maml.core.maml_math`.
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
    """Per-task :func:`~rllib_maml.core.maml_math.inner_loss` ``[M]`` from a forward pass already made."""
    ratio = torch.exp(dist.logp(batch.actions) - batch.logp_old)
    surrogate = -_task_mean(ratio * batch.advantages, batch.mask)
    return surrogate + vf_loss_coeff * _value_loss(values, batch)


def task_inner_lr(
    coeffs: MAMLSettings, lr_scale: Optional[LRScaleFn], params: Params, obs: torch.Tensor
) -> Union[float, torch.Tensor]:
    """``inner_lr``, or with ``lr_scale`` each task's ``inner_lr * lr_scale(params, obs)`` ``[M]``
    (a differentiable function of the stacked parameters: the meta-gradient learns it)."""
    return coeffs.inner_lr if lr_scale is None else coeffs.inner_lr * lr_scale(params, obs)


def _batched_step(
    params: Params, loss: torch.Tensor, inner_lr: Union[float, torch.Tensor], create_graph: bool
) -> Params:
    """``theta'_i = theta_i - inner_lr_i * grad_i`` for all tasks at once from per-task losses ``[M]``.

    Task ``i``'s loss depends only on row ``i`` of the stacked parameters, so the
    gradient of the sum is each task's own gradient, row by row. ``inner_lr`` is one
    number, or ``[M]``: one step size per task.
    """
    names = list(params)
    grads = torch.autograd.grad(
        loss.sum(), [params[n] for n in names], create_graph=create_graph, retain_graph=True, allow_unused=True
    )

    def lr_for(g: torch.Tensor) -> Union[float, torch.Tensor]:
        return inner_lr.reshape(-1, *([1] * (g.dim() - 1))) if isinstance(inner_lr, torch.Tensor) else inner_lr

    return {n: params[n] if g is None else params[n] - lr_for(g) * g for n, g in zip(names, grads)}


def batched_adaptation_path(
    forward: BatchedForwardFn,
    params: Params,
    inner_batches: Sequence[StackedBatch],
    coeffs: MAMLSettings,
    lr_scale: Optional[LRScaleFn] = None,
) -> List[Params]:
    """:func:`~rllib_maml.core.maml_math.adaptation_path` for all tasks at once, without a graph: stacked ``theta^0..theta^k``."""
    path = [params]
    for batch in inner_batches:
        dist, values = forward(path[-1], batch.obs)
        loss = _inner_terms(dist, values, batch, coeffs.vf_loss_coeff)
        with torch.no_grad():
            inner_lr = task_inner_lr(coeffs, lr_scale, path[-1], batch.obs)
        step = _batched_step(path[-1], loss, inner_lr, create_graph=False)
        path.append({n: p.detach().requires_grad_(True) for n, p in step.items()})
    return path


def batched_meta_terms(
    forward: BatchedForwardFn,
    params: Params,
    steps: Sequence[StackedBatch],
    coeffs: MAMLSettings,
    lr_scale: Optional[LRScaleFn] = None,
) -> Dict[str, torch.Tensor]:
    """The meta-objective's per-task terms ``[M]``, differentiable w.r.t. ``params`` through the inner steps.

    ``steps[j]`` holds every task's batch labelled ``j`` (``j = 0..K``). Each forward
    pass of ``theta^j`` on step ``j`` serves both the inner step and the KL term.
    Keys: ``surrogate_clipped`` (PPO's), ``surrogate`` (plain ``-E[ratio * A]``),
    ``vf_loss``, ``entropy`` (post-adaptation), ``kl`` (mean over steps ``0..K`` of the
    KL from each step's sampling policy) and ``kl_post`` (that KL at step ``K`` alone).
    With ``lr_scale`` the per-task step sizes are functions of ``params`` too (in first-order
    MAML as well: only the inner gradient is a constant there).
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
        inner_lr = task_inner_lr(coeffs, lr_scale, path[-1], batch.obs)
        path.append(_batched_step(path[-1], loss, inner_lr, create_graph=not coeffs.first_order))
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
    forward: BatchedForwardFn,
    params: Params,
    steps: Sequence[StackedBatch],
    coeffs: MAMLSettings,
    lr_scale: Optional[LRScaleFn] = None,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """:func:`~rllib_maml.core.maml_math.meta_loss` with the tasks stacked: the same value and gradient, in one pass per step.

    ``meta_optimizer="ppo"``: the clipped surrogate plus the adaptive KL penalty;
    ``"vpg"`` (and TRPO's objective): the plain surrogate, no clipping, no penalty.
    """
    terms = batched_meta_terms(forward, params, steps, coeffs, lr_scale)
    if coeffs.meta_optimizer == "ppo":
        surrogate, penalty = terms["surrogate_clipped"], coeffs.kl_coeff * terms["kl"]
    else:
        surrogate, penalty = terms["surrogate"], 0.0
    per_task = surrogate + coeffs.vf_loss_coeff * terms["vf_loss"] - coeffs.entropy_coeff * terms["entropy"] + penalty
    stats = {"policy_loss": surrogate, "vf_loss": terms["vf_loss"], "entropy": terms["entropy"], "kl": terms["kl"]}
    return per_task.mean(), {k: v.detach().mean() for k, v in stats.items()}
