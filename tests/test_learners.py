"""Several Learners: the meta-batch split over ``num_learners`` actors gives the same update as one.

Each of 2 Learner actors takes the second-order meta-gradient of its share of the
tasks; ``torch.distributed`` averages them in RLlib's Learner process group. On the
same rollouts, theta after the meta-update equals that of one local Learner to float
tolerance, and theta, Adam's state and the KL coefficient are identical on both actors.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pytest

from rllib_maml import MAML, MAMLConfig
from rllib_maml.algorithm.learner import task_share

#: float32 sums in another order; Adam divides by sqrt(v), which amplifies tiny gradient
#: differences for near-zero gradients, hence an absolute tolerance of a small part of lr.
ATOL = 1e-6


def config(num_learners: int, meta_optimizer: str = "ppo") -> MAMLConfig:
    return (
        MAMLConfig()
        .environment("rllib_maml/Navigation2D-v0")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=3)
        # TRPO's conjugate gradient in float32 amplifies rounding (the two set-ups sum over tasks in
        # another order) by the Fisher's condition number: with damping 1e-5 the two steps differ by
        # about 3% of their size, with 0.1 by about 0.05%.
        # value_function, not the default linear baseline: the path with the most to keep in step (the
        # value MLP's inner step and loss; under TRPO its own Adam steps).
        .training(meta_batch_size=3, episodes_per_task=2, maml_optimizer_steps=3, lr=1e-3, meta_optimizer=meta_optimizer,
                  cg_damping=0.1, baseline="value_function")
        # Fractional CPUs: two Learner actors beside the test session's other work on 2 cores.
        .learners(num_learners=num_learners, num_cpus_per_learner=0.5 if num_learners else "auto")
        .debugging(seed=0)
    )


def learner_states(algo: MAML) -> List[Dict[str, Any]]:
    return [r.get() for r in algo.learner_group.foreach_learner(lambda learner: learner.get_state())]


def flatten(tree: Any, prefix: str = "") -> Dict[str, np.ndarray]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}/").items()}
    if isinstance(tree, (list, tuple)):
        return flatten(dict(enumerate(tree)), prefix)
    return {prefix: np.asarray(tree)}


def test_task_shares_cover_the_meta_batch_once() -> None:
    for num_tasks, world in [(3, 2), (10, 3), (4, 4), (5, 1)]:
        shares = [task_share(num_tasks, r, world) for r in range(world)]
        assert [i for s in shares for i in range(num_tasks)[s]] == list(range(num_tasks))
        assert max(s.stop - s.start for s in shares) - min(s.stop - s.start for s in shares) <= 1


@pytest.mark.parametrize("meta_optimizer", ["ppo", "trpo"])
def test_two_learners_update_theta_as_one_does(ray_session: None, meta_optimizer: str) -> None:
    """TRPO's gradient, Fisher-vector products and line search are averaged the same way."""
    one, two = config(0, meta_optimizer).build_algo(), config(2, meta_optimizer).build_algo()
    try:
        two.learner_group.set_weights(one.learner_group.get_weights())
        theta0 = one.theta_holder.theta_weights()
        rollouts = one.sample_adaptation(one.sample_tasks(3), num_steps=1)
        stats_one = one.theta_holder.meta_update(rollouts)
        stats_two = two.theta_holder.meta_update(rollouts)
        theta_one, theta_two = one.theta_holder.theta_weights(), two.theta_holder.theta_weights()
        assert any(not np.allclose(theta_one[k], theta0[k], atol=1e-5) for k in theta0), "theta did not move"
        largest_step = max(float(np.abs(theta_one[k] - theta0[k]).max()) for k in theta0)
        atol = ATOL if meta_optimizer == "ppo" else 2e-3 * largest_step
        for name in theta_one:
            np.testing.assert_allclose(theta_two[name], theta_one[name], rtol=0, atol=atol, err_msg=name)
        rel = 1e-4 if meta_optimizer == "ppo" else 1e-3
        for key in ("meta_loss", "kl", "policy_loss"):
            assert stats_two[key] == pytest.approx(stats_one[key], rel=rel, abs=1e-6), key
        assert stats_two["kl_coeff"] == pytest.approx(stats_one["kl_coeff"], rel=1e-6)
        if meta_optimizer == "trpo":
            assert stats_two["trpo_step_fraction"] == stats_one["trpo_step_fraction"] > 0

        a, b = learner_states(two)
        assert a["maml_kl_coeff"] == b["maml_kl_coeff"]
        flat_a, flat_b = flatten(a["optimizer"]), flatten(b["optimizer"])
        assert flat_a.keys() == flat_b.keys() and len(flat_a) > 2
        for key in flat_a:
            np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=key)
        for key, value in flatten(a["rl_module"]).items():
            np.testing.assert_array_equal(value, flatten(b["rl_module"])[key], err_msg=key)
    finally:
        one.stop()
        two.stop()


def test_two_learners_train_on_navigation2d(ray_session: None) -> None:
    algo = config(2).build_algo()
    try:
        before = algo.theta_holder.theta_weights()
        for _ in range(2):
            result = algo.train()
        assert result["training_iteration"] == 2 and np.isfinite(result["maml"]["adaptation_delta"])
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] == 2 * 3 * 2 * 2 * 100
        after = algo.theta_holder.theta_weights()
        assert any(not np.array_equal(after[k], before[k]) for k in before)
        # The runners sample with the Learners' theta after the sync.
        runner = algo.env_runner.module.get_state()
        for name, value in after.items():
            np.testing.assert_array_equal(np.asarray(runner[name]), value)
    finally:
        algo.stop()
