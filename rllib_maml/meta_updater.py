"""The MAML update shared by both API stacks: adapted weights for sampling and the meta-update.

The new stack's :class:`rllib_maml.MAMLTorchLearner` and the old stack's
:class:`rllib_maml.MAMLTorchPolicy` each own a network and an optimizer; both hand
them to one :class:`MAMLMetaUpdater`, which turns labelled rollouts into
:class:`~rllib_maml.rollouts.TaskBatch` es and calls the pure functions of
:mod:`rllib_maml.maml_math`. So the loss, the inner step and the KL rule exist once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from rllib_maml.maml_math import ForwardFn, MetaLossCoefficients, Params, adaptation_path, meta_loss, update_kl_coeff
from rllib_maml.maml_rl_module import MAMLTorchRLModule, functional_forward
from rllib_maml.rollouts import TaskBatch, TaskRollout, task_batch

#: Checkpoint-state key of the adaptive KL coefficient (Learner and Policy state alike).
KL_COEFF_STATE_KEY = "maml_kl_coeff"


def numpy_copy(params: Params) -> Dict[str, np.ndarray]:
    """Detached numpy copies of ``params`` (later optimizer steps do not change them)."""
    return {name: p.detach().cpu().numpy().copy() for name, p in params.items()}


@dataclasses.dataclass(frozen=True)
class MAMLSettings:
    """The hyperparameters the update reads, taken from a ``MAMLConfig`` or its dict form."""

    inner_lr: float
    clip_param: float
    vf_loss_coeff: float
    entropy_coeff: float
    first_order: bool
    gamma: float
    lambda_: float
    kl_coeff: float
    kl_target: float
    maml_optimizer_steps: int

    @classmethod
    def from_config(cls, config: Any) -> "MAMLSettings":
        """Reads a ``MAMLConfig`` (the Learner's) or the config dict a Policy gets.

        ``AlgorithmConfig.to_dict()`` renames ``lambda_`` to ``lambda``.
        """
        if isinstance(config, Mapping):
            values = dict(config)
            values.setdefault("lambda_", values.get("lambda"))
        else:
            values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


class MAMLMetaUpdater:
    """Computes ``theta'_i`` for sampling and runs the meta-update on one network.

    Args:
        forward: ``forward(params, obs) -> (action distribution, values)`` of the network.
        theta: returns the network's own parameters (the meta-gradient flows into them).
        apply_meta_gradient: takes the scalar meta-loss and takes one optimizer step on
            theta (RLlib's Learner machinery, or the Policy's Adam).
        settings: the hyperparameters.
    """

    def __init__(
        self,
        forward: ForwardFn,
        theta: Callable[[], Params],
        apply_meta_gradient: Callable[[torch.Tensor], None],
        settings: MAMLSettings,
    ) -> None:
        self._forward = forward
        self._theta = theta
        self._apply_meta_gradient = apply_meta_gradient
        self.settings = settings
        self.kl_coeff: float = float(settings.kl_coeff)

    @classmethod
    def for_module(
        cls,
        module: MAMLTorchRLModule,
        apply_meta_gradient: Callable[[torch.Tensor], None],
        settings: MAMLSettings,
    ) -> "MAMLMetaUpdater":
        """The updater of ``module``'s own parameters (the network of both API stacks)."""
        return cls(
            forward=functools.partial(functional_forward, module),
            theta=lambda: dict(module.named_parameters()),
            apply_meta_gradient=apply_meta_gradient,
            settings=settings,
        )

    def save_to(self, state: Dict[str, Any]) -> Dict[str, Any]:
        """Adds the update's own state (the adaptive KL coefficient) to a checkpoint state."""
        state[KL_COEFF_STATE_KEY] = self.kl_coeff
        return state

    def restore_from(self, state: Dict[str, Any]) -> None:
        """Reads what :meth:`save_to` added, if present."""
        if KL_COEFF_STATE_KEY in state:
            self.kl_coeff = float(state[KL_COEFF_STATE_KEY])

    def coefficients(self) -> MetaLossCoefficients:
        s = self.settings
        return MetaLossCoefficients(
            inner_lr=s.inner_lr,
            clip_param=s.clip_param,
            vf_loss_coeff=s.vf_loss_coeff,
            entropy_coeff=s.entropy_coeff,
            kl_coeff=self.kl_coeff,
            first_order=s.first_order,
        )

    def batches_and_path(self, rollouts: Sequence[TaskRollout], extend_path: bool) -> Tuple[List[TaskBatch], List[Params]]:
        """Builds one task's batches (GAE with the value head of the parameters that sampled
        each step) and its adaptation path ``theta^0..theta^k`` without a graph.

        ``rollouts`` must be labelled steps ``0..k``. With ``extend_path`` the path also
        takes a step on the last batch (for the weights that sample the next step).
        """
        if [r.step for r in rollouts] != list(range(len(rollouts))):
            raise ValueError(f"rollouts must be labelled 0..k in order, got {[r.step for r in rollouts]}")
        coeffs = self.coefficients()
        path: List[Params] = [{n: p.detach().requires_grad_(True) for n, p in self._theta().items()}]
        batches: List[TaskBatch] = []
        for j, rollout in enumerate(rollouts):
            with torch.no_grad():
                _, values = self._forward(path[j], torch.from_numpy(np.array(rollout.obs)))
            batches.append(task_batch(rollout, values.numpy(), self.settings.gamma, self.settings.lambda_))
            if extend_path or j < len(rollouts) - 1:
                step = adaptation_path(self._forward, path[j], [batches[j]], coeffs, create_graph=False)[-1]
                path.append({n: p.detach().requires_grad_(True) for n, p in step.items()})
        return batches, path

    def theta_weights(self) -> Dict[str, np.ndarray]:
        """A snapshot of theta as numpy arrays."""
        return numpy_copy(self._theta())

    def adapted_weights(self, rollouts: Sequence[Sequence[TaskRollout]]) -> List[Dict[str, np.ndarray]]:
        """For each task ``i``, the weights after one more inner step on its latest data.

        ``rollouts[i]`` holds task ``i``'s rollouts for steps ``0..j``; the result is
        ``theta_i^{j+1}``, recomputed from theta (no per-task state is kept).
        """
        return [numpy_copy(self.batches_and_path(r, extend_path=True)[1][-1]) for r in rollouts]

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        """Runs ``maml_optimizer_steps`` meta-optimizer steps on the meta-loss.

        ``rollouts[i]`` holds task ``i``'s rollouts for steps ``0..K``; advantages are
        fixed before the first step (computed by the parameters that sampled them).
        Returns the last step's loss statistics and the updated ``kl_coeff``.
        """
        task_batches = [self.batches_and_path(r, extend_path=False)[0] for r in rollouts]
        stats: Dict[str, Any] = {}
        for _ in range(self.settings.maml_optimizer_steps):
            loss, stats = meta_loss(self._forward, self._theta(), task_batches, self.coefficients())
            self._apply_meta_gradient(loss)
            stats["meta_loss"] = loss.detach()
        result = {k: float(v) for k, v in stats.items()}
        self.kl_coeff = update_kl_coeff(self.kl_coeff, result["kl"], self.settings.kl_target)
        result["kl_coeff"] = self.kl_coeff
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
