"""The checks behind ``MAMLConfig.validate()``: each raises ``ValueError`` naming the
first invalid parameter and its valid range, on the driver, before any worker starts."""

from __future__ import annotations

import math
from typing import Any, Callable


from rllib_maml.algorithm.env_factory import action_masks, make_task_env
from rllib_maml.algorithm.env_runner import MAMLEnvRunner
from rllib_maml.algorithm.rl_module import (
    ACTION_MASKS_KEY,
    group_input_layers,
    group_log_std,
    learn_inner_lr,
    log_action_scale,
)

#: Valid values of ``MAMLConfig.baseline``.
BASELINES = ("value_function", "linear")
#: Valid values of ``MAMLConfig.meta_optimizer``.
META_OPTIMIZERS = ("ppo", "trpo", "vpg")
#: MAML's integer settings that must be >= 1.
POSITIVE_INTS = (
    "inner_adaptation_steps", "maml_optimizer_steps", "meta_batch_size", "episodes_per_task", "evaluation_num_tasks",
    "cg_iters", "line_search_steps",
)


def _invalid(name: str, value: Any, valid_text: str) -> ValueError:
    return ValueError(f"MAMLConfig.{name}={value!r} is invalid: it must be {valid_text}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_number(config: Any, name: str, is_valid: Callable[[float], bool], valid_text: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not is_valid(value):
        raise _invalid(name, value, f"a finite {valid_text}")


def check_training_settings(config: Any) -> None:
    """MAML's own hyperparameters (``MAMLConfig.training`` and ``.evaluation``)."""
    for name in POSITIVE_INTS:
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            raise _invalid(name, value, "an integer >= 1")
    for name in ("lr", "inner_lr", "kl_target", "max_kl"):
        _check_number(config, name, lambda v: v > 0, "number > 0")
    _check_number(config, "cg_damping", lambda v: v >= 0, "number >= 0")
    _check_number(config, "line_search_backtrack_ratio", lambda v: 0 < v < 1, "number in (0, 1)")
    if config.meta_optimizer not in META_OPTIMIZERS:
        raise _invalid("meta_optimizer", config.meta_optimizer, f"one of {META_OPTIMIZERS}")
    _check_number(config, "clip_param", lambda v: 0 < v <= 1, "number in (0, 1]")
    for name in ("kl_coeff", "vf_loss_coeff", "entropy_coeff"):
        _check_number(config, name, lambda v: v >= 0, "number >= 0")
    for name in ("lambda_", "gamma"):
        _check_number(config, name, lambda v: 0 <= v <= 1, "number in [0, 1]")
    if config.kl_early_stop is not None:
        _check_number(config, "kl_early_stop", lambda v: v > 0, "number > 0 or None")
    for name in ("torch_num_threads", "update_num_threads"):
        threads = getattr(config, name)
        if threads is not None and (not _is_int(threads) or threads < 1):
            raise _invalid(name, threads, "an integer >= 1 or None")
    log_action_scale(config.model_config or {})  # fails here, on the driver, not inside a runner
    learn_inner_lr(config.model_config or {})
    steps = config.evaluation_adaptation_steps
    if steps is not None and (not _is_int(steps) or steps < 0):
        raise _invalid("evaluation_adaptation_steps", steps, "an integer >= 0 or None")
    if not _is_int(config.evaluation_task_seed):
        raise _invalid("evaluation_task_seed", config.evaluation_task_seed, "an integer")
    if config.baseline not in BASELINES:
        raise _invalid("baseline", config.baseline, f"one of {BASELINES}")
    if not isinstance(config.first_order, bool):
        raise _invalid("first_order", config.first_order, "True or False")


def check_rllib_settings(config: Any) -> None:
    """RLlib settings that MAML cannot honour."""
    if config.num_learners > config.meta_batch_size:
        raise ValueError(
            f"MAMLConfig.num_learners={config.num_learners} is invalid: each Learner updates on a share of the "
            f"meta-batch, so it must be <= meta_batch_size={config.meta_batch_size}."
        )
    if config.restart_failed_sub_environments:
        raise ValueError(
            "MAMLConfig.restart_failed_sub_environments=True is not supported: RLlib would "
            "recreate a failed sub-env without its task and its episodes would be mislabelled."
        )
    if not config.enable_rl_module_and_learner:
        _check_old_api_stack(config)
    if config.enable_env_runner_and_connector_v2:
        _check_env_runner_cls(config)


def _check_env_runner_cls(config: Any) -> None:
    """The new stack samples with :class:`rllib_maml.algorithm.env_runner.MAMLEnvRunner` (or a subclass)."""
    cls = config.env_runner_cls
    if cls is None and not config._is_frozen:  # RLlib's frozen flag: no private alternative in Ray 2.60
        config.env_runner_cls = MAMLEnvRunner
    elif cls is not None and not (isinstance(cls, type) and issubclass(cls, MAMLEnvRunner)):
        raise ValueError(
            f"MAMLConfig.env_runner_cls={cls!r} is not supported: MAML samples several "
            "tasks per runner through rllib_maml.algorithm.env_runner.MAMLEnvRunner; subclass it."
        )
    if str(config.gym_env_vectorize_mode).lower().split(".")[-1] != "sync":
        raise ValueError(
            f"MAMLConfig.gym_env_vectorize_mode={config.gym_env_vectorize_mode!r} is not supported: "
            "MAMLEnvRunner sets a task on each sub-env, which needs the 'sync' vector env."
        )


def _check_old_api_stack(config: Any) -> None:
    """Settings of the old stack that MAML cannot honour fail here, by name."""
    from ray.rllib.models.catalog import MODEL_DEFAULTS

    changed = sorted(k for k, v in config.model.items() if MODEL_DEFAULTS.get(k) != v)
    if changed:
        raise ValueError(
            f"MAMLConfig.model (ModelV2 settings {changed}) is not used by MAML: both API stacks "
            "build the same MAMLTorchRLModule; set its options with "
            "config.rl_module(model_config={...}) instead."
        )
    if config.observation_filter != "NoFilter":
        raise ValueError(
            f"MAMLConfig.observation_filter={config.observation_filter!r} is not supported on the "
            "old API stack: MAML's samples would bypass the filter; use 'NoFilter'."
        )


def check_env_and_include_action_masks(config: Any) -> None:
    """Fails early for an env without the task interface, and hands an env's per-group
    action masks to the RLModule (``model_config["action_masks"]``)."""
    env = make_task_env(config)
    try:
        masks = action_masks(env)
        if masks is not None and ACTION_MASKS_KEY not in config.model_config and not config._is_frozen:
            config._model_config = {**config.model_config, ACTION_MASKS_KEY: masks}
    finally:
        env.close()
    # On the driver, naming the key, not inside a runner.
    group_input_layers(config.model_config or {})
    group_log_std(config.model_config or {})
