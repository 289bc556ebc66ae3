"""Driver-side sampling: one adaptation step of every task on the EnvRunners, and the
fault handling around it. The only module that reads ``EnvRunnerGroup`` internals."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import ray
from ray.rllib.algorithms.algorithm import Algorithm

from rllib_maml.algorithm.env_runner import SamplingJob, episodes_per_sub_env, sample_jobs_on_runner
from rllib_maml.core.data import NonFiniteDataError, TaskRollout, nonfinite_report
from rllib_maml.old_stack.sampler import sample_task_on_rollout_worker

logger = logging.getLogger(__name__)

#: How often one adaptation round may lose runners before the iteration fails.
MAX_SAMPLING_RETRIES = 3
#: How often to log while waiting for failed EnvRunners to be restarted.
RESTART_PROGRESS_EVERY_S = 30.0


def _sample_share(
    runner: Any, *, jobs: List[SamplingJob], num_episodes: int, reset_seed: int, old_api_stack: bool
) -> List[TaskRollout]:
    """Runs on one runner's process: its share of the jobs (old stack: exactly one)."""
    if old_api_stack:
        (job,) = jobs
        return [
            sample_task_on_rollout_worker(
                runner, task_index=job.task_index, step=job.step, task=job.task, weights=job.weights,
                num_episodes=num_episodes, reset_seed=reset_seed,
            )
        ]
    return sample_jobs_on_runner(runner, jobs=jobs, num_episodes=num_episodes, reset_seed=reset_seed)


def call_timeout_s(config: Any, num_tasks: int) -> Optional[float]:
    """How long one runner's call for ``num_tasks`` tasks may take: ``sample_timeout_s``
    per episode that each sub-env runs in it (:func:`episodes_per_sub_env`; ``None``: no limit).

    A held-out test of 40 tasks runs several episodes per sub-env where a training step
    of 10 runs one; a fixed limit would fail the larger call on a merely busy machine.
    """
    if config.sample_timeout_s is None:
        return None
    width = max(1, config.num_envs_per_env_runner)
    return float(config.sample_timeout_s) * episodes_per_sub_env(num_tasks, config.episodes_per_task, width)


def sample_on_runners(
    algo: Algorithm,
    tasks: Sequence[Any],
    weights: Sequence[Dict[str, np.ndarray]],
    step: int,
    reset_seeds: np.random.Generator,
) -> List[TaskRollout]:
    """Samples every task at adaptation step ``step`` on ``algo``'s runners, task ``i``
    acting with ``weights[i]``; ``reset_seeds`` draws each call's sub-env reset seed.

    New stack: each runner gets an equal share of the tasks and samples all of
    them in one call (:class:`~rllib_maml.algorithm.env_runner.MAMLEnvRunner`, one task
    per sub-env). Old stack: one task per RolloutWorker at a time, in rounds.

    The tasks of a runner that fails (raises, dies or exceeds :func:`call_timeout_s`)
    are sampled again once RLlib has restarted it (or on another healthy one);
    after ``MAX_SAMPLING_RETRIES`` failures the iteration raises, naming the tasks,
    so no task's data is silently dropped.
    """
    old_api_stack = not algo.config.enable_env_runner_and_connector_v2
    jobs = [SamplingJob(task_index=i, step=step, task=task, weights=w) for i, (task, w) in enumerate(zip(tasks, weights))]
    rollouts: Dict[int, TaskRollout] = {}
    pending = list(range(len(tasks)))
    failures = 0
    failed_calls: Dict[int, int] = {}  # task index -> its failed sampling calls
    while pending:
        runner_ids = healthy_runner_ids(algo)
        if old_api_stack:
            shares = [[i] for i in pending[: len(runner_ids)]]
        else:
            shares = [share.tolist() for share in np.array_split(pending, len(runner_ids)) if len(share)]
        calls = [
            functools.partial(
                _sample_share,
                jobs=[jobs[i] for i in share],
                num_episodes=algo.config.episodes_per_task,
                # Room below 2**31 for the runner's per-round and per-sub-env offsets.
                reset_seed=int(reset_seeds.integers(0, 2**31 - 2**20)),
                old_api_stack=old_api_stack,
            )
            for share in shares
        ]
        if runner_ids == [None]:
            results = [call(algo.env_runner) for call in calls]
        else:
            # A bounded wait: a runner that hangs (e.g. while Ray restarts it) counts as failed.
            results = algo.env_runner_group.foreach_env_runner(
                calls,
                local_env_runner=False,
                remote_worker_ids=runner_ids[: len(calls)],
                timeout_seconds=call_timeout_s(algo.config, max(len(share) for share in shares)),
            )
        for result in results:
            for rollout in result if isinstance(result, list) else []:
                rollouts[rollout.task_index] = rollout
        attempted = [i for share in shares for i in share]
        pending = [i for i in pending if i not in attempted]
        lost = [i for i in attempted if i not in rollouts]
        if lost:
            failures += 1
            for i in lost:
                failed_calls[i] = failed_calls.get(i, 0) + 1
            if failures > MAX_SAMPLING_RETRIES:
                raise RuntimeError(
                    f"Sampling tasks {lost} at adaptation step {step} failed {failures} times; giving up. A runner "
                    f"fails when it raises, dies or takes longer than sample_timeout_s="
                    f"{algo.config.sample_timeout_s} s per episode each of its sub-envs runs; if the runners' logs show no error, "
                    "they were only slow (a busy machine): raise sample_timeout_s."
                )
            failed_runners = sorted({runner_ids[k] for k, share in enumerate(shares) if set(share) & set(lost)})
            logger.warning(
                "EnvRunners %s failed on tasks %s (step %d); resampling them once the runners are back.",
                failed_runners, lost, step,
            )
            take_out_of_service(algo, failed_runners)
            pending = lost + pending
    for i, task in enumerate(tasks):
        check_finite(algo.config, rollouts[i], task)
        rollouts[i].num_failed_calls = failed_calls.get(i, 0)
    return [rollouts[i] for i in range(len(tasks))]


def check_finite(config: Any, rollout: TaskRollout, task: Any) -> None:
    """Stops before any Learner sees NaN or infinite rewards or observations, naming where they came from."""
    report = nonfinite_report(rollout)
    if report is not None:
        raise NonFiniteDataError(
            f"config.env={config.env!r} returned {report} on task {rollout.task_index} ({task!r}) at "
            f"adaptation step {rollout.step}; MAML stops instead of training on them."
        )


def take_out_of_service(algo: Algorithm, runner_ids: Sequence[Optional[int]]) -> None:
    """Marks failed runners unhealthy, so that only a successful ping after their restart
    brings them back, and restarts hung ones.

    A runner whose call raised is marked unhealthy by RLlib, and RLlib's ``apply()``
    ends its process after ``delay_between_env_runner_restarts_s`` for Ray to restart.
    A runner whose call exceeded ``sample_timeout_s`` is still marked healthy and may
    never return, so it is killed for Ray to restart (when restarts are enabled).
    """
    # No public EnvRunnerGroup API for either step in Ray 2.60; the actor manager is a DeveloperAPI.
    manager = algo.env_runner_group._worker_manager
    for runner_id in (i for i in runner_ids if i is not None):
        if manager.is_actor_healthy(runner_id) and algo.config.restart_failed_env_runners:
            ray.kill(manager._actors[runner_id], no_restart=False)
        manager.set_actor_state(runner_id, healthy=False)


def healthy_runner_ids(algo: Algorithm) -> List[Optional[int]]:
    """Remote runners to sample on (waiting for restarted ones), or ``[None]`` for the local one."""
    group = algo.env_runner_group
    if group.num_remote_env_runners() == 0:
        return [None]
    runner_ids = group.healthy_worker_ids()
    if runner_ids:
        return runner_ids
    if not algo.config.restart_failed_env_runners:
        raise RuntimeError(
            "No healthy EnvRunner left; enable config.fault_tolerance(restart_failed_env_runners=True) "
            "to have failed ones restarted."
        )
    timeout = algo.config.env_runner_restore_timeout_s
    start = last_report = time.monotonic()
    while not runner_ids:
        waited = time.monotonic() - start
        if waited > timeout:
            raise RuntimeError(
                f"No EnvRunner came back within env_runner_restore_timeout_s={timeout:.0f}s after failing."
            )
        if time.monotonic() - last_report > RESTART_PROGRESS_EVERY_S:
            last_report = time.monotonic()
            logger.warning(
                "Waiting %.0fs so far for failed EnvRunners to be restarted (RLlib restarts them after "
                "delay_between_env_runner_restarts_s=%.0fs).",
                waited, algo.config.delay_between_env_runner_restarts_s,
            )
        algo.restore_env_runners(group)
        runner_ids = group.healthy_worker_ids()
        if not runner_ids:
            time.sleep(1.0)
    return runner_ids

