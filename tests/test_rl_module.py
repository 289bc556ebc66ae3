"""The RLModule's forward pass: per-row task weights and the action scale."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ray.rllib.core.columns import Columns
from rllib_maml.algorithm.rl_module import INNER_LR_PARAM, MAMLTorchRLModule, batched_functional_forward
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


def grouped_module(group_layers: bool, group_log_std: bool = False) -> MAMLTorchRLModule:
    """2 groups over a 3-dim body observation (obs = 3 body entries + a 2-entry one-hot)."""
    torch.manual_seed(0)
    return MAMLTorchRLModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (5,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        model_config={
            "fcnet_hiddens": [8],
            "action_masks": [[1, 1], [1, 0]],
            "group_input_layers": group_layers,
            "group_log_std": group_log_std,
        },
    )


def group_obs(group: int, n: int = 6) -> torch.Tensor:
    obs = torch.zeros(n, 5)
    obs[:, :3] = torch.randn(n, 3)
    obs[:, 3 + group] = 1.0
    return obs


def test_group_input_layers_keep_each_groups_gradient_to_its_own_first_layer() -> None:
    shared, grouped = grouped_module(False), grouped_module(True)
    assert grouped.pi[0].in_features == 2 * 3 + 2 and shared.pi[0].in_features == 5
    obs = group_obs(0)
    for module in (shared, grouped):
        module.zero_grad()
        out = module._forward_train({Columns.OBS: obs})
        (out[Columns.ACTION_DIST_INPUTS].sum() + out[Columns.VF_PREDS].sum()).backward()
    for net in ("pi", "vf"):
        first = getattr(grouped, net)[0].weight.grad
        # Group 0's rows reach its block (columns 0-2) and its bias column (6), nothing of group 1's.
        assert first[:, 3:6].abs().sum() == 0 and first[:, 7].abs().sum() == 0
        assert first[:, :3].abs().sum() > 0 and first[:, 6].abs().sum() > 0
    # Without the option the one first layer is shared, so the same batch reaches every body column.
    assert shared.pi[0].weight.grad[:, :3].abs().sum() > 0


def test_group_input_layers_start_at_the_shared_layers_scale() -> None:
    """Only the sharing changes: each group's first-layer weights are drawn as the shared
    layer's are, U(-1/sqrt(D + G), 1/sqrt(D + G)), not at the wider layer's smaller scale."""
    module = MAMLTorchRLModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (27 + 5,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (8,), np.float32),
        model_config={"fcnet_hiddens": [64, 64], "action_masks": np.ones((5, 8)).tolist(), "group_input_layers": True},
    )
    bound = 1.0 / math.sqrt(27 + 5)
    for net in (module.pi, module.vf):
        weight, bias = net[0].weight.detach(), net[0].bias.detach()
        assert weight.shape[1] == 5 * 27 + 5
        assert weight.abs().max() <= bound and bias.abs().max() <= bound
        # 64 x 140 draws: the largest lies within 1% of the bound (nn.Linear's default: 1/sqrt(140)).
        assert weight.abs().max() > 0.99 * bound
        # Every group's block, not only the first, has the shared layer's spread.
        for g in range(5):
            block = weight[:, g * 27 : (g + 1) * 27]
            assert abs(block.std().item() - bound / math.sqrt(3.0)) < 0.05 * bound


def test_group_input_layers_act_the_same_per_row_and_keep_the_mask() -> None:
    module = grouped_module(True)
    obs = torch.cat([group_obs(0, 3), group_obs(1, 3)])
    whole = dist_inputs(module, obs)
    own = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    module.set_row_weights([own], [0] * 6)
    torch.testing.assert_close(dist_inputs(module, obs), whole)
    module.clear_row_weights()
    dist = MaskedDiagGaussian.from_logits(whole)
    actions = dist.sample()
    moved = actions.clone()
    moved[:, 1] += 5.0
    # Group 1's second action dimension is masked: moving it leaves its log-probability exactly as is.
    assert torch.equal(dist.logp(moved)[3:], dist.logp(actions)[3:])
    assert not torch.equal(dist.logp(moved)[:3], dist.logp(actions)[:3])


def test_group_log_std_gives_each_group_its_own_std_and_gradient() -> None:
    module = grouped_module(False, group_log_std=True)
    assert module.log_std.shape == (2, 2)
    with torch.no_grad():
        module.log_std.copy_(torch.tensor([[-1.0, -2.0], [0.5, 0.25]]))
    obs = torch.cat([group_obs(0, 3), group_obs(1, 3)])
    _, log_std, _ = dist_inputs(module, obs).chunk(3, dim=-1)
    torch.testing.assert_close(log_std[:3], torch.tensor([[-1.0, -2.0]]).expand(3, 2))
    torch.testing.assert_close(log_std[3:], torch.tensor([[0.5, 0.25]]).expand(3, 2))
    # Group 1's log-probability reaches only its own row, and not its masked second entry.
    dist = MaskedDiagGaussian.from_logits(dist_inputs(module, obs))
    dist.logp(dist.sample())[3:].sum().backward()
    grad = module.log_std.grad
    assert grad[0].abs().sum() == 0 and grad[1, 1] == 0 and grad[1, 0] != 0


def test_group_log_std_acts_the_same_per_row_and_under_vmap() -> None:
    module = grouped_module(True, group_log_std=True)
    obs = torch.cat([group_obs(0, 3), group_obs(1, 3)])
    own = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    other = {k: v - 0.4 for k, v in own.items()}
    with_own = dist_inputs(module, obs)
    module.set_row_weights([own, other], [0, 1, 0, 1, 1, 0])
    mixed = dist_inputs(module, obs)
    module.clear_row_weights()
    module.load_state_dict({k: torch.as_tensor(v) for k, v in other.items()})
    with_other = dist_inputs(module, obs)
    torch.testing.assert_close(mixed[[0, 2, 5]], with_own[[0, 2, 5]])
    torch.testing.assert_close(mixed[[1, 3, 4]], with_other[[1, 3, 4]])
    # The learner's batched forward (torch.func.vmap over parameter sets) picks the same rows.
    params = {k: torch.stack([torch.as_tensor(own[k]), torch.as_tensor(other[k])]) for k in own}
    batched, _ = batched_functional_forward(module, params, obs.expand(2, 6, 5), with_values=False)
    torch.testing.assert_close(batched._dist.scale[0], MaskedDiagGaussian.from_logits(with_own)._dist.scale)
    torch.testing.assert_close(batched._dist.scale[1], MaskedDiagGaussian.from_logits(with_other)._dist.scale)


def test_learn_inner_lr_adds_a_step_size_per_group_that_acting_never_reads() -> None:
    grouped = tiny_module(action_masks=[[1, 1], [1, 0]], learn_inner_lr=True)
    assert getattr(grouped, INNER_LR_PARAM).shape == (2,) and grouped.learns_inner_lr
    assert getattr(tiny_module(learn_inner_lr=True), INNER_LR_PARAM).shape == (1,)
    assert not tiny_module().learns_inner_lr
    obs = torch.randn(4, 3, dtype=torch.float64)
    obs[:, 1:] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    before = dist_inputs(grouped, obs)
    with torch.no_grad():
        getattr(grouped, INNER_LR_PARAM).copy_(torch.tensor([math.log(2.0), math.log(0.5)]))
    torch.testing.assert_close(dist_inputs(grouped, obs), before)
    # Task i (its rows stacked as obs[i]) steps with its own group's factor.
    log_scale = getattr(grouped, INNER_LR_PARAM).detach().expand(4, 2)
    scale = grouped.inner_lr_scale({INNER_LR_PARAM: log_scale}, obs[:, None].expand(4, 3, 3))
    torch.testing.assert_close(scale, torch.tensor([2.0, 0.5, 0.5, 2.0], dtype=torch.float64))
