"""MAML learns to adapt on Navigation2D: a before/after comparison on fixed held-out goals.

Thresholds were picked from measured runs of this very setting (the quickstart's:
inner_lr 0.5, meta lr 3e-3, 10 tasks x 10 episodes per iteration, seed 0, the same
10 held-out goals). A 15-iteration run of it (what ``python -m rllib_maml.tools.quickstart
--iterations 15`` runs) raised the held-out post-adaptation return from -71.6 (untrained) to -32.2, and the default
12 iterations (``make demo``) to -31.0: improvements of 35 to 40. Requiring +15
leaves a wide margin for machine noise, while an untrained policy's evaluation
varies by only about +-5. The per-iteration adaptation_delta was positive in all 15
iterations of the first run (2.3 to 10.8), so its mean must be > 0.

The same test runs on RLlib's old API stack (``MAMLTorchPolicy``), the one config
switch apart. Measured with ``python -m rllib_maml.tools.quickstart --old-api-stack``: it
gave the very same held-out returns as the new stack (-71.62 -> -31.04 after one
step), because both stacks run the same network, update and RNG draws; the
thresholds are therefore the same.

``meta_optimizer="trpo"`` and ``"vpg"`` (``learning`` marker, ``make test-learning``)
must pass the same bar in the same budget. Measured with this very setting and
call (``train_and_evaluate(12, num_eval_tasks=10, config=navigation2d_config(seed)
.training(meta_optimizer=...))``, seeds 0 and 1): the post-adaptation return rose by 28.2 / 58.4 (TRPO),
29.7 / 66.3 (VPG) and 32.0 / 69.4 (PPO, the default); the mean adaptation_delta was
positive in all six runs (TRPO 9.4 / 1.1, VPG 4.1 / 6.8). So +15 holds with a
margin of 13 or more for each.
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
