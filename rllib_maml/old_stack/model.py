"""Old-API-stack adapters: the ``ModelV2`` and action distribution of :class:`MAMLTorchPolicy`.

Neither defines a network or a distribution of its own. ``MAMLTorchModel`` holds a
:class:`~rllib_maml.algorithm.rl_module.MAMLTorchRLModule` (so both stacks run the same
layers, under the same parameter names) and ``TorchMaskedDiagGaussian`` wraps
:class:`~rllib_maml.algorithm.rl_module.MaskedDiagGaussian`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ray.rllib.core.columns import Columns
from ray.rllib.models.modelv2 import ModelV2
from ray.rllib.models.torch.torch_action_dist import TorchDistributionWrapper
from ray.rllib.models.torch.torch_modelv2 import TorchModelV2
from ray.rllib.utils.annotations import override

from rllib_maml.algorithm.rl_module import MAMLTorchRLModule
from rllib_maml.core.distributions import MaskedDiagGaussian


class MAMLTorchModel(TorchModelV2, nn.Module):
    """A ``TorchModelV2`` around a :class:`MAMLTorchRLModule` (attribute ``rl_module``).

    ``forward`` returns the distribution inputs ``[mean, log_std, mask]``;
    ``value_function`` the values of the last ``forward`` call, as ModelV2 requires.
    The module's ``model_config`` is the new stack's (``config.rl_module(model_config=...)``),
    so a switch of ``config.api_stack(...)`` builds the same network.
    """

    def __init__(
        self,
        obs_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        num_outputs: int,
        model_config: Dict[str, Any],
        name: str,
        rl_module_config: Optional[Dict[str, Any]] = None,
    ) -> None:
        TorchModelV2.__init__(self, obs_space, action_space, num_outputs, model_config, name)
        nn.Module.__init__(self)
        self.rl_module = MAMLTorchRLModule(
            observation_space=obs_space, action_space=action_space, model_config=dict(rl_module_config or {})
        )
        self._values: Optional[torch.Tensor] = None

    @override(TorchModelV2)
    def forward(
        self, input_dict: Dict[str, torch.Tensor], state: List[torch.Tensor], seq_lens: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        out = self.rl_module.forward_train({Columns.OBS: input_dict["obs_flat"]})
        self._values = out[Columns.VF_PREDS]
        return out[Columns.ACTION_DIST_INPUTS], state

    @override(TorchModelV2)
    def value_function(self) -> torch.Tensor:
        if self._values is None:
            raise RuntimeError("MAMLTorchModel.value_function() called before forward()")
        return self._values


class TorchMaskedDiagGaussian(TorchDistributionWrapper):
    """The old stack's face of :class:`MaskedDiagGaussian` (inputs ``[mean, log_std, mask]``)."""

    def __init__(self, inputs: torch.Tensor, model: ModelV2) -> None:
        super().__init__(inputs, model)
        self.dist = MaskedDiagGaussian.from_logits(self.inputs)

    @override(TorchDistributionWrapper)
    def deterministic_sample(self) -> torch.Tensor:
        self.last_sample = self.dist.to_deterministic().sample()
        return self.last_sample

    @override(TorchDistributionWrapper)
    def sample(self) -> torch.Tensor:
        self.last_sample = self.dist.sample()
        return self.last_sample

    @override(TorchDistributionWrapper)
    def logp(self, actions: torch.Tensor) -> torch.Tensor:
        return self.dist.logp(actions)

    @override(TorchDistributionWrapper)
    def entropy(self) -> torch.Tensor:
        return self.dist.entropy()

    @override(TorchDistributionWrapper)
    def kl(self, other: "TorchMaskedDiagGaussian") -> torch.Tensor:
        return self.dist.kl(other.dist)

    @override(TorchDistributionWrapper)
    @staticmethod
    def required_model_output_shape(action_space: gym.Space, model_config: Dict[str, Any]) -> int:
        return int(np.prod(action_space.shape)) * 3
