"""GAE on labelled rollouts: episode boundaries bootstrap the way RLlib's convention says."""

from __future__ import annotations

import numpy as np
import pytest

from rllib_maml.core.data import TaskRollout, value_targets_and_advantages


def two_episode_rollout(terminated: tuple[bool, bool]) -> TaskRollout:
    """Two 3-step episodes of zero reward; ``obs`` rows are ``[s0 s1 s2 s3 | s0' s1' s2' s3']``."""
    obs = [np.zeros((4, 1), np.float32), np.zeros((4, 1), np.float32)]
    steps = [np.zeros(3, np.float32)] * 2
    return TaskRollout.from_episode_columns(
        task_index=0,
        step=0,
        task=None,
        group=None,
        obs=obs,
        actions=[np.zeros((3, 1))] * 2,
        logp=steps,
        dist_inputs=[np.zeros((3, 3))] * 2,
        rewards=steps,
        terminated=list(terminated),
    )


# V(final obs) = 10 in both episodes, V(first obs of episode 2) = 5, all else 0.
VALUES = np.array([0, 0, 0, 10, 5, 0, 0, 10], np.float32)


def test_truncated_episodes_bootstrap_from_their_own_final_observation() -> None:
    """The issue's example: flagging the extra row gave [4.80 4.85 4.90 | 0 0 0]."""
    targets, advantages = value_targets_and_advantages(two_episode_rollout((False, False)), VALUES, 0.99, 1.0)
    expected = [9.70299, 9.801, 9.9, 9.70299, 9.801, 9.9]
    np.testing.assert_allclose(targets, expected, rtol=1e-5)
    np.testing.assert_allclose(advantages, np.array(expected) - np.array([0, 0, 0, 5, 0, 0]), rtol=1e-5)


@pytest.mark.parametrize("terminated", [(True, False), (True, True)])
def test_terminated_episodes_do_not_bootstrap(terminated: tuple[bool, bool]) -> None:
    targets, _ = value_targets_and_advantages(two_episode_rollout(terminated), VALUES, 0.99, 1.0)
    second = [0.0] * 3 if terminated[1] else [9.70299, 9.801, 9.9]
    np.testing.assert_allclose(targets, [0.0] * 3 + second, rtol=1e-5, atol=1e-6)


def test_gae_lambda_stays_inside_each_episode() -> None:
    """With lambda < 1 the first episode's targets must not depend on the second episode."""
    rollout = two_episode_rollout((False, False))
    values = VALUES.copy()
    base, _ = value_targets_and_advantages(rollout, values, 0.9, 0.5)
    values[4:] += 100.0
    moved, _ = value_targets_and_advantages(rollout, values, 0.9, 0.5)
    np.testing.assert_allclose(base[:3], moved[:3])


def test_linear_baseline_fits_returns_in_its_feature_span() -> None:
    """Constant rewards, gamma = 1: the return-to-go ``T - t`` is linear in the time feature."""
    from rllib_maml.core.data import linear_baseline_values

    rng = np.random.default_rng(0)
    lengths = [30, 30, 30]
    rollout = TaskRollout.from_episode_columns(
        task_index=0, step=0, task=None, group=None,
        obs=[rng.normal(size=(n + 1, 2)) for n in lengths],
        actions=[np.zeros((n, 1)) for n in lengths],
        logp=[np.zeros(n) for n in lengths],
        dist_inputs=[np.zeros((n, 3)) for n in lengths],
        rewards=[np.ones(n) for n in lengths],
        terminated=[False] * 3,
    )
    values = linear_baseline_values(rollout, gamma=1.0)
    assert values.shape == (len(rollout.obs),)
    expected = np.concatenate([np.arange(n, 0, -1) for n in lengths])
    np.testing.assert_allclose(values[rollout.step_rows], expected, atol=1e-2)


def test_the_update_uses_the_linear_baseline_when_configured() -> None:
    """``baseline="linear"``: every batch's value targets come from the fitted baseline, not the value MLP."""
    from rllib_maml.core.data import linear_baseline_values, value_targets_and_advantages
    from tests.helpers import tiny_policy

    rng = np.random.default_rng(1)

    def rollout(step: int) -> TaskRollout:
        lengths = [12, 12]
        return TaskRollout.from_episode_columns(
            task_index=0, step=step, task=None, group=None,
            obs=[rng.normal(size=(n + 1, 3)) for n in lengths],
            actions=[rng.normal(size=(n, 2)) for n in lengths],
            logp=[np.zeros(n) for n in lengths],
            dist_inputs=[np.concatenate([np.zeros((n, 4)), np.ones((n, 2))], 1) for n in lengths],
            rewards=[rng.normal(size=n) for n in lengths],
            terminated=[False, False],
        )

    rollouts = [[rollout(0), rollout(1)]]
    for baseline in ("linear", "value_function"):
        updater = tiny_policy(baseline=baseline).maml
        batches, _ = updater.batches_and_path(rollouts, extend_path=False)
        for r, batch in zip(rollouts[0], batches[0]):
            linear_targets, _ = value_targets_and_advantages(r, linear_baseline_values(r, 0.99), 0.99, 1.0)
            matches = np.allclose(batch.value_targets.numpy(), linear_targets, atol=1e-5)
            assert matches == (baseline == "linear")
