"""``MAMLTorchPolicy``: MAML with PPO inner loops on RLlib's old API stack (``TorchPolicyV2``)."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple, Type

import gymnasium as gym
import numpy as np
import torch

from ray.rllib.models.action_dist import ActionDistribution
from ray.rllib.models.modelv2 import ModelV2
from ray.rllib.policy.sample_batch import SampleBatch
from ray.rllib.policy.torch_policy_v2 import TorchPolicyV2
from ray.rllib.utils.annotations import override
from ray.rllib.utils.torch_utils import clip_gradients

from rllib_maml.old_stack.model import MAMLTorchModel, TorchMaskedDiagGaussian
from rllib_maml.algorithm.rl_module import meta_updater_for
from rllib_maml.core.settings import MAMLSettings
from rllib_maml.core.updater import MAMLUpdaterMethods
from rllib_maml.core.data import TaskRollout


class MAMLTorchPolicy(MAMLUpdaterMethods, TorchPolicyV2):
    """MAML with PPO inner loops for pipelines on RLlib's old API stack.

    Chosen by :class:`rllib_maml.MAML` when the config says
    ``config.api_stack(enable_rl_module_and_learner=False,
    enable_env_runner_and_connector_v2=False)``. The driver's policy (on the local
    RolloutWorker) holds theta and its Adam optimizer and runs the meta-update; the
    policies on the RolloutWorkers sample, loading each task's adapted weights
    through the inner-adaptation hook
    :func:`rllib_maml.old_stack.sampler.sample_task_on_rollout_worker`.

    The network is the new stack's :class:`~rllib_maml.MAMLTorchRLModule` (inside
    :class:`~rllib_maml.old_stack.model.MAMLTorchModel`), and the update is the
    same :class:`~rllib_maml.core.updater.MAMLMetaUpdater` the new stack's Learner
    uses: both stacks compute the same meta-gradient from the same data.

    Public methods (as on :class:`~rllib_maml.MAMLTorchLearner`): ``theta_weights()``,
    ``load_theta(weights)``, ``adapted_weights(rollouts)``, ``meta_update(rollouts)``.
    ``learn_on_batch`` is not used: MAML trains through ``meta_update``.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Dict[str, Any]) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"MAMLTorchPolicy needs a continuous Box action space, got {action_space}")
        if config.get("torch_num_threads") is not None:
            torch.set_num_threads(config["torch_num_threads"])
        super().__init__(observation_space, action_space, config, max_seq_len=config["model"]["max_seq_len"])
        self.maml = meta_updater_for(
            self.model.rl_module, self._apply_meta_gradient, MAMLSettings.from_config(self.config)
        )
        # Fixes the view requirements (a forward pass on a dummy batch), as every TorchPolicyV2 must.
        self._initialize_loss_from_dummy_batch()

    @override(TorchPolicyV2)
    def make_model_and_action_dist(self) -> Tuple[ModelV2, Type[ActionDistribution]]:
        num_outputs = TorchMaskedDiagGaussian.required_model_output_shape(self.action_space, self.config["model"])
        model = MAMLTorchModel(
            self.observation_space,
            self.action_space,
            num_outputs,
            self.config["model"],
            name="maml_model",
            rl_module_config=self.config.get("_model_config") or {},
        )
        return model, TorchMaskedDiagGaussian

    def _apply_meta_gradient(self, loss: torch.Tensor) -> None:
        """One Adam step on theta, with the Learner's gradient clipping settings."""
        optimizer = self._optimizers[0]
        optimizer.zero_grad()
        loss.backward()
        if self.config.get("grad_clip") is not None:
            grads = {n: p.grad for n, p in self.model.named_parameters() if p.grad is not None}
            clip_gradients(grads, grad_clip=self.config["grad_clip"], grad_clip_by=self.config["grad_clip_by"])
        optimizer.step()
        self.num_grad_updates += 1

    # --- API for the Algorithm ---------------------------------------------------
    @override(MAMLUpdaterMethods)
    def meta_optimizers(self) -> List[torch.optim.Optimizer]:
        return list(self._optimizers)

    def load_theta(self, weights: Dict[str, np.ndarray]) -> None:
        """Copies ``weights`` (from ``theta_weights`` or ``adapted_weights``) into the network, in place."""
        self.model.rl_module.set_state(weights)

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        """``maml_optimizer_steps`` meta-optimizer steps on rollouts labelled ``0..K`` per task."""
        self.model.train()
        return super().meta_update(rollouts)

    @override(TorchPolicyV2)
    def learn_on_batch(self, postprocessed_batch: SampleBatch) -> Dict[str, Any]:
        raise NotImplementedError(
            "MAMLTorchPolicy trains through meta_update(); Policy.learn_on_batch() is not used by MAML."
        )

    # --- checkpoint state ----------------------------------------------------------
    @override(TorchPolicyV2)
    def get_state(self) -> Dict[str, Any]:
        return self.maml.save_to(super().get_state())

    @override(TorchPolicyV2)
    def set_state(self, state: Dict[str, Any]) -> None:
        super().set_state(state)
        self.maml.restore_from(state)
