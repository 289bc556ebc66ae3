"""MAML's result keys, as constants (as RLlib's ``ray.rllib.utils.metrics``), and the
adaptation curve computed from one iteration's rollouts."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from ray.rllib.utils.metrics import EPISODE_LEN_MEAN, EPISODE_RETURN_MEAN

from rllib_maml.core.data import TaskRollout, mean_return

#: Top-level results key of the adaptation curve (training tasks), and under
#: ``evaluation/`` of the held-out meta-test.
MAML_RESULTS = "maml"
#: ``maml/<ADAPT_RETURN_PREFIX><k>``: mean episode return after ``k`` inner steps (0: theta itself).
ADAPT_RETURN_PREFIX = "episode_return_mean_adapt_"
#: ``maml/adaptation_delta``: the return after the last inner step minus the return before adaptation.
ADAPTATION_DELTA = "adaptation_delta"
#: ``maml/adaptation_delta_stderr``: the standard error, across tasks, of the per-task deltas
#: (NaN for one task). A delta more than twice this is adaptation, not task-draw noise.
ADAPTATION_DELTA_STDERR = "adaptation_delta_stderr"
#: ``maml/pre_adaptation_return_std``: the spread, across tasks, of the per-task mean return
#: before adaptation (NaN for one task): how much the tasks differ for theta itself.
PRE_ADAPTATION_STD = "pre_adaptation_return_std"
#: ``maml/pre_adaptation_return_std_same_task``: the same spread across draws of the same task value
#: (pooled within groups of equal tasks; NaN when no task repeats): the part of
#: :data:`PRE_ADAPTATION_STD` that is not the hidden task itself.
PRE_ADAPTATION_STD_SAME_TASK = "pre_adaptation_return_std_same_task"
#: ``maml/dropped_env_steps_fraction``: the part of the iteration's env steps that were simulated
#: in episodes still running when sampling had enough (counted in the budget, not learned from).
DROPPED_ENV_STEPS_FRACTION = "dropped_env_steps_fraction"
#: ``maml/resampled_tasks``: sampling calls of the iteration that a failed EnvRunner lost, each
#: sampled again (:attr:`~rllib_maml.core.data.TaskRollout.num_failed_calls`); 0 when none failed.
RESAMPLED_TASKS = "resampled_tasks"
#: ``maml/per_task/<group>/...``: the same curve per task group (e.g. per morphology).
PER_TASK = "per_task"
#: ``evaluate_adaptation(..., with_task_returns=True)`` only: one row per task (:func:`task_returns`),
#: to tell a spread across tasks caused by the hidden task from evaluation noise.
TASK_RETURNS = "task_returns"
#: ``timers/*`` keys: seconds of this iteration spent sampling (all adaptation steps),
#: computing the adapted weights, and in the meta-update.
SAMPLING_TIMER = "maml_sampling_s"
INNER_STEPS_TIMER = "maml_inner_steps_s"
META_UPDATE_TIMER = "maml_meta_update_s"


def adapt_return_key(step: int) -> str:
    """The results key of the mean return after ``step`` inner steps."""
    return f"{ADAPT_RETURN_PREFIX}{step}"


def adaptation_metrics(rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, Any]:
    """Mean returns per adaptation step, :data:`ADAPTATION_DELTA` and, for grouped tasks, :data:`PER_TASK`.

    ``rollouts[i][k]`` is task ``i`` at step ``k``. Key ``adapt_return_key(0)`` is
    before adaptation, ``adapt_return_key(k)`` after ``k`` inner steps.
    """
    num_steps = len(rollouts[0])

    def curve(task_rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        means = [mean_return([r[k] for r in task_rollouts]) for k in range(num_steps)]
        out = {adapt_return_key(k): m for k, m in enumerate(means)}
        out[ADAPTATION_DELTA] = means[-1] - means[0]
        # Per task, each task's episodes weighted equally (the pooled means above weight by episode count).
        before = np.array([r[0].episode_returns.mean() for r in task_rollouts])
        deltas = np.array([r[-1].episode_returns.mean() for r in task_rollouts]) - before
        out[ADAPTATION_DELTA_STDERR] = stderr(deltas)
        out[PRE_ADAPTATION_STD] = float(before.std(ddof=1)) if len(before) > 1 else float("nan")
        out[PRE_ADAPTATION_STD_SAME_TASK] = same_task_std([r[0].task for r in task_rollouts], before)
        return out

    metrics: Dict[str, Any] = curve(rollouts)
    env_steps, _ = sample_counts(rollouts)
    dropped = sum(r.num_dropped_env_steps for task_rollouts in rollouts for r in task_rollouts)
    metrics[DROPPED_ENV_STEPS_FRACTION] = dropped / env_steps if env_steps else 0.0
    metrics[RESAMPLED_TASKS] = sum(r.num_failed_calls for task_rollouts in rollouts for r in task_rollouts)
    groups = sorted({r[0].group for r in rollouts if r[0].group is not None})
    if groups:
        metrics[PER_TASK] = {g: curve([r for r in rollouts if r[0].group == g]) for g in groups}
    return metrics


def stderr(values: Sequence[float]) -> float:
    """The standard error of the mean of ``values`` (sample std / sqrt(n)), NaN for fewer than two."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def same_task_std(tasks: Sequence[Any], values: Sequence[float]) -> float:
    """The pooled standard deviation of ``values`` within groups of equal ``tasks``
    (compared by ``repr``, e.g. ``("Walker2d", -1.0)`` drawn several times), NaN when no task repeats."""
    by_task: Dict[str, List[float]] = {}
    for task, value in zip(tasks, values):
        by_task.setdefault(repr(task), []).append(float(value))
    repeats = [np.array(v) for v in by_task.values() if len(v) > 1]
    dof = sum(len(v) - 1 for v in repeats)
    return float(np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in repeats) / dof)) if dof else float("nan")


def task_returns(rollouts: Sequence[Sequence[TaskRollout]]) -> List[Dict[str, Any]]:
    """One row per task: ``task_index``, ``group``, ``task``, and per adaptation step its
    mean episode return (``returns``), episode count (``episodes``) and the standard error
    of that mean across its episodes (``stderr``, NaN for one episode)."""
    return [
        {
            "task_index": steps[0].task_index,
            "group": steps[0].group,
            "task": steps[0].task,
            "returns": [float(r.episode_returns.mean()) for r in steps],
            "episodes": [len(r.episode_lens) for r in steps],
            "stderr": [stderr(r.episode_returns) for r in steps],
        }
        for steps in rollouts
    ]


def runner_stats(rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
    """``env_runners/episode_return_mean`` (and ``_len_mean``): the meta-policy's own, pre-adaptation episodes."""
    pre_adaptation = [task_rollouts[0] for task_rollouts in rollouts]
    return {
        EPISODE_RETURN_MEAN: mean_return(pre_adaptation),
        EPISODE_LEN_MEAN: float(np.mean(np.concatenate([r.episode_lens for r in pre_adaptation]))),
    }


def sample_counts(rollouts: Sequence[Sequence[TaskRollout]]) -> Tuple[int, int]:
    """(env steps, episodes) over every adaptation step's samples: they are all paid for.

    The env steps include those of dropped, unfinished episodes
    (``TaskRollout.num_dropped_env_steps``): the simulator ran them.
    """
    all_rollouts: List[TaskRollout] = [r for task_rollouts in rollouts for r in task_rollouts]
    env_steps = sum(r.num_env_steps + r.num_dropped_env_steps for r in all_rollouts)
    return env_steps, sum(len(r.episode_lens) for r in all_rollouts)
