"""MAML learns to adapt on Navigation2D: a before/after comparison on fixed held-out goals.

Thresholds were picked from measured runs of this very setting (the quickstart's:
inner_lr 0.5, meta lr 3e-3, 10 tasks x 10 episodes per iteration, 12 iterations, the
same 10 held-out goals), with ``python benchmarks/baselines_navigation2d.py
--meta-optimizers ppo trpo vpg --old-api-stack``. With the default linear baseline the
held-out post-adaptation return rose by 56.9 / 84.4 (PPO, seeds 0 / 1), 55.8 / 82.0
(TRPO), 60.2 / 66.0 (VPG) and 57.0 (PPO on RLlib's old API stack, seed 0); with
``baseline="value_function"`` (the default before those runs) by 32.0 / 69.4 (PPO).
Requiring +15 leaves a margin of 17 or more for every one of them, while an untrained
policy's evaluation varies by only about +-5. The mean per-iteration adaptation_delta
was positive in every run (8.8 to 24.0 with the linear baseline), so it must be > 0.

The same test runs on RLlib's old API stack (``MAMLTorchPolicy``), the one config
switch apart: the same network and update, but its own sampler, so its returns are
close to the new stack's, not equal (-71.6 -> -14.6 after one step, seed 0, against
-75.3 -> -18.4). ``meta_optimizer="trpo"`` and ``"vpg"`` (``learning`` marker,
``make test-learning``) must pass the same bar in the same budget.
"""

from __future__ import annotations

import numpy as np
import pytest

from rllib_maml.tools.quickstart import navigation2d_config, train_and_evaluate

ITERATIONS = 12
MIN_IMPROVEMENT = 15.0


@pytest.mark.parametrize("old_api_stack", [False, True], ids=["new_api_stack", "old_api_stack"])
def test_navigation2d_post_adaptation_return_improves_on_held_out_tasks(ray_session: None, old_api_stack: bool) -> None:
    config = navigation2d_config(old_api_stack=old_api_stack)
    before, after, results = train_and_evaluate(ITERATIONS, num_eval_tasks=10, config=config, verbose=False)
    improvement = after["episode_return_mean_adapt_1"] - before["episode_return_mean_adapt_1"]
    assert improvement > MIN_IMPROVEMENT, (before, after)
    # The inner step helps: averaged over the training iterations, adaptation gains return.
    deltas = [r["maml"]["adaptation_delta"] for r in results]
    assert np.mean(deltas) > 0, deltas


@pytest.mark.learning
@pytest.mark.parametrize("meta_optimizer", ["trpo", "vpg"])
def test_each_meta_optimizer_improves_on_held_out_tasks(ray_session: None, meta_optimizer: str) -> None:
    config = navigation2d_config().training(meta_optimizer=meta_optimizer)
    before, after, results = train_and_evaluate(ITERATIONS, num_eval_tasks=10, config=config, verbose=False)
    improvement = after["episode_return_mean_adapt_1"] - before["episode_return_mean_adapt_1"]
    assert improvement > MIN_IMPROVEMENT, (before, after)
    assert np.mean([r["maml"]["adaptation_delta"] for r in results]) > 0
