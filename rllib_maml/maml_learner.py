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

from typing import Any, Dict, Optional

import torch

from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rllib_maml.meta_updater import MAMLMetaUpdater, MAMLSettings, MAMLUpdaterMethods


class MAMLTorchLearner(MAMLUpdaterMethods, TorchLearner):
    """Computes adapted weights for sampling and runs the MAML meta-update.

    Public methods (called by :class:`rllib_maml.MAML` through the LearnerGroup):
        ``theta_weights()``: theta as numpy arrays.
        ``adapted_weights(rollouts)``: ``theta'_i`` for every task, as numpy arrays.
        ``meta_update(rollouts)``: ``maml_optimizer_steps`` Adam steps on the meta-loss.

    The work is done by :class:`rllib_maml.meta_updater.MAMLMetaUpdater`, shared with
    the old stack's :class:`rllib_maml.MAMLTorchPolicy`; this class supplies RLlib's
    optimizer step (Adam, gradient clipping) and checkpoint state.
    """

    def build(self) -> None:
        if self.config.torch_num_threads is not None:
            torch.set_num_threads(self.config.torch_num_threads)
        super().build()
        self.maml = MAMLMetaUpdater.for_module(
            self.module[DEFAULT_MODULE_ID], self._apply_meta_gradient, MAMLSettings.from_config(self.config)
        )

    def _apply_meta_gradient(self, loss: torch.Tensor) -> None:
        gradients = self.compute_gradients({DEFAULT_MODULE_ID: loss})
        self.apply_gradients(self.postprocess_gradients(gradients))

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: Dict[str, Any], fwd_out: Dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError(
            "MAMLTorchLearner trains through meta_update(); Learner.update() is not used by MAML."
        )

    # --- checkpoint state ------------------------------------------------------
    def get_state(self, components: Optional[Any] = None, *, not_components: Optional[Any] = None, **kwargs: Any) -> Dict[str, Any]:
        return self.maml.save_to(super().get_state(components, not_components=not_components, **kwargs))

    def set_state(self, state: Dict[str, Any]) -> None:
        super().set_state(state)
        self.maml.restore_from(state)
