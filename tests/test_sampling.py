"""What the runners sample: fresh initial states on every call, reproducible from config.seed."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

from rllib_maml import MAML
from tests.test_training import STACKS, tiny_config


def first_observations(algo: MAML, task: float, calls: int) -> List[np.ndarray]:
    """The first observation of every episode of ``task`` in ``calls`` sampling calls (step 0)."""
    theta = algo._learner_call("theta_weights")
    firsts = []
    for _ in range(calls):
        rollout = algo._sample_on_runners([task], [theta], step=0)[0]
        starts = np.r_[0, np.cumsum(rollout.episode_lens + 1)[:-1]]
        firsts.append(rollout.obs[starts])
    return firsts


@STACKS
@pytest.mark.parametrize("num_env_runners", [0, 1])
def test_each_call_starts_from_new_states_and_the_run_is_reproducible(
    ray_session: None, new_api_stack: bool, num_env_runners: int
) -> None:
    """Ray reseeds sub-envs with the same seed on every ``sample(num_episodes=...)``; MAML must not."""
    calls = []
    for _ in range(2):
        algo = tiny_config(
            "rllib_maml/PendulumMass-v0", num_env_runners=num_env_runners, new_api_stack=new_api_stack
        ).build_algo()
        try:
            calls.append(first_observations(algo, task=1.0, calls=3))
        finally:
            algo.stop()
    first_run, second_run = calls
    for a, b in zip(first_run, second_run):
        np.testing.assert_array_equal(a, b)  # same config.seed, same start states
    for earlier, later in zip(first_run, first_run[1:]):
        assert not np.allclose(earlier, later), "two sampling calls replayed the same initial states"
