"""The Learner: inner adaptation steps and the meta-update on the Learner's copy of theta.

Why not RLlib's ``TorchMetaLearner`` / ``TorchDifferentiableLearner``: they chain
functional updates over *one* shared training batch (one ``theta'`` for all data),
which fits their supervised example. MAML for RL needs one ``theta'_i`` per task,
each from that task's own pre-adaptation data, with the outer loss on that task's
post-adaptation data sampled by ``theta'_i``. So this Learner keeps RLlib's
``TorchLearner`` machinery (module, Adam optimizer, gradient clipping, checkpoint
state) and puts the per-task math of :mod:`rllib_maml.maml_math` around it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rllib_maml.maml_math import MetaLossCoefficients, Params, adaptation_path, meta_loss, update_kl_coeff
from rllib_maml.maml_rl_module import MaskedDiagGaussian, functional_forward
from rllib_maml.rollouts import TaskBatch, TaskRollout, task_batch

KL_COEFF_STATE_KEY = "maml_kl_coeff"


def _numpy_copy(params: Params) -> Dict[str, np.ndarray]:
    return {name: p.detach().cpu().numpy().copy() for name, p in params.items()}


class MAMLTorchLearner(TorchLearner):
    """Computes adapted weights for sampling and runs the MAML meta-update.

    Public methods (called by :class:`rllib_maml.MAML` through the LearnerGroup):
        ``theta_weights()``: theta as numpy arrays.
        ``adapted_weights(rollouts)``: ``theta'_i`` for every task, as numpy arrays.
        ``meta_update(rollouts)``: ``maml_optimizer_steps`` Adam steps on the meta-loss.
    """

    def build(self) -> None:
        if self.config.torch_num_threads is not None:
            torch.set_num_threads(self.config.torch_num_threads)
        super().build()
        self.kl_coeff: float = float(self.config.kl_coeff)

    # --- functional forward --------------------------------------------------
    @property
    def _policy(self) -> torch.nn.Module:
        return self.module[DEFAULT_MODULE_ID]

    def _forward(self, params: Params, obs: torch.Tensor) -> Tuple[MaskedDiagGaussian, torch.Tensor]:
        return functional_forward(self._policy, params, obs)

    def _theta(self) -> Params:
        """The module's own parameters: the meta-gradient flows into these."""
        return dict(self._policy.named_parameters())

    def _coefficients(self) -> MetaLossCoefficients:
        cfg = self.config
        return MetaLossCoefficients(
            inner_lr=cfg.inner_lr,
            clip_param=cfg.clip_param,
            vf_loss_coeff=cfg.vf_loss_coeff,
            entropy_coeff=cfg.entropy_coeff,
            kl_coeff=self.kl_coeff,
            first_order=cfg.first_order,
        )

    # --- data ------------------------------------------------------------------
    def _batches_and_path(self, rollouts: Sequence[TaskRollout], extend_path: bool) -> Tuple[List[TaskBatch], List[Params]]:
        """Builds one task's batches (GAE with the value head of the parameters that sampled
        each step) and its adaptation path ``theta^0..theta^k`` without a graph.

        ``rollouts`` must be labelled steps ``0..k``. With ``extend_path`` the path also
        takes a step on the last batch (for the weights that sample the next step).
        """
        if [r.step for r in rollouts] != list(range(len(rollouts))):
            raise ValueError(f"rollouts must be labelled 0..k in order, got {[r.step for r in rollouts]}")
        coeffs = self._coefficients()
        path: List[Params] = [{n: p.detach().requires_grad_(True) for n, p in self._theta().items()}]
        batches: List[TaskBatch] = []
        for j, rollout in enumerate(rollouts):
            with torch.no_grad():
                _, values = self._forward(path[j], torch.from_numpy(np.array(rollout.obs)))
            batches.append(task_batch(rollout, values.numpy(), self.config.gamma, self.config.lambda_))
            if extend_path or j < len(rollouts) - 1:
                step = adaptation_path(self._forward, path[j], [batches[j]], coeffs, create_graph=False)[-1]
                path.append({n: p.detach().requires_grad_(True) for n, p in step.items()})
        return batches, path

    # --- API for the Algorithm -----------------------------------------------
    def theta_weights(self) -> Dict[str, np.ndarray]:
        """A snapshot of theta (copied: later optimizer steps do not change it)."""
        return _numpy_copy(self._theta())

    def adapted_weights(self, rollouts: Sequence[Sequence[TaskRollout]]) -> List[Dict[str, np.ndarray]]:
        """For each task ``i``, the weights after one more inner step on its latest data.

        ``rollouts[i]`` holds task ``i``'s rollouts for steps ``0..j``; the result is
        ``theta_i^{j+1}``, recomputed from theta (the Learner keeps no per-task state).
        """
        weights = []
        for task_rollouts in rollouts:
            _, path = self._batches_and_path(task_rollouts, extend_path=True)
            weights.append(_numpy_copy(path[-1]))
        return weights

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        """Runs ``maml_optimizer_steps`` meta-optimizer steps on the meta-loss.

        ``rollouts[i]`` holds task ``i``'s rollouts for steps ``0..K``; advantages are
        fixed before the first step (computed by the parameters that sampled them).
        Returns the last step's loss statistics and the updated ``kl_coeff``.
        """
        task_batches = [self._batches_and_path(r, extend_path=False)[0] for r in rollouts]
        stats: Dict[str, Any] = {}
        for _ in range(self.config.maml_optimizer_steps):
            loss, stats = meta_loss(self._forward, self._theta(), task_batches, self._coefficients())
            gradients = self.compute_gradients({DEFAULT_MODULE_ID: loss})
            self.apply_gradients(self.postprocess_gradients(gradients))
            stats["meta_loss"] = loss.detach()
        result = {k: float(v) for k, v in stats.items()}
        self.kl_coeff = update_kl_coeff(self.kl_coeff, result["kl"], self.config.kl_target)
        result["kl_coeff"] = self.kl_coeff
        return result

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: Dict[str, Any], fwd_out: Dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError(
            "MAMLTorchLearner trains through meta_update(); Learner.update() is not used by MAML."
        )

    # --- checkpoint state ------------------------------------------------------
    def get_state(self, components: Optional[Any] = None, *, not_components: Optional[Any] = None, **kwargs: Any) -> Dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        state[KL_COEFF_STATE_KEY] = self.kl_coeff
        return state

    def set_state(self, state: Dict[str, Any]) -> None:
        super().set_state(state)
        if KL_COEFF_STATE_KEY in state:
            self.kl_coeff = float(state[KL_COEFF_STATE_KEY])
