"""Building and training MAML end to end on the cheap envs, local and with a remote runner,
on both RLlib API stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rllib_maml import MAML, MAMLConfig, MAMLTorchPolicy

CHEAP_ENVS = ["rllib_maml/Navigation2D-v0", "rllib_maml/PendulumMass-v0"]
#: ``config.api_stack`` switch per test id; True is the new stack.
STACKS = pytest.mark.parametrize("new_api_stack", [True, False], ids=["new_api_stack", "old_api_stack"])


def tiny_config(
    env_id: str = "rllib_maml/Navigation2D-v0", num_env_runners: int = 0, new_api_stack: bool = True, **training
) -> MAMLConfig:
    settings = dict(meta_batch_size=3, episodes_per_task=2, maml_optimizer_steps=2)
    settings.update(training)
    return (
        MAMLConfig()
        .api_stack(enable_rl_module_and_learner=new_api_stack, enable_env_runner_and_connector_v2=new_api_stack)
        .environment(env_id)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=2)
        .training(**settings)
        .debugging(seed=0)
    )


def theta(algo: MAML) -> dict:
    return algo.theta_holder.theta_weights()


def runner_weights(algo: MAML) -> list:
    """The weights every sampling runner holds (RLModule on the new stack, policy on the old)."""
    if algo.config.enable_env_runner_and_connector_v2:
        def weights(runner):
            return {k: np.asarray(v) for k, v in runner.module.get_state().items()}
    else:
        def weights(worker):
            return worker.get_policy().theta_weights()
    return algo.env_runner_group.foreach_env_runner(weights, local_env_runner=algo.config.num_env_runners == 0)


def meta_loss_of(result: dict) -> float:
    if "learners" in result:
        return result["learners"]["meta_loss"]
    return result["info"]["learner"]["default_policy"]["learner_stats"]["meta_loss"]  # old stack


@STACKS
@pytest.mark.parametrize("num_env_runners", [0, 1])
@pytest.mark.parametrize("env_id", CHEAP_ENVS)
def test_build_and_train_twice(ray_session: None, env_id: str, num_env_runners: int, new_api_stack: bool) -> None:
    algo = tiny_config(env_id, num_env_runners, new_api_stack).build_algo()
    try:
        if not new_api_stack:
            assert isinstance(algo.get_policy(), MAMLTorchPolicy) and algo.learner_group is None
        before = theta(algo)
        steps = []
        for _ in range(2):
            result = algo.train()
            maml = result["maml"]
            assert maml["adaptation_delta"] == pytest.approx(
                maml["episode_return_mean_adapt_1"] - maml["episode_return_mean_adapt_0"]
            )
            assert result["env_runners"]["episode_return_mean"] == pytest.approx(maml["episode_return_mean_adapt_0"])
            assert np.isfinite(meta_loss_of(result))
            steps.append(result["env_runners"]["num_env_steps_sampled_lifetime"])
        horizon = 100 if "Navigation" in env_id else 200
        # 3 tasks x 2 steps (pre, post) x at least 2 complete episodes each, per iteration.
        assert steps[0] >= 3 * 2 * 2 * horizon and steps[1] == pytest.approx(2 * steps[0], rel=0.5)
        after = theta(algo)
        assert any(not np.allclose(before[k], after[k]) for k in before)
        # Runners sampled with adapted weights, and hold theta again after the sync.
        for state in runner_weights(algo):
            for name, value in after.items():
                np.testing.assert_allclose(state[name], value, rtol=1e-6)
    finally:
        algo.stop()


def test_two_inner_steps_report_the_whole_curve(ray_session: None) -> None:
    algo = tiny_config(inner_adaptation_steps=2, first_order=True).build_algo()
    try:
        maml = algo.train()["maml"]
        assert {f"episode_return_mean_adapt_{k}" for k in range(3)} <= set(maml)
        assert maml["adaptation_delta"] == pytest.approx(
            maml["episode_return_mean_adapt_2"] - maml["episode_return_mean_adapt_0"]
        )
    finally:
        algo.stop()


@STACKS
def test_evaluate_adaptation_leaves_theta_unchanged(ray_session: None, new_api_stack: bool) -> None:
    algo = tiny_config(num_env_runners=1, new_api_stack=new_api_stack).build_algo()
    try:
        algo.train()
        before_learner, before_runner = theta(algo), runner_weights(algo)
        tasks = algo.sample_tasks(2)
        curve = algo.evaluate_adaptation(num_steps=2, tasks=tasks)
        assert set(curve) == {
            "episode_return_mean_adapt_0", "episode_return_mean_adapt_1", "episode_return_mean_adapt_2", "adaptation_delta",
            "adaptation_delta_stderr", "pre_adaptation_return_std", "pre_adaptation_return_std_same_task",
            "dropped_env_steps_fraction", "resampled_tasks",
        }
        for name, value in theta(algo).items():
            np.testing.assert_array_equal(value, before_learner[name])
        for state, before in zip(runner_weights(algo), before_runner):
            for name in before_learner:
                np.testing.assert_array_equal(state[name], before[name])
        with pytest.raises(ValueError, match="num_steps"):
            algo.evaluate_adaptation(num_steps=-1)
        # Each task's own returns, which the pooled means are made of (episode-weighted).
        detailed = algo.evaluate_adaptation(num_steps=1, tasks=tasks, with_task_returns=True)
        rows = detailed["task_returns"]
        assert [r["task_index"] for r in rows] == [0, 1]
        np.testing.assert_array_equal(np.array([r["task"] for r in rows]), np.array(tasks))
        for k in range(2):
            pooled = sum(r["returns"][k] * r["episodes"][k] for r in rows) / sum(r["episodes"][k] for r in rows)
            assert pooled == pytest.approx(detailed[f"episode_return_mean_adapt_{k}"], rel=1e-5)
            assert all(r["episodes"][k] == algo.config.episodes_per_task and r["stderr"][k] >= 0 for r in rows)
    finally:
        algo.stop()


def test_checkpoint_restores_theta_and_meta_optimizer(ray_session: None, tmp_path: Path) -> None:
    algo = tiny_config().build_algo()
    try:
        algo.train()
        saved_theta = theta(algo)
        saved_kl = algo.theta_holder.kl_coeff()
        optimizer_state = algo.learner_group.get_state()["learner"]["optimizer"]
        algo.save_to_path(str(tmp_path))
        next_tasks = algo.sample_tasks(3)  # what the run would have trained on next
    finally:
        algo.stop()

    restored = MAML.from_checkpoint(str(tmp_path))
    try:
        # The task stream goes on where it stopped, not from config.seed's first tasks.
        np.testing.assert_array_equal(np.asarray(restored.sample_tasks(3)), np.asarray(next_tasks))
        for name, value in theta(restored).items():
            np.testing.assert_array_equal(value, saved_theta[name])
        assert restored.theta_holder.kl_coeff() == saved_kl
        restored_optimizer = restored.learner_group.get_state()["learner"]["optimizer"]
        # Adam's moment estimates and step count survive the round trip.
        saved_flat = _flatten(optimizer_state)
        restored_flat = _flatten(restored_optimizer)
        assert saved_flat.keys() == restored_flat.keys() and len(saved_flat) > 0
        for key, value in saved_flat.items():
            np.testing.assert_array_equal(np.asarray(restored_flat[key]), np.asarray(value), err_msg=key)
        assert restored.iteration == 1
        result = restored.train()
        assert result["training_iteration"] == 2
        assert any(not np.array_equal(theta(restored)[k], saved_theta[k]) for k in saved_theta)
    finally:
        restored.stop()


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (list, tuple)):
            flat.update(_flatten(dict(enumerate(value)), f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_tune_runs_maml_by_name_with_a_maml_stop_criterion(ray_session: None, tmp_path: Path) -> None:
    from ray import tune

    tuner = tune.Tuner(
        "MAML",
        param_space=tiny_config(),
        run_config=tune.RunConfig(
            stop={"maml/adaptation_delta": 1e9, "training_iteration": 2}, storage_path=str(tmp_path), verbose=0
        ),
    )
    result = tuner.fit().get_best_result(metric="maml/adaptation_delta", mode="max")
    assert result.error is None
    assert result.metrics["training_iteration"] == 2
    assert "adaptation_delta" in result.metrics["maml"]


def test_periodic_held_out_evaluation_reports_the_adaptation_curve(ray_session: None) -> None:
    """``evaluation_interval`` runs the meta-test on fixed held-out tasks; its samples are not training's."""
    from rllib_maml.algorithm.env_factory import held_out_tasks

    def build(evaluate: bool) -> MAML:
        config = tiny_config()
        if evaluate:
            config = config.evaluation(
                evaluation_interval=1, evaluation_num_tasks=2, evaluation_adaptation_steps=2, evaluation_task_seed=3
            )
        return config.build_algo()

    plain, evaluated = build(False), build(True)
    try:
        results = [evaluated.train() for _ in range(2)]
        plain_result = plain.train()
        for result in results:
            curve = result["evaluation"]["maml"]
            assert {f"episode_return_mean_adapt_{k}" for k in range(3)} <= set(curve)
            assert np.isfinite(curve["adaptation_delta"])
        expected = held_out_tasks(evaluated.config, 2, seed=3)
        assert [np.asarray(t).tolist() for t in evaluated._evaluation_tasks] == [np.asarray(t).tolist() for t in expected]
        # Held-out episodes are not counted as training samples, and theta is left as training made it.
        counted = results[0]["env_runners"]["num_env_steps_sampled_lifetime"]
        assert counted == plain_result["env_runners"]["num_env_steps_sampled_lifetime"]
    finally:
        plain.stop()
        evaluated.stop()


@STACKS
def test_timers_are_this_training_steps_seconds_without_the_meta_test(
    ray_session: None, new_api_stack: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``timers/maml_*_s`` sum one iteration's phases (RLlib's ``metrics.log_time`` on the
    new stack); neither earlier iterations nor the held-out meta-test are added.

    Each sampling call is made to last at least ``PAUSE`` seconds: training samples twice
    per iteration (one inner step), the meta-test three times (two inner steps), so a
    leaked meta-test or a lifetime sum would read at least ``4 * PAUSE``.
    """
    import time

    from rllib_maml.algorithm.metrics import INNER_STEPS_TIMER, META_UPDATE_TIMER, SAMPLING_TIMER

    PAUSE = 1.0
    original = MAML.sample_on_runners

    def slow(self: MAML, *args, **kwargs):
        time.sleep(PAUSE)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MAML, "sample_on_runners", slow)
    algo = (
        tiny_config(new_api_stack=new_api_stack)
        .evaluation(evaluation_interval=1, evaluation_num_tasks=2, evaluation_adaptation_steps=2)
        .build_algo()
    )
    try:
        for _ in range(3):
            timers = algo.train()["timers"]
            assert 2 * PAUSE <= timers[SAMPLING_TIMER] < 4 * PAUSE
            assert 0 < timers[INNER_STEPS_TIMER] < PAUSE
            assert timers[META_UPDATE_TIMER] > 0
    finally:
        algo.stop()
