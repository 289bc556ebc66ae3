"""A failing EnvRunner never loses a task silently.

The env raises inside ``step`` once on a remote runner (as a buggy env or a MuJoCo
instability would). MAML retries the task after ``Algorithm.restore_env_runners``;
in Ray 2.60 the failed runner did not become usable again within the retries
(calls to it time out), so the iteration must end in a clear RuntimeError that
names the task and the adaptation step, instead of training on fewer tasks. The
same holds on the old API stack (RolloutWorkers).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from ray import cloudpickle, tune

from rllib_maml.envs.navigation2d import Navigation2DEnv
from rllib_maml import MAMLConfig

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class CrashOnceNavigation2D(Navigation2DEnv):
    """Raises at its first step on a remote runner, once per marker file."""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self._marker = Path(config["marker"])
        self._remote = getattr(config, "worker_index", 0) > 0

    def step(self, action: np.ndarray):  # type: ignore[override]
        if self._remote and not self._marker.exists():
            self._marker.write_text("crashed")
            raise RuntimeError("simulated env failure")
        return super().step(action)


@pytest.mark.parametrize("new_api_stack", [True, False], ids=["new_api_stack", "old_api_stack"])
def test_failed_runner_call_is_retried_then_reported_never_dropped(ray_session: None, tmp_path: Path, new_api_stack: bool) -> None:
    tune.register_env("CrashOnceNavigation2D", CrashOnceNavigation2D)
    marker = tmp_path / "crashed"
    algo = (
        MAMLConfig()
        .api_stack(enable_rl_module_and_learner=new_api_stack, enable_env_runner_and_connector_v2=new_api_stack)
        .environment("CrashOnceNavigation2D", env_config={"marker": str(marker)})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2, sample_timeout_s=3.0)
        .fault_tolerance(restart_failed_env_runners=True)
        .training(meta_batch_size=2, episodes_per_task=2, maml_optimizer_steps=1)
        .build_algo()
    )
    try:
        with pytest.raises(RuntimeError, match=r"Sampling tasks \[0\] at adaptation step 0 failed"):
            algo.train()
        assert marker.exists(), "the env never failed; the test did not test anything"
    finally:
        algo.stop()


def test_restarting_sub_environments_is_rejected() -> None:
    """RLlib would recreate a failed sub-env without its task, mislabelling its episodes."""
    config = MAMLConfig().environment("rllib_maml/Navigation2D-v0").fault_tolerance(restart_failed_sub_environments=True)
    with pytest.raises(ValueError, match="restart_failed_sub_environments"):
        config.validate()
