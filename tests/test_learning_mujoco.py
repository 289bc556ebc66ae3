"""MuJoCo learning, behind the ``learning`` marker (``make test-learning``; 3 min 7 s measured on 2 idle cores).

The oracle rung of ``benchmarks/diagnostic_ladder.py``: HalfCheetahRandDirec with the
direction fixed to +1 and a negligible ``inner_lr``, so MAML's outer loop alone must
learn forward running. It tells a change that breaks MAML's meta-optimisation within
minutes, where the full meta-RL curve takes an hour.

Thresholds, from measured runs of this setting (10 tasks x 10 episodes, 2 runners x 50
sub-envs, lr 1e-3):
    * ``python benchmarks/diagnostic_ladder.py --env-steps 1500000`` (seed 0, after the GAE
      and reset-seed fixes): return -9.1 at 0.16M env steps, +29.4 at 0.96M, +72.5 at 1.5M;
    * the MuJoCo-learning issue's run before those fixes: -15 at the start, +25 at 0.9M,
      +76 at 1.5M.
The test asks for a mean return above +20 over the last 3 iterations at 1.5M env steps (a
third of what both runs reached) and a rise of more than 30 over the first 3 iterations.
"""

from __future__ import annotations

import numpy as np
import pytest

from rllib_maml import MAMLConfig

ORACLE_BUDGET = 1_500_000


@pytest.mark.learning
def test_oracle_outer_loop_learns_forward_running(ray_session: None) -> None:
    algo = (
        MAMLConfig()
        .environment("rllib_maml/HalfCheetahRandDirec-v0", env_config={"directions": [1.0]})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=50)
        .training(meta_batch_size=10, episodes_per_task=10, inner_lr=1e-6, lr=1e-3)
        .debugging(seed=0)
        .build_algo()
    )
    returns = []
    try:
        steps = 0
        while steps < ORACLE_BUDGET:
            result = algo.train()
            steps = result["env_runners"]["num_env_steps_sampled_lifetime"]
            returns.append(result["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
    start, end = float(np.mean(returns[:3])), float(np.mean(returns[-3:]))
    assert end > 20.0, f"return {start:.1f} -> {end:.1f} after {steps} env steps"
    assert end - start > 30.0, f"return {start:.1f} -> {end:.1f} after {steps} env steps"
