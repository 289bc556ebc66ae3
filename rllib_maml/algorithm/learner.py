"""The Learner: inner adaptation steps and the meta-update on the Learner's copy of theta.

Why not RLlib's ``TorchMetaLearner`` / ``TorchDifferentiableLearner``: they chain
functional updates over *one* shared training batch (one ``theta'`` for all data),
which fits their supervised example. MAML for RL needs one ``theta'_i`` per task,
each from that task's own pre-adaptation data, with the outer loss on that task's
post-adaptation data sampled by ``theta'_i``. So this Learner keeps RLlib's
``TorchLearner`` machinery (module, Adam optimizer, gradient clipping, checkpoint
state) and puts the per-task math of :mod:`rllib_maml.core.maml_math` around it.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist

from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.annotations import override

from rllib_maml.algorithm.rl_module import meta_updater_for
from rllib_maml.core.settings import MAMLSettings
from rllib_maml.core.updater import MAMLUpdaterMethods
from rllib_maml.core.data import TaskRollout


def task_share(num_tasks: int, rank: int, world_size: int) -> slice:
    """The contiguous block of the meta-batch that Learner ``rank`` of ``world_size`` updates on
    (the first ``num_tasks % world_size`` Learners take one task more)."""
    base, extra = divmod(num_tasks, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class MAMLTorchLearner(MAMLUpdaterMethods, TorchLearner):
    """Computes adapted weights for sampling and runs the MAML meta-update.

    Public methods (called by :class:`rllib_maml.MAML` through the LearnerGroup):
        ``theta_weights()``: theta as numpy arrays.
        ``adapted_weights(rollouts)``: ``theta'_i`` for every task, as numpy arrays.
        ``meta_update(rollouts)``: ``maml_optimizer_steps`` Adam steps on the meta-loss.

    The work is done by :class:`rllib_maml.core.updater.MAMLMetaUpdater`, shared with
    the old stack's :class:`rllib_maml.MAMLTorchPolicy`; this class supplies RLlib's
    optimizer step (Adam, gradient clipping) and checkpoint state.

    With ``config.learners(num_learners=N)``, N >= 2, every Learner gets the whole
    meta-batch and updates on its own block of tasks (:func:`task_share`): the
    second-order meta-gradient of those tasks, weighted by their share, summed over
    all Learners with ``torch.distributed.all_reduce`` in the process group RLlib's
    LearnerGroup set up. Every Learner then takes the same Adam step from the same
    averaged gradient, and adapts the KL coefficient from the same averaged KL, so
    theta, Adam's state and ``kl_coeff`` stay identical on all of them.
    """

    @override(TorchLearner)
    def build(self) -> None:
        if self.config.torch_num_threads is not None:
            torch.set_num_threads(self.config.torch_num_threads)
        super().build()
        distributed = dist.is_available() and dist.is_initialized()
        self._rank = dist.get_rank() if distributed else 0
        self._world_size = dist.get_world_size() if distributed else 1
        self._share_weight = 1.0
        if self._world_size > 1:
            # Each Learner built its own random init; start all from Learner 0's theta.
            for parameter in self.module[DEFAULT_MODULE_ID].parameters():
                dist.broadcast(parameter.data, src=0)
        self.maml = meta_updater_for(
            self.module[DEFAULT_MODULE_ID], self._apply_meta_gradient, MAMLSettings.from_config(self.config),
            average_stats=self._average_over_learners if self._world_size > 1 else None,
        )

    @override(TorchLearner)
    def _make_modules_ddp_if_necessary(self) -> None:
        # DDP reduces gradients in hooks of its own forward pass; MAML's meta-loss runs the
        # plain module functionally (vmapped over tasks), so _apply_meta_gradient reduces instead.
        return

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        """The meta-update on this Learner's share of ``rollouts`` (all of them with one Learner)."""
        share = task_share(len(rollouts), self._rank, self._world_size)
        self._share_weight = (share.stop - share.start) / len(rollouts)
        return self.maml.meta_update(list(rollouts)[share])

    @override(MAMLUpdaterMethods)
    def meta_optimizers(self) -> List[torch.optim.Optimizer]:
        return [optimizer for _, optimizer in self.get_optimizers_for_module(DEFAULT_MODULE_ID)]

    def _weighted_all_reduce(self, tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Each tensor's share-weighted sum over all Learners (one flat all-reduce; a collective call)."""
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))  # no precision lost
        flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors]) * self._share_weight
        dist.all_reduce(flat)
        return [c.view_as(t).to(t.dtype) for c, t in zip(flat.split([t.numel() for t in tensors]), tensors)]

    def _average_over_learners(self, values: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The share-weighted mean over all Learners of each tensor (any shapes)."""
        keys = sorted(values)
        return dict(zip(keys, self._weighted_all_reduce([values[k] for k in keys])))

    def _apply_meta_gradient(self, loss: torch.Tensor) -> None:
        gradients = self.compute_gradients({DEFAULT_MODULE_ID: loss})
        if self._world_size > 1:
            self._all_reduce_gradients(gradients)
        self.apply_gradients(self.postprocess_gradients(gradients))

    def _all_reduce_gradients(self, gradients: Dict[Any, Optional[torch.Tensor]]) -> None:
        """Replaces each gradient by the share-weighted sum over Learners: the gradient of the
        meta-loss averaged over the whole meta-batch. One flat all-reduce per step."""
        parameters = dict(self.module[DEFAULT_MODULE_ID].named_parameters())
        refs = [self.get_param_ref(p) for p in parameters.values()]
        grads: List[torch.Tensor] = [
            gradients[r] if gradients.get(r) is not None else torch.zeros_like(p) for r, p in zip(refs, parameters.values())
        ]
        gradients.update(zip(refs, self._weighted_all_reduce(grads)))

    @override(TorchLearner)
    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: Dict[str, Any], fwd_out: Dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError(
            "MAMLTorchLearner trains through meta_update(); Learner.update() is not used by MAML."
        )

    # --- checkpoint state ------------------------------------------------------
    @override(TorchLearner)
    def get_state(self, components: Optional[Any] = None, *, not_components: Optional[Any] = None, **kwargs: Any) -> Dict[str, Any]:
        return self.maml.save_to(super().get_state(components, not_components=not_components, **kwargs))

    @override(TorchLearner)
    def set_state(self, state: Dict[str, Any]) -> None:
        super().set_state(state)
        self.maml.restore_from(state)
