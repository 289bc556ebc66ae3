"""The MAML update shared by both API stacks: adapted weights for sampling and the meta-update.

The new stack's :class:`rllib_maml.MAMLTorchLearner` and the old stack's
:class:`rllib_maml.MAMLTorchPolicy` each own a network and an optimizer; both hand
them to one :class:`MAMLMetaUpdater` (through
:func:`rllib_maml.algorithm.rl_module.meta_updater_for`), which turns labelled rollouts into
:class:`~rllib_maml.core.data.TaskBatch` es and calls the pure functions of
:mod:`rllib_maml.core.maml_math`. So the loss, the inner step and the KL rule exist once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from rllib_maml.core.batched_math import (
    BatchedForwardFn,
    LRScaleFn,
    StackedBatch,
    batched_adaptation_path,
    batched_meta_loss,
    batched_meta_terms,
    stack_params,
)
from rllib_maml.core.maml_math import ForwardFn, Params, update_kl_coeff
from rllib_maml.core.settings import MAMLSettings
from rllib_maml.core.trpo import backtracking_line_search, fisher_vector_product_fn, flatten, natural_step, unflatten
from rllib_maml.core.data import NonFiniteDataError, TaskBatch, TaskRollout, linear_baseline_values, task_batch

#: Checkpoint-state key of the adaptive KL coefficient (Learner and Policy state alike).
KL_COEFF_STATE_KEY = "maml_kl_coeff"


def padded_obs(rollouts: Sequence[TaskRollout], like: Params) -> torch.Tensor:
    """All rollouts' observations ``[M, max rows, obs_dim]``, zero-padded, in ``like``'s dtype."""
    rows = max(len(r.obs) for r in rollouts)
    out = np.zeros((len(rollouts), rows, *rollouts[0].obs.shape[1:]), np.float32)
    for i, rollout in enumerate(rollouts):
        out[i, : len(rollout.obs)] = rollout.obs
    return torch.from_numpy(out).to(next(iter(like.values())).dtype)


def numpy_copy(params: Params) -> Dict[str, np.ndarray]:
    """Detached numpy copies of ``params`` (later optimizer steps do not change them)."""
    return {name: p.detach().cpu().numpy().copy() for name, p in params.items()}


class MAMLMetaUpdater:
    """Computes ``theta'_i`` for sampling and runs the meta-update on one network.

    Args:
        forward: ``forward(params, obs) -> (action distribution, values)`` of the network.
        batched_forward: the same for parameters stacked over tasks (``[M, ...]``) and
            observations ``[M, N, obs_dim]``; the update runs all tasks through it at once.
            It takes ``with_values=False`` for the policy alone: with the linear
            baseline the value network serves nothing, so the update never runs it.
        theta: returns the network's own parameters (the meta-gradient flows into them).
        apply_meta_gradient: takes the scalar meta-loss and takes one optimizer step on
            theta (RLlib's Learner machinery, or the Policy's Adam).
        settings: the hyperparameters.
        average_stats: with several Learners, each holding a share of the tasks, the
            share-weighted mean of each loss statistic over all Learners (a collective
            call); the updater then checks and reports global values, and every
            Learner adapts the KL coefficient alike. None: one Learner.
        lr_scale: each task's learned factor on ``inner_lr``, from theta and the task's
            observations (:data:`~rllib_maml.core.batched_math.LRScaleFn`); None: every
            task steps with ``inner_lr`` itself.
    """

    def __init__(
        self,
        forward: ForwardFn,
        theta: Callable[[], Params],
        apply_meta_gradient: Callable[[torch.Tensor], None],
        settings: MAMLSettings,
        batched_forward: BatchedForwardFn,
        average_stats: Optional[Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]] = None,
        lr_scale: Optional[LRScaleFn] = None,
    ) -> None:
        self._forward = forward
        self._lr_scale = lr_scale
        self._average_stats = average_stats or (lambda stats: stats)
        self._batched_forward = batched_forward
        self._theta = theta
        self._apply_meta_gradient = apply_meta_gradient
        self.settings = settings
        self.kl_coeff: float = float(settings.kl_coeff)

    def save_to(self, state: Dict[str, Any]) -> Dict[str, Any]:
        """Adds the update's own state (the adaptive KL coefficient) to a checkpoint state."""
        state[KL_COEFF_STATE_KEY] = self.kl_coeff
        return state

    def restore_from(self, state: Dict[str, Any]) -> None:
        """Reads what :meth:`save_to` added, if present."""
        if KL_COEFF_STATE_KEY in state:
            self.kl_coeff = float(state[KL_COEFF_STATE_KEY])

    def coefficients(self) -> MAMLSettings:
        """The settings with today's adaptive KL coefficient: what the math reads."""
        return dataclasses.replace(self.settings, kl_coeff=self.kl_coeff)

    def batches_and_path(
        self, rollouts: Sequence[Sequence[TaskRollout]], extend_path: bool
    ) -> Tuple[List[List[TaskBatch]], List[Params]]:
        """Builds every task's batches and their adaptation paths, all tasks at once, without a graph.

        ``rollouts[i]`` must be task ``i``'s rollouts labelled ``0..k``. ``batches[i][j]``
        gets GAE with the value head of the parameters that sampled step ``j``;
        ``path[j]`` holds those parameters stacked over tasks (``[M, ...]``). With
        ``extend_path`` the path also takes a step on the last batches (the weights
        that sample the next step).
        """
        num_steps = len(rollouts[0])
        for task_rollouts in rollouts:
            if [r.step for r in task_rollouts] != list(range(num_steps)):
                raise ValueError(
                    f"task {task_rollouts[0].task_index}: rollouts must be labelled 0..{num_steps - 1} in "
                    f"order, got {[r.step for r in task_rollouts]}"
                )
        coeffs = self.coefficients()
        theta = {n: p.detach() for n, p in self._theta().items()}
        device = next(iter(theta.values())).device
        path: List[Params] = [{n: p.clone().requires_grad_(True) for n, p in stack_params(theta, len(rollouts)).items()}]
        batches: List[List[TaskBatch]] = [[] for _ in rollouts]
        for j in range(num_steps):
            step_rollouts = [task_rollouts[j] for task_rollouts in rollouts]
            if self.settings.baseline == "linear":
                baselines = [linear_baseline_values(rollout, self.settings.gamma) for rollout in step_rollouts]
            else:
                with torch.no_grad():
                    _, values = self._batched_forward(path[j], padded_obs(step_rollouts, theta).to(device))
                values = values.cpu()
                baselines = [values[i, : len(rollout.obs)].numpy() for i, rollout in enumerate(step_rollouts)]
            for i, (rollout, baseline) in enumerate(zip(step_rollouts, baselines)):
                batches[i].append(task_batch(rollout, baseline, self.settings.gamma, self.settings.lambda_, device))
            if extend_path or j < num_steps - 1:
                stacked = StackedBatch.stack([task_batches[j] for task_batches in batches])
                path.append(batched_adaptation_path(self._loss_forward(), path[j], [stacked], coeffs, self._lr_scale)[-1])
        return batches, path

    def _loss_forward(self) -> BatchedForwardFn:
        """The forward the losses use: without the value network under the linear baseline.

        There the value net computes no advantage, so its inner step (which moves
        only ``vf.*``) and its loss change nothing the policy sees; skipping it
        roughly halves the update's matmuls. ``vf_loss`` is then reported as 0.
        """
        if self.settings.baseline == "linear":
            return functools.partial(self._batched_forward, with_values=False)
        return self._batched_forward

    @contextlib.contextmanager
    def _update_threads(self) -> Iterator[None]:
        """``update_num_threads`` torch threads for the block (the runners wait meanwhile)."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.settings.update_num_threads or os.cpu_count() or 1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def theta_weights(self) -> Dict[str, np.ndarray]:
        """A snapshot of theta as numpy arrays."""
        return numpy_copy(self._theta())

    def adapted_weights(self, rollouts: Sequence[Sequence[TaskRollout]]) -> List[Dict[str, np.ndarray]]:
        """For each task ``i``, the weights after one more inner step on its latest data.

        ``rollouts[i]`` holds task ``i``'s rollouts for steps ``0..j``; the result is
        ``theta_i^{j+1}``, recomputed from theta (no per-task state is kept).
        """
        with self._update_threads():
            adapted = self.batches_and_path(rollouts, extend_path=True)[1][-1]
        for name, p in adapted.items():
            finite = torch.isfinite(p.reshape(len(rollouts), -1)).all(dim=1)
            if not finite.all():
                bad = [rollouts[i][0].task_index for i in torch.nonzero(~finite).flatten().tolist()]
                raise NonFiniteDataError(
                    f"the inner step to adaptation step {len(rollouts[0])} gave non-finite weights "
                    f"({name}) for tasks {bad}; lower inner_lr (now {self.settings.inner_lr})."
                )
        return [numpy_copy({n: p[i] for n, p in adapted.items()}) for i in range(len(rollouts))]

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        """Runs ``maml_optimizer_steps`` meta-optimizer steps on the meta-loss.

        ``rollouts[i]`` holds task ``i``'s rollouts for steps ``0..K``; advantages are
        fixed before the first step (computed by the parameters that sampled them).
        Returns the last step's loss statistics and the updated ``kl_coeff``.
        """
        with self._update_threads():
            task_batches = self.batches_and_path(rollouts, extend_path=False)[0]
            steps = [StackedBatch.stack([b[j] for b in task_batches]) for j in range(len(task_batches[0]))]
            if self.settings.meta_optimizer == "trpo":
                return {**self._trpo_update(steps), **self.learned_inner_lrs(rollouts, steps[0].obs)}
            stats: Dict[str, Any] = {}
            taken, early_stop = 0, self.settings.kl_early_stop
            for optimizer_step in range(self.settings.maml_optimizer_steps):
                loss, stats = batched_meta_loss(
                    self._loss_forward(), self._theta(), steps, self.coefficients(), self._lr_scale
                )
                # Over all Learners' tasks, so that every Learner raises (and stops) alike: none waits in a collective.
                stats = self._average_stats({"meta_loss": loss.detach(), **stats})
                nonfinite = sorted(k for k, v in stats.items() if not torch.isfinite(v).all())
                if nonfinite:
                    raise NonFiniteDataError(
                        f"the meta-update's {', '.join(nonfinite)} became non-finite at meta-optimizer step "
                        f"{optimizer_step} (tasks {[b[0].task_index for b in task_batches]}); theta is left "
                        "as it was before this step. Lower lr or inner_lr."
                    )
                if optimizer_step > 0 and early_stop is not None and float(stats["kl"]) > early_stop:
                    break  # theta has moved too far from the sampling policies already (the first step always runs)
                self._apply_meta_gradient(loss)
                taken += 1
        result = {k: float(v) for k, v in stats.items()}
        result["meta_optimizer_steps"] = float(taken)
        if self.settings.meta_optimizer == "ppo":  # VPG has no KL term to adapt
            self.kl_coeff = update_kl_coeff(self.kl_coeff, result["kl"], self.settings.kl_target)
        result["kl_coeff"] = self.kl_coeff
        return {**result, **self.learned_inner_lrs(rollouts, steps[0].obs)}

    def learned_inner_lrs(self, rollouts: Sequence[Sequence[TaskRollout]], obs: torch.Tensor) -> Dict[str, float]:
        """``{"inner_lr_<group>": step size}`` that theta now gives the tasks of ``rollouts``
        (``obs``: their stacked step-0 observations), ``inner_lr_all`` for ungrouped tasks;
        ``{}`` unless the step size is learned."""
        if self._lr_scale is None:
            return {}
        with torch.no_grad():
            theta = {n: p.detach() for n, p in self._theta().items()}
            lrs = self.settings.inner_lr * self._lr_scale(stack_params(theta, len(rollouts)), obs)
        return {f"inner_lr_{task[0].group or 'all'}": float(lr) for task, lr in zip(rollouts, lrs.cpu())}

    def _trpo_update(self, steps: Sequence[StackedBatch]) -> Dict[str, float]:
        """One TRPO step on the policy's parameters, then Adam steps on the value loss.

        Objective: the plain surrogate (minus the entropy bonus) after the inner steps;
        constraint: the mean post-adaptation KL from the sampling policies, both as
        functions of theta through the inner steps (second order unless ``first_order``).
        """
        s, coeffs = self.settings, self.coefficients()
        theta = self._theta()
        policy = [n for n in theta if not n.startswith("vf.")]
        leaves = [theta[n] for n in policy]

        def terms() -> Dict[str, torch.Tensor]:
            return batched_meta_terms(self._loss_forward(), theta, steps, coeffs, self._lr_scale)

        def objective(t: Dict[str, torch.Tensor]) -> torch.Tensor:
            return (t["surrogate"] - coeffs.entropy_coeff * t["entropy"]).mean()

        def average(name: str, value: torch.Tensor) -> torch.Tensor:
            return self._average_stats({name: value})[name]

        before = terms()
        loss_before = average("loss", objective(before).detach())
        gradient = average("gradient", flatten(torch.autograd.grad(objective(before), leaves, retain_graph=True)))
        local_fvp = fisher_vector_product_fn(before["kl_post"].mean(), leaves, s.cg_damping)
        step = natural_step(gradient, lambda v: average("fvp", local_fvp(v)), s.max_kl, s.cg_iters)
        start = [p.detach().clone() for p in leaves]

        def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
            with torch.no_grad():
                for p, p0, d in zip(leaves, start, unflatten(candidate, leaves)):
                    p.copy_(p0 + d)
            # The inner step needs gradients even here; only the result is detached.
            t = terms()
            return float(average("loss", objective(t).detach())), float(average("kl", t["kl_post"].mean().detach()))

        search = backtracking_line_search(
            evaluate, step, float(loss_before), s.max_kl, s.line_search_steps, s.line_search_backtrack_ratio
        )
        with torch.no_grad():
            fraction = search.fraction or 0.0
            for p, p0, d in zip(leaves, start, unflatten(fraction * step, leaves)):
                p.copy_(p0 + d)
        if s.baseline == "value_function" and s.vf_loss_coeff > 0:
            for _ in range(s.maml_optimizer_steps):  # the policy's gradients are 0 here: Adam leaves it
                self._apply_meta_gradient(coeffs.vf_loss_coeff * terms()["vf_loss"].mean())
        after = {k: average(k, v.detach().mean()) for k, v in terms().items()}
        result = {
            "policy_loss": float(after["surrogate"]),
            "vf_loss": float(after["vf_loss"]),
            "entropy": float(after["entropy"]),
            "kl": float(after["kl_post"]),
            "meta_loss": float(objective(after)),
            "trpo_step_fraction": fraction,
            "trpo_line_search_tries": float(search.tries),
            "kl_coeff": self.kl_coeff,
        }
        if not all(math.isfinite(v) for v in result.values()):
            raise NonFiniteDataError(f"the TRPO meta-step gave non-finite statistics {result}; lower max_kl or inner_lr.")
        return result


class MAMLUpdaterMethods:
    """The methods :class:`rllib_maml.MAML` calls on whatever holds theta (the new stack's
    Learner or the old stack's Policy); both keep their updater in ``self.maml``."""

    maml: MAMLMetaUpdater

    def theta_weights(self) -> Dict[str, np.ndarray]:
        """A snapshot of theta (copied: later optimizer steps do not change it)."""
        return self.maml.theta_weights()

    def adapted_weights(self, rollouts: Sequence[Sequence[TaskRollout]]) -> List[Dict[str, np.ndarray]]:
        """``theta_i^{j+1}`` for each task ``i`` whose rollouts for steps ``0..j`` are given."""
        return self.maml.adapted_weights(rollouts)

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        """``maml_optimizer_steps`` meta-optimizer steps on rollouts labelled ``0..K`` per task."""
        return self.maml.meta_update(rollouts)

    def meta_optimizers(self) -> List[torch.optim.Optimizer]:
        """The torch optimizers of theta (Adam; with TRPO, the value network's)."""
        raise NotImplementedError

    def set_meta_lr(self, lr: float) -> None:
        """Sets every meta-optimizer's learning rate (a restored optimizer keeps its checkpoint's)."""
        for optimizer in self.meta_optimizers():
            for group in optimizer.param_groups:
                group["lr"] = lr
