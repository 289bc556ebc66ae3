"""The adaptation curve's statistics: pooled means, per-group curves, and the across-task spread."""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence

import numpy as np
import pytest

from rllib_maml.algorithm.metrics import adaptation_metrics, stderr
from rllib_maml.core.data import TaskRollout


def rollout(index: int, step: int, returns: Sequence[float], group: Optional[str], task_value: Any = None) -> TaskRollout:
    """Task ``index`` at ``step``: one 1-step episode per entry of ``returns``, rewarded that much."""
    n = len(returns)
    return TaskRollout.from_episode_columns(
        task_index=index, step=step, task=task_value, group=group,
        obs=[np.zeros((2, 1))] * n, actions=[np.zeros((1, 1))] * n, logp=[np.zeros(1)] * n,
        dist_inputs=[np.zeros((1, 2))] * n, rewards=[np.array([r]) for r in returns], terminated=[True] * n,
    )


def task(index: int, group: Optional[str], before: Sequence[float], after: Sequence[float],
         task_value: Any = None) -> List[TaskRollout]:
    return [rollout(index, 0, before, group, task_value), rollout(index, 1, after, group, task_value)]


def test_adaptation_metrics_report_the_per_task_spread_overall_and_per_group() -> None:
    # A0 4 -> 8, A1 4 -> 16, B2 0 -> 12: deltas [4, 12, 12], before [4, 4, 0].
    metrics = adaptation_metrics([task(0, "A", [4], [8]), task(1, "A", [4], [16]), task(2, "B", [0], [12])])
    assert metrics["episode_return_mean_adapt_0"] == pytest.approx(8 / 3)
    assert metrics["adaptation_delta"] == pytest.approx(28 / 3)
    assert metrics["adaptation_delta_stderr"] == pytest.approx(np.std([4, 12, 12], ddof=1) / math.sqrt(3))
    assert metrics["pre_adaptation_return_std"] == pytest.approx(np.std([4, 4, 0], ddof=1))
    group_a, group_b = metrics["per_task"]["A"], metrics["per_task"]["B"]
    assert group_a["adaptation_delta"] == pytest.approx(8.0)
    assert group_a["adaptation_delta_stderr"] == pytest.approx(4.0)  # std([4, 12]) = 5.657, over sqrt(2)
    assert group_a["pre_adaptation_return_std"] == 0.0
    assert group_b["adaptation_delta"] == pytest.approx(12.0)
    assert math.isnan(group_b["adaptation_delta_stderr"]) and math.isnan(group_b["pre_adaptation_return_std"])


def test_the_spread_weights_tasks_equally_not_episodes() -> None:
    # Task 0: three episodes, delta 0; task 1: one episode, delta 8. Pooled over the four
    # episodes: before 4 / 4 = 1, after 12 / 4 = 3, delta 2; per task the deltas are [0, 8].
    metrics = adaptation_metrics([task(0, None, [1, 1, 1], [1, 1, 1]), task(1, None, [1], [9])])
    assert metrics["adaptation_delta"] == pytest.approx(2.0)
    assert metrics["adaptation_delta_stderr"] == pytest.approx(4.0)  # per task [0, 8]: std 5.657, over sqrt(2)
    assert "per_task" not in metrics


def test_the_spread_across_draws_of_the_same_task_leaves_out_the_hidden_task() -> None:
    """Forward tasks earn 300 and backward ones 10 before adaptation: the spread across tasks is
    the direction; across draws of the same (body, direction) only the noise remains."""
    metrics = adaptation_metrics([
        task(0, "W", [290], [300], ("W", 1.0)), task(1, "W", [310], [320], ("W", 1.0)),
        task(2, "W", [0], [200], ("W", -1.0)), task(3, "W", [20], [220], ("W", -1.0)),
        task(4, "H", [5], [6], ("H", 1.0)),
    ])
    walker = metrics["per_task"]["W"]
    assert walker["pre_adaptation_return_std"] == pytest.approx(np.std([290, 310, 0, 20], ddof=1))
    # Within (W, +1): 290, 310; within (W, -1): 0, 20. Squares 200 + 200 over 2 degrees of freedom.
    assert walker["pre_adaptation_return_std_same_task"] == pytest.approx(np.sqrt(200.0))
    assert math.isnan(metrics["per_task"]["H"]["pre_adaptation_return_std_same_task"])  # no task repeats
    assert metrics["pre_adaptation_return_std_same_task"] == pytest.approx(np.sqrt(200.0))  # the lone H task adds nothing


def test_stderr_is_the_sample_std_over_root_n_and_nan_below_two_values() -> None:
    assert stderr([1.0, 2.0, 3.0]) == pytest.approx(1.0 / math.sqrt(3))
    assert stderr(np.array([4.0, 4.0])) == 0.0
    assert math.isnan(stderr([5.0]))
    assert math.isnan(stderr([]))
