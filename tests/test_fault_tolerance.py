"""A failing EnvRunner is restarted, and no task is ever lost or silently dropped.

The env raises inside ``step`` on a remote runner (as a buggy env or a MuJoCo
instability would). RLlib's ``apply()`` then ends the runner process after
``delay_between_env_runner_restarts_s`` and Ray restarts it; MAML takes the runner out
of service, waits until RLlib's ``restore_env_runners`` brings it back and samples the
lost task again. An env that hangs instead makes the call exceed its time limit
(``sample_timeout_s`` per episode that each of the runner's sub-envs runs);
MAML then has Ray restart the runner itself. If the env fails every time, the iteration ends after
``MAX_SAMPLING_RETRIES`` in a RuntimeError that names the task and the adaptation
step, instead of training on fewer tasks. (On the new stack both tasks share the one runner, so both are named.)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit
from ray import cloudpickle, tune

from rllib_maml import MAMLConfig
from rllib_maml.envs.navigation2d import Navigation2DEnv

cloudpickle.register_pickle_by_value(sys.modules[__name__])

HORIZON = 100


class FailingNavigation2D(Navigation2DEnv):
    """Fails at its first step on a remote runner, once (per marker file) or always.

    ``env_config["mode"]``: ``"raise"`` (once), ``"hang"`` (once, for an hour) or
    ``"always"`` (raise every time).
    """

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self._marker = Path(config["marker"])
        self._mode = config["mode"]
        self._remote = getattr(config, "worker_index", 0) > 0

    def step(self, action: np.ndarray):  # type: ignore[override]
        if self._remote and (self._mode == "always" or not self._marker.exists()):
            self._marker.write_text("failed")
            if self._mode == "hang":
                time.sleep(3600)
            raise RuntimeError("simulated env failure")
        return super().step(action)


def failing_config(marker: Path, mode: str, new_api_stack: bool = True) -> MAMLConfig:
    # The env is registered directly (not via gymnasium), so it needs its own TimeLimit.
    tune.register_env("FailingNavigation2D", lambda config: TimeLimit(FailingNavigation2D(config), HORIZON))
    return (
        MAMLConfig()
        .api_stack(enable_rl_module_and_learner=new_api_stack, enable_env_runner_and_connector_v2=new_api_stack)
        .environment("FailingNavigation2D", env_config={"marker": str(marker), "mode": mode})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2, sample_timeout_s=5.0)  # 2 episodes per sub-env: 10 s a call
        # RLlib's default waits 60 s before restarting a failed runner; keep the test short.
        # A runner that never comes back fails the test within a minute, not RLlib's 30.
        .fault_tolerance(restart_failed_env_runners=True, delay_between_env_runner_restarts_s=1.0,
                         env_runner_health_probe_timeout_s=5.0, env_runner_restore_timeout_s=60.0)
        .training(meta_batch_size=2, episodes_per_task=2, maml_optimizer_steps=1)
    )


@pytest.mark.parametrize(
    "mode,new_api_stack",
    [("raise", True), ("raise", False), ("hang", True)],
    ids=["raise-new_api_stack", "raise-old_api_stack", "hang-new_api_stack"],
)
def test_failed_runner_is_restarted_and_the_task_resampled(
    ray_session: None, tmp_path: Path, mode: str, new_api_stack: bool
) -> None:
    marker = tmp_path / "failed"
    algo = failing_config(marker, mode, new_api_stack).build_algo()
    try:
        result = algo.train()
        assert marker.exists(), "the env never failed; the test did not test anything"
        # Every task at every step was sampled in full: 2 tasks x 2 steps x 2 episodes x 100 steps.
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] == 2 * 2 * 2 * HORIZON
        assert algo.env_runner_group.num_remote_worker_restarts() >= 1
        # The lost call is reported: on the new stack both tasks shared the failed runner.
        assert result["maml"]["resampled_tasks"] >= 1
        assert algo.env_runner_group.healthy_worker_ids() == [1]
        second = algo.train()
        assert second["training_iteration"] == 2  # the restarted runner keeps working
        assert second["maml"]["resampled_tasks"] == 0
    finally:
        algo.stop()


def test_a_task_that_always_fails_is_reported_never_dropped(ray_session: None, tmp_path: Path) -> None:
    algo = failing_config(tmp_path / "failed", "always").build_algo()
    try:
        with pytest.raises(RuntimeError, match=r"Sampling tasks \[0, 1\] at adaptation step 0 failed 4 times"):
            algo.train()
    finally:
        algo.stop()


def test_restarting_sub_environments_is_rejected() -> None:
    """RLlib would recreate a failed sub-env without its task, mislabelling its episodes."""
    config = MAMLConfig().environment("rllib_maml/Navigation2D-v0").fault_tolerance(restart_failed_sub_environments=True)
    with pytest.raises(ValueError, match="restart_failed_sub_environments"):
        config.validate()


def test_a_call_may_take_sample_timeout_s_per_episode_of_each_sub_env() -> None:
    """A held-out test of 40 tasks on 2 runners x 50 sub-envs gives each runner 20 tasks,
    2 sub-envs each, so 5 episodes one after another per sub-env: 5 x ``sample_timeout_s``,
    where a fixed limit failed a measured multi-morphology run on a busy machine
    (results/mm-all-s7, iteration 150)."""
    from rllib_maml.algorithm.env_runner import episodes_per_sub_env
    from rllib_maml.algorithm.sampling import call_timeout_s

    config = MAMLConfig().env_runners(num_envs_per_env_runner=50, sample_timeout_s=60.0).training(episodes_per_task=10)
    assert call_timeout_s(config, 5) == 60.0  # 50 episodes on 50 sub-envs: one each
    assert call_timeout_s(config, 20) == 300.0
    assert call_timeout_s(config, 1) == 60.0  # 10 episodes on 50 sub-envs still take one episode's time
    assert call_timeout_s(config.env_runners(sample_timeout_s=None), 20) is None
    # More jobs than sub-envs go in chunks: 60 jobs on 50 sub-envs = one episode each, twice (50, then 10 jobs x 5).
    assert episodes_per_sub_env(60, 1, 50) == 2
