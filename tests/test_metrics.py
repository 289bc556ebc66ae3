"""The adaptation curve's statistics: pooled means, per-group curves, and the across-task spread."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np
import pytest

from rllib_maml.algorithm.metrics import adaptation_metrics
from rllib_maml.core.data import TaskRollout


def rollout(index: int, step: int, returns: Sequence[float], group: Optional[str]) -> TaskRollout:
    """Task ``index`` at ``step``: one 1-step episode per entry of ``returns``, rewarded that much."""
    n = len(returns)
    return TaskRollout.from_episode_columns(
        task_index=index, step=step, task=None, group=group,
        obs=[np.zeros((2, 1))] * n, actions=[np.zeros((1, 1))] * n, logp=[np.zeros(1)] * n,
        dist_inputs=[np.zeros((1, 2))] * n, rewards=[np.array([r]) for r in returns], terminated=[True] * n,
    )


def task(index: int, group: Optional[str], before: Sequence[float], after: Sequence[float]) -> List[TaskRollout]:
    return [rollout(index, 0, before, group), rollout(index, 1, after, group)]


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
