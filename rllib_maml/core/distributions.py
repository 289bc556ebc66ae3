"""The action distribution of MAML's policy: a diagonal Gaussian with masked dimensions."""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian


class MaskedDiagGaussian(TorchDiagGaussian):
    """A diagonal Gaussian whose masked-out dimensions do not exist.

    Its inputs are ``[mean, log_std, mask]`` (each ``[..., action_dim]``). Masked
    dimensions (``mask == 0``) contribute exactly 0 to ``logp``, ``entropy`` and
    ``kl``, hence also nothing to any gradient. Sampled values in masked
    dimensions are meaningless and ignored by the env.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, mask: Optional[torch.Tensor] = None):
        super().__init__(loc=loc, scale=scale)
        self.mask = torch.ones_like(loc) if mask is None else mask

    def _masked_sum(self, per_dim: torch.Tensor) -> torch.Tensor:
        # torch.where, not a product, so a non-finite masked entry cannot leak NaNs.
        return torch.where(self.mask > 0.5, per_dim, torch.zeros_like(per_dim)).sum(-1)

    def logp(self, value: torch.Tensor) -> torch.Tensor:
        return self._masked_sum(self._dist.log_prob(value))

    def entropy(self) -> torch.Tensor:
        return self._masked_sum(self._dist.entropy())

    def kl(self, other: "MaskedDiagGaussian") -> torch.Tensor:
        return self._masked_sum(torch.distributions.kl_divergence(self._dist, other._dist))

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs: Any) -> int:
        return int(np.prod(space.shape)) * 3

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs: Any) -> "MaskedDiagGaussian":
        loc, log_std, mask = logits.chunk(3, dim=-1)
        return cls(loc=loc, scale=log_std.exp(), mask=mask)
