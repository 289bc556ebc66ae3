"""The policy/value network MAML adapts: an MLP Gaussian policy with an action mask."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override

from rllib_maml.core.distributions import MaskedDiagGaussian
from rllib_maml.core.settings import MAMLSettings
from rllib_maml.core.updater import MAMLMetaUpdater

#: model_config key: optional ``[num_groups, action_dim]`` 0/1 table. When set, the
#: last ``num_groups`` observation entries are a one-hot group (morphology) id and
#: row ``g`` of the table is the valid-action mask of group ``g``.
ACTION_MASKS_KEY = "action_masks"

#: model_config key: bool (default False). True gives each group (morphology) its own
#: first layer in the policy and value networks; the hidden layers after it stay shared.
#: Needs :data:`ACTION_MASKS_KEY` (the groups).
GROUP_INPUT_LAYERS_KEY = "group_input_layers"

#: model_config key: bool (default False). True gives each group (morphology) its own
#: log-std vector (``log_std`` is ``[num_groups, action_dim]``), so one body's exploration
#: noise is learned and adapted apart from another's. Needs :data:`ACTION_MASKS_KEY`.
GROUP_LOG_STD_KEY = "group_log_std"

#: model_config key: bool (default False). True makes the inner step size a parameter that
#: the meta-update learns (as Meta-SGD, Li et al. 2017, with one number per group instead of
#: one per weight): :data:`INNER_LR_PARAM` holds each group's (or, without groups, the one)
#: log-factor on ``inner_lr``, starting at 0 (factor 1).
LEARN_INNER_LR_KEY = "learn_inner_lr"
#: The parameter behind :data:`LEARN_INNER_LR_KEY`: ``[num_groups]``, or ``[1]`` without groups.
#: The forward pass never reads it, so inner steps leave it alone; only the meta-update moves it.
INNER_LR_PARAM = "inner_lr_log_scale"

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def log_action_scale(model_config: Mapping[str, Any]) -> float:
    """``log(model_config["action_scale"])`` (default scale 1); ``ValueError`` naming it unless finite and > 0."""
    scale = model_config.get("action_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
        raise ValueError(f"model_config['action_scale']={scale!r} is invalid: it must be a finite number > 0")
    return float(np.log(scale))


def _bool_flag(model_config: Mapping[str, Any], key: str) -> bool:
    """``model_config[key]`` (default False); ``ValueError`` naming it unless a bool."""
    value = model_config.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"model_config['{key}']={value!r} is invalid: it must be true or false")
    return value


def _group_flag(model_config: Mapping[str, Any], key: str, what: str) -> bool:
    value = _bool_flag(model_config, key)
    if value and model_config.get(ACTION_MASKS_KEY) is None:
        raise ValueError(
            f"model_config['{key}']=True needs groups, and this env has none: {what} per group only "
            "exists for an env with per-group action masks (e.g. MultiMorphologyLocomotion)"
        )
    return value


def group_input_layers(model_config: Mapping[str, Any]) -> bool:
    """``model_config["group_input_layers"]`` (default False); ``ValueError`` naming it unless a
    bool, or when it is True without ``action_masks`` (no groups to give layers to)."""
    return _group_flag(model_config, GROUP_INPUT_LAYERS_KEY, "a first layer")


def group_log_std(model_config: Mapping[str, Any]) -> bool:
    """``model_config["group_log_std"]`` (default False); ``ValueError`` naming it unless a
    bool, or when it is True without ``action_masks`` (no groups to give a log-std to)."""
    return _group_flag(model_config, GROUP_LOG_STD_KEY, "a log-std")


def learn_inner_lr(model_config: Mapping[str, Any]) -> bool:
    """``model_config["learn_inner_lr"]`` (default False); ``ValueError`` naming it unless a bool."""
    return _bool_flag(model_config, LEARN_INNER_LR_KEY)


def group_expanded(obs: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``[..., G * D + G]``: the body observation ``obs[..., :D]`` placed in the block of its
    one-hot group ``obs[..., D:]``, the other blocks zero, then the one-hot itself.

    A plain ``nn.Linear`` on this is one first layer per group (its block of columns) with a
    per-group bias (the one-hot's columns), so a group's gradient never reaches another
    group's first-layer weights. Written with broadcasting only, so it runs unchanged under
    ``torch.func.vmap`` and in the per-row (bmm) policy of :meth:`MAMLTorchRLModule.set_row_weights`.
    """
    body, one_hot = obs[..., :-num_groups], obs[..., -num_groups:]
    return torch.cat([(one_hot.unsqueeze(-1) * body.unsqueeze(-2)).flatten(-2), one_hot], -1)


def _mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    layers: List[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _init_like_shared(layer: nn.Linear, shared_fan_in: int) -> None:
    """Re-draws a per-group first layer as ``nn.Linear``'s default draws a shared one.

    ``nn.Linear`` draws weights and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The
    per-group layer's fan-in counts every group's block (G * D + G), so by default each
    group would start with weights up to sqrt(G) times smaller than the shared layer's
    (2.1 times for the five bodies), and the option would change the initial scale as
    well as the sharing. With the shared layer's fan-in (D + G) each group's block,
    one-hot column and bias start as the shared layer would.
    """
    bound = 1.0 / math.sqrt(shared_fan_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        layer.bias.uniform_(-bound, bound)


class MAMLTorchRLModule(TorchRLModule, ValueFunctionAPI):
    """Separate policy and value MLPs with a state-independent log-std (as in MAML/ProMP).

    model_config keys:
        ``fcnet_hiddens`` (list of int, default ``[64, 64]``): hidden layer sizes of
        both networks. ``fcnet_activation`` (``"tanh"``, ``"relu"`` or ``"elu"``,
        default ``"tanh"``). ``initial_log_std`` (float, default 0.0).
        ``action_scale`` (float > 0, default 1.0): the env action is the policy's
        action divided by this, as ProMP's and pytorch-maml-rl's
        ``normalization_scale`` (10 there): the network's mean and its std are both
        divided by it, so a policy-space std of 1 is ``1 / action_scale`` in the
        env's units. Part of the module, so it acts the same on both API stacks,
        in ``evaluate`` and in ``compare``.
        ``action_masks`` (optional ``[num_groups, action_dim]`` 0/1 list): see
        :data:`ACTION_MASKS_KEY`.
        ``group_input_layers`` (bool, default False): one first layer per group, see
        :data:`GROUP_INPUT_LAYERS_KEY` and :func:`group_expanded`.
        ``group_log_std`` (bool, default False): one log-std vector per group, see
        :data:`GROUP_LOG_STD_KEY`.
        ``learn_inner_lr`` (bool, default False): a learned inner step size per group,
        see :data:`LEARN_INNER_LR_KEY` and :meth:`inner_lr_scale`.

    The forward pass returns ``action_dist_inputs = [mean, log_std, mask]``, read by
    :class:`MaskedDiagGaussian`, so the mask reaches sampling, log-probabilities,
    entropy and KL alike, on EnvRunners and on the Learner.
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(
                f"MAMLTorchRLModule needs a continuous Box action space, got {self.action_space}"
            )
        cfg = dict(self.model_config or {})
        hiddens = list(cfg.get("fcnet_hiddens") or [64, 64])
        activation = cfg.get("fcnet_activation") or "tanh"
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"model_config['fcnet_activation']={activation!r}; use one of {sorted(_ACTIVATIONS)}"
            )
        obs_dim = int(np.prod(self.observation_space.shape))
        self.action_dim = int(np.prod(self.action_space.shape))
        masks = cfg.get(ACTION_MASKS_KEY)
        table = torch.as_tensor(np.asarray(masks, dtype=np.float32)) if masks is not None else None
        if table is not None and (table.ndim != 2 or table.shape[1] != self.action_dim):
            raise ValueError(
                f"model_config['{ACTION_MASKS_KEY}'] must have shape [num_groups, "
                f"{self.action_dim}], got {tuple(table.shape)}"
            )
        # 0: one shared first layer; G: one per group (the input grows from D + G to G * D + G).
        self.num_input_groups = int(table.shape[0]) if group_input_layers(cfg) else 0
        G = self.num_input_groups
        in_dim = G * (obs_dim - G) + G if G else obs_dim
        self.pi = _mlp([in_dim, *hiddens, self.action_dim], activation)
        self.vf = _mlp([in_dim, *hiddens, 1], activation)
        if G:
            for net in (self.pi, self.vf):
                _init_like_shared(net[0], obs_dim)
        # [A] shared by all groups, or [G, A]: row g is group g's (picked by row_log_std).
        log_std_shape = (int(table.shape[0]), self.action_dim) if group_log_std(cfg) else (self.action_dim,)
        self.log_std = nn.Parameter(torch.full(log_std_shape, float(cfg.get("initial_log_std", 0.0))))
        self.log_action_scale = log_action_scale(cfg)
        if learn_inner_lr(cfg):
            groups = int(table.shape[0]) if table is not None else 1
            setattr(self, INNER_LR_PARAM, nn.Parameter(torch.zeros(groups)))
        # A buffer, not a parameter: the mask is data, never adapted or trained.
        self.register_buffer("action_mask_table", table, persistent=False)
        self.action_dist_cls = MaskedDiagGaussian

    def action_mask(self, obs: torch.Tensor) -> torch.Tensor:
        """The valid-action mask ``[B, action_dim]`` for observations ``[B, obs_dim]``."""
        if self.action_mask_table is None:
            return torch.ones(obs.shape[:-1] + (self.action_dim,), dtype=obs.dtype, device=obs.device)
        group_one_hot = obs[..., -self.action_mask_table.shape[0] :]
        return group_one_hot @ self.action_mask_table

    def row_log_std(self, log_std: torch.Tensor, obs: torch.Tensor, per_row: bool = False) -> torch.Tensor:
        """``[B, action_dim]``: each row's log-std. ``log_std`` is ``[A]`` (shared) or ``[G, A]``
        (one per group, picked by the row's one-hot); ``per_row=True``: ``[B, A]`` or
        ``[B, G, A]``, one of those per row (the per-row policy)."""
        if self.log_std.ndim == 1:
            return log_std if per_row else log_std.expand(obs.shape[:-1] + (self.action_dim,))
        one_hot = obs[..., -self.log_std.shape[0] :]
        # A product, not an index: it runs unchanged under torch.func.vmap and per row.
        return (one_hot.unsqueeze(-1) * log_std).sum(-2) if per_row else one_hot @ log_std

    @property
    def learns_inner_lr(self) -> bool:
        """Whether the module holds :data:`INNER_LR_PARAM` (``learn_inner_lr``)."""
        return hasattr(self, INNER_LR_PARAM)

    def inner_lr_scale(self, params: Mapping[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
        """``[M]``: each task's factor on ``inner_lr``, ``exp`` of its group's learned log-factor.

        ``params[INNER_LR_PARAM]`` is stacked over tasks (``[M, G]`` or ``[M, 1]``) and
        ``obs`` is ``[M, N, obs_dim]``; a task's group is the one-hot of its first row
        (all of a task's rows are one body). A differentiable function of ``params``.
        """
        log_scale = params[INNER_LR_PARAM]
        if log_scale.shape[-1] == 1:
            return log_scale[:, 0].exp()
        one_hot = obs[:, 0, -log_scale.shape[-1] :].to(log_scale.dtype)
        return (one_hot * log_scale).sum(-1).exp()

    def network_input(self, obs: torch.Tensor) -> torch.Tensor:
        """What the policy and value MLPs read: ``obs``, or :func:`group_expanded` of it."""
        return group_expanded(obs, self.num_input_groups) if self.num_input_groups else obs

    def set_row_weights(self, task_weights: Sequence[Mapping[str, np.ndarray]], row_task: Sequence[int]) -> None:
        """Makes batch row ``r`` act with the policy weights ``task_weights[row_task[r]]``.

        Used on an EnvRunner that samples several tasks at once (one task per vector
        sub-env, row ``r`` = sub-env ``r``): each row gets its own task's (adapted)
        policy, and all rows still take one batched forward pass. Only the policy
        (``pi.*``, ``log_std``) is read; the value network does not act.
        """
        index = torch.as_tensor(np.asarray(row_task, dtype=np.int64))
        dtype = self.log_std.dtype

        def stacked(name: str) -> torch.Tensor:
            return torch.as_tensor(np.stack([np.asarray(w[name]) for w in task_weights]), dtype=dtype)[index]

        layers = []
        for i, layer in enumerate(self.pi):
            if isinstance(layer, nn.Linear):
                # [R, in, out] and [R, 1, out], for one bmm per layer over all rows.
                layers.append((stacked(f"pi.{i}.weight").transpose(1, 2).contiguous(), stacked(f"pi.{i}.bias")[:, None]))
            else:
                layers.append(layer)
        self._row_policy: Optional[Tuple[List[Any], torch.Tensor]] = (layers, stacked("log_std"))

    def clear_row_weights(self) -> None:
        """Back to one policy (the module's own parameters) for every row."""
        self._row_policy = None

    def _row_policy_forward(self, obs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        layers, log_std = self._row_policy
        if obs.shape[0] != log_std.shape[0]:
            raise ValueError(f"per-row weights are set for {log_std.shape[0]} rows, got a batch of {obs.shape[0]}")
        h = self.network_input(obs)[:, None]
        for layer in layers:
            h = torch.baddbmm(layer[1], h, layer[0]) if isinstance(layer, tuple) else layer(h)
        return h[:, 0], self.row_log_std(log_std, obs, per_row=True)

    @override(TorchRLModule)
    def _forward(self, batch: Dict[str, Any], **kwargs: Any) -> Dict[str, Any]:
        obs = batch[Columns.OBS].to(self.log_std.dtype)
        if getattr(self, "_row_policy", None) is not None:
            mean, log_std = self._row_policy_forward(obs)
        else:
            mean = self.pi(self.network_input(obs))
            log_std = self.row_log_std(self.log_std, obs)
        if self.log_action_scale:
            # Divide the action by action_scale: the mean by it, the std too (a log-shift).
            mean = mean * float(np.exp(-self.log_action_scale))
            log_std = log_std - self.log_action_scale
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, log_std, self.action_mask(obs)], -1)}

    @override(TorchRLModule)
    def _forward_train(self, batch: Dict[str, Any], *, maml_values: bool = True, **kwargs: Any) -> Dict[str, Any]:
        # maml_values=False: the policy alone (MAML with the linear baseline never runs the value net).
        out = self._forward(batch)
        if maml_values:
            out[Columns.VF_PREDS] = self.compute_values(batch)
        return out

    @override(ValueFunctionAPI)
    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None) -> torch.Tensor:
        return self.vf(self.network_input(batch[Columns.OBS].to(self.log_std.dtype))).squeeze(-1)


def functional_forward(
    module: MAMLTorchRLModule, params: Dict[str, torch.Tensor], obs: torch.Tensor
) -> Tuple[MaskedDiagGaussian, torch.Tensor]:
    """Runs ``module`` with ``params`` substituted for its parameters (``torch.func``).

    Returns the action distribution and the values ``[B]`` for ``obs`` ``[B, obs_dim]``;
    both stay differentiable functions of ``params``.
    """
    out = torch.func.functional_call(module, params, ({Columns.OBS: obs},))
    return MaskedDiagGaussian.from_logits(out[Columns.ACTION_DIST_INPUTS]), out[Columns.VF_PREDS]


def batched_functional_forward(
    module: MAMLTorchRLModule, params: Dict[str, torch.Tensor], obs: torch.Tensor, with_values: bool = True
) -> Tuple[MaskedDiagGaussian, Optional[torch.Tensor]]:
    """:func:`functional_forward` for ``M`` parameter sets at once (``torch.func.vmap``).

    ``params`` maps each name to ``[M, *shape]`` and ``obs`` is ``[M, N, obs_dim]``; row
    ``i`` of the output (distribution over ``[M, N]``, values ``[M, N]``) is ``params[i]``
    applied to ``obs[i]``, one batched matmul per layer, differentiable in ``params``.
    ``with_values=False`` skips the value network and returns ``None`` for the values.
    """

    def one(task_params: Dict[str, torch.Tensor], task_obs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = torch.func.functional_call(module, task_params, ({Columns.OBS: task_obs},), {"maml_values": with_values})
        return (out[Columns.ACTION_DIST_INPUTS], out[Columns.VF_PREDS]) if with_values else (out[Columns.ACTION_DIST_INPUTS],)

    outputs = torch.func.vmap(one)(params, obs)
    return MaskedDiagGaussian.from_logits(outputs[0]), outputs[1] if with_values else None


def meta_updater_for(
    module: MAMLTorchRLModule,
    apply_meta_gradient: Callable[[torch.Tensor], None],
    settings: MAMLSettings,
    average_stats: Optional[Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]] = None,
) -> MAMLMetaUpdater:
    """The :class:`~rllib_maml.core.updater.MAMLMetaUpdater` of ``module``'s own parameters
    (the network of both API stacks); the arguments are the updater's."""
    return MAMLMetaUpdater(
        forward=functools.partial(functional_forward, module),
        batched_forward=functools.partial(batched_functional_forward, module),
        theta=lambda: dict(module.named_parameters()),
        apply_meta_gradient=apply_meta_gradient,
        settings=settings,
        average_stats=average_stats,
        lr_scale=module.inner_lr_scale if module.learns_inner_lr else None,
    )
