"""Bad input fails early, with a ValueError that names the culprit."""

from __future__ import annotations

import dataclasses

import pytest

from rllib_maml import MAMLConfig
from rllib_maml.core.settings import MAMLSettings

INVALID_VALUES = [
    ("inner_lr", 0.0),
    ("inner_lr", -0.1),
    ("inner_adaptation_steps", 0),
    ("inner_adaptation_steps", 1.5),
    ("maml_optimizer_steps", 0),
    ("meta_batch_size", 0),
    ("meta_batch_size", True),
    ("episodes_per_task", -3),
    ("first_order", "yes"),
    ("clip_param", 0.0),
    ("kl_coeff", -1.0),
    ("kl_target", 0.0),
    ("kl_early_stop", 0.0),
    ("kl_early_stop", "high"),
    ("vf_loss_coeff", -0.5),
    ("entropy_coeff", -0.01),
    ("lambda_", 1.5),
    ("lambda_", "high"),
    ("torch_num_threads", 0),
    ("baseline", "fitted"),
    ("inner_lr", float("inf")),
    ("clip_param", float("inf")),
    ("clip_param", 1.5),
    ("vf_loss_coeff", float("inf")),
    ("entropy_coeff", float("-inf")),
    ("kl_coeff", float("inf")),
    ("kl_target", float("inf")),
]


def base_config() -> MAMLConfig:
    return MAMLConfig().environment("rllib_maml/Navigation2D-v0")


@pytest.mark.parametrize("name,value", INVALID_VALUES)
def test_invalid_training_value_names_the_parameter(name: str, value: object) -> None:
    config = base_config().training(**{name: value})
    with pytest.raises(ValueError, match=rf"MAMLConfig\.{name}="):
        config.validate()


@pytest.mark.parametrize("name,value", [("lr", 0.0), ("lr", float("inf")), ("gamma", 1.5)])
def test_invalid_rllib_value_names_the_parameter(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"MAMLConfig\.{name}="):
        base_config().training(**{name: value}).validate()


def test_valid_config_passes() -> None:
    base_config().training(inner_adaptation_steps=2, first_order=True, lambda_=0.95).validate()


def test_env_without_task_interface_fails_at_build_time() -> None:
    config = MAMLConfig().environment("Pendulum-v1")
    with pytest.raises(ValueError, match=r"Pendulum-v1.*lacks sample_tasks, set_task, get_task"):
        config.build_algo()


def test_unknown_env_is_named() -> None:
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        MAMLConfig().environment("NoSuchEnv-v0").validate()


def test_more_learners_than_tasks_are_rejected_and_gpus_accepted() -> None:
    with pytest.raises(ValueError, match=r"MAMLConfig\.num_learners=4 .* meta_batch_size=3"):
        base_config().training(meta_batch_size=3).learners(num_learners=4).validate()
    base_config().learners(num_learners=2, num_gpus_per_learner=1).validate()


def test_every_update_setting_flows_from_the_config_into_the_math_unchanged() -> None:
    """Each field of MAMLSettings (what the inner step, the loss and the update read) takes
    MAMLConfig's default, and a value set through training() reaches the Learner's and
    the old-stack Policy's settings (whose config dict renames lambda_ to lambda)."""
    defaults = MAMLSettings()
    assert MAMLSettings.from_config(MAMLConfig()) == defaults
    changed = dict(
        inner_lr=0.05, clip_param=0.2, vf_loss_coeff=0.25, entropy_coeff=0.01, first_order=True, gamma=0.95,
        lambda_=0.9, kl_coeff=0.002, kl_target=0.02, kl_early_stop=0.05, maml_optimizer_steps=3, baseline="value_function", update_num_threads=1,
        meta_optimizer="trpo", max_kl=0.02, cg_iters=7, cg_damping=1e-4, line_search_steps=9,
        line_search_backtrack_ratio=0.5,
    )
    assert set(changed) == {f.name for f in dataclasses.fields(MAMLSettings)}  # a new setting is tested here too
    config = MAMLConfig().training(**changed)
    for settings in (MAMLSettings.from_config(config), MAMLSettings.from_config(config.to_dict())):
        for name, value in changed.items():
            assert getattr(settings, name) == value != getattr(defaults, name), name


def test_an_env_runner_class_that_cannot_sample_several_tasks_is_rejected() -> None:
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    with pytest.raises(ValueError, match=r"MAMLConfig\.env_runner_cls=.*MAMLEnvRunner"):
        base_config().env_runners(env_runner_cls=SingleAgentEnvRunner).validate()


def test_async_vector_envs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"MAMLConfig\.gym_env_vectorize_mode="):
        base_config().env_runners(gym_env_vectorize_mode="async").validate()


def test_the_new_stack_samples_with_maml_env_runner() -> None:
    from rllib_maml.algorithm.env_runner import MAMLEnvRunner

    config = base_config()
    config.validate()
    assert config.env_runner_cls is MAMLEnvRunner


@pytest.mark.parametrize("scale", [0.0, -1.0, float("inf"), "ten"])
def test_invalid_action_scale_is_named(scale: object) -> None:
    with pytest.raises(ValueError, match=r"model_config\['action_scale'\]="):
        base_config().rl_module(model_config={"action_scale": scale}).validate()


def test_an_env_whose_sample_tasks_returns_too_few_tasks_is_named(ray_session: None) -> None:
    from gymnasium.wrappers import TimeLimit
    from ray import tune

    from rllib_maml.envs.navigation2d import Navigation2DEnv

    class TooFewTasks(Navigation2DEnv):
        def sample_tasks(self, n_tasks: int):
            return super().sample_tasks(n_tasks)[:-1]

    tune.register_env("TooFewTasks", lambda config: TimeLimit(TooFewTasks(), 100))
    config = base_config().environment("TooFewTasks").env_runners(num_env_runners=0, num_envs_per_env_runner=2)
    with pytest.raises(ValueError, match=r"TooFewTasks.*sample_tasks\(2\) returned 1 tasks"):
        config.build_algo()


@pytest.mark.parametrize("key", ["group_input_layers", "group_log_std", "learn_inner_lr"])
@pytest.mark.parametrize("value", ["yes", 1])
def test_invalid_group_option_is_named(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"model_config\['{key}'\]="):
        base_config().rl_module(model_config={key: value}).validate()


@pytest.mark.parametrize("key", ["group_input_layers", "group_log_std"])
def test_group_option_without_groups_is_named(key: str) -> None:
    # base_config's env has no morphology groups, so there is nothing to give a per-group part to.
    with pytest.raises(ValueError, match=rf"{key}'\]=True needs groups"):
        base_config().rl_module(model_config={key: True}).validate()
