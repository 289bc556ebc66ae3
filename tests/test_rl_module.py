"""The RLModule's forward pass: per-row task weights and the action scale."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ray.rllib.core.columns import Columns
from rllib_maml.algorithm.rl_module import MAMLTorchRLModule
from rllib_maml.core.distributions import MaskedDiagGaussian
from tests.helpers import tiny_module


def dist_inputs(module: MAMLTorchRLModule, obs: torch.Tensor) -> torch.Tensor:
    return module._forward({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]


def test_row_weights_give_each_row_its_own_policy() -> None:
    module = tiny_module()
    obs = torch.randn(5, 3, dtype=torch.float64)
    own = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    other = {k: v + 0.3 for k, v in own.items()}
    with_own = dist_inputs(module, obs)
    module.set_row_weights([own, other], [0, 1, 1, 0, 1])
    mixed = dist_inputs(module, obs)
    module.clear_row_weights()
    module.load_state_dict({k: torch.as_tensor(v) for k, v in other.items()})
    with_other = dist_inputs(module, obs)
    torch.testing.assert_close(mixed[[0, 3]], with_own[[0, 3]])
    torch.testing.assert_close(mixed[[1, 2, 4]], with_other[[1, 2, 4]])
    assert not torch.allclose(with_own, with_other)


def test_action_scale_divides_mean_and_std() -> None:
    def module(scale: float) -> MAMLTorchRLModule:
        torch.manual_seed(0)
        return MAMLTorchRLModule(
            observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            model_config={"fcnet_hiddens": [8], "action_scale": scale},
        )

    obs = torch.randn(4, 3)
    plain = MaskedDiagGaussian.from_logits(dist_inputs(module(1.0), obs))
    scaled = MaskedDiagGaussian.from_logits(dist_inputs(module(10.0), obs))
    torch.testing.assert_close(scaled.loc, plain.loc / 10.0)
    torch.testing.assert_close(scaled._dist.scale, plain._dist.scale / 10.0)
    # A change of units only: log-probabilities differ by the Jacobian, log(10) per dimension.
    actions = plain.sample()
    torch.testing.assert_close(scaled.logp(actions / 10.0), plain.logp(actions) + 2 * math.log(10.0))
