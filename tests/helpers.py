"""Small builders shared by the tests: a tiny float64 module and fixed task batches."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, List

import gymnasium as gym
import numpy as np
import torch

from rllib_maml.core.maml_math import ForwardFn, Params
from rllib_maml.core.settings import MAMLSettings
from rllib_maml.algorithm.rl_module import MAMLTorchRLModule, functional_forward
from rllib_maml.core.data import TaskBatch, TaskRollout

if TYPE_CHECKING:
    from rllib_maml import MAMLTorchPolicy

OBS_DIM, ACT_DIM = 3, 2


def tiny_module(
    seed: int = 0, action_masks: list | None = None, obs_dim: int = OBS_DIM, **options: object
) -> MAMLTorchRLModule:
    """``options``: further model_config keys (e.g. ``learn_inner_lr=True``)."""
    torch.manual_seed(seed)
    model_config = {"fcnet_hiddens": [5], **options}
    if action_masks is not None:
        model_config["action_masks"] = action_masks
    module = MAMLTorchRLModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        model_config=model_config,
    )
    return module.double()


def tiny_policy(seed: int = 0, **training: object) -> MAMLTorchPolicy:
    """A float64 old-API-stack ``MAMLTorchPolicy`` with the network of :func:`tiny_module`."""
    from rllib_maml import MAMLConfig, MAMLTorchPolicy  # noqa: F811  (the runtime import)

    config = (
        MAMLConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .rl_module(model_config={"fcnet_hiddens": [5]})
        .training(**training)
        .to_dict()
    )
    torch.manual_seed(seed)
    policy = MAMLTorchPolicy(
        gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        config,
    )
    policy.model.double()
    return policy


def forward_of(module: MAMLTorchRLModule) -> ForwardFn:
    return functools.partial(functional_forward, module)


def params_of(module: MAMLTorchRLModule) -> Params:
    return {n: p.detach().clone().requires_grad_(True) for n, p in module.named_parameters()}


def random_batch(
    module: MAMLTorchRLModule, *, task_index: int, step: int, n: int = 16, seed: int = 0, group: int | None = None
) -> TaskBatch:
    """A batch sampled from ``module``'s own policy, with fixed random advantages; with
    ``group``, every observation ends in that group's one-hot (of the module's groups)."""
    gen = torch.Generator().manual_seed(1000 * task_index + 10 * step + seed)
    obs = torch.randn(n, OBS_DIM, generator=gen, dtype=torch.float64)
    if group is not None:
        num_groups = module.action_mask_table.shape[0]
        obs[:, -num_groups:] = torch.nn.functional.one_hot(torch.tensor(group), num_groups).to(obs.dtype)
    with torch.no_grad():
        dist, _ = forward_of(module)(dict(module.named_parameters()), obs)
        actions = dist.loc + dist._dist.scale * torch.randn(dist.loc.shape, generator=gen, dtype=torch.float64)
        logp = dist.logp(actions)
        inputs = torch.cat([dist.loc, dist._dist.scale.log(), dist.mask], -1)
    return TaskBatch(
        task_index=task_index,
        step=step,
        obs=obs,
        actions=actions,
        logp_old=logp,
        dist_inputs_old=inputs,
        advantages=torch.randn(n, generator=gen, dtype=torch.float64),
        value_targets=torch.randn(n, generator=gen, dtype=torch.float64),
    )


def task_batches(module: MAMLTorchRLModule, num_tasks: int = 2, num_steps: int = 1) -> List[List[TaskBatch]]:
    return [[random_batch(module, task_index=i, step=k) for k in range(num_steps + 1)] for i in range(num_tasks)]


def coefficients(**overrides: float) -> MAMLSettings:
    values = dict(inner_lr=0.3, clip_param=0.2, vf_loss_coeff=0.5, entropy_coeff=0.01, kl_coeff=0.0, first_order=False)
    values.update(overrides)
    return MAMLSettings(**values)


def one_episode_rollout(step: int, reward: float = 1.0, task_index: int = 0) -> TaskRollout:
    """A 4-step episode of task ``task_index`` at adaptation ``step`` (``OBS_DIM`` / ``ACT_DIM``),
    'sampled' by a fixed policy (mean 0, log-std 0), as the Learner receives it."""
    rng = np.random.default_rng(step)
    return TaskRollout.from_episode_columns(
        task_index=task_index, step=step, task=None, group=None,
        obs=[rng.normal(size=(5, OBS_DIM))], actions=[rng.normal(size=(4, ACT_DIM))], logp=[np.full(4, -2.0)],
        dist_inputs=[np.hstack([np.zeros((4, 2 * ACT_DIM)), np.ones((4, ACT_DIM))])], rewards=[np.full(4, reward)],
        terminated=[False],
    )
