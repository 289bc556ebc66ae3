"""``MAML``: the Algorithm. Its ``training_step`` only coordinates runners and Learner."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np
import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.policy.policy import Policy
from ray.rllib.policy.sample_batch import DEFAULT_POLICY_ID
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_LEN_MEAN,
    EPISODE_RETURN_MEAN,
    LEARNER_RESULTS,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_TRAINED,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    TIMERS,
)
from ray.rllib.utils.metrics.learner_info import LEARNER_STATS_KEY

from rllib_maml.maml_config import MAMLConfig
from rllib_maml.rollouts import NonFiniteDataError, TaskRollout, mean_return, nonfinite_report
from rllib_maml.maml_env_runner import SamplingJob, sample_jobs_on_runner
from rllib_maml.runner_hooks import sample_task_on_rollout_worker
from rllib_maml.held_out import held_out_tasks
from rllib_maml.task_env import make_task_env
from rllib_maml.theta_holder import LearnerGroupThetaHolder, PolicyThetaHolder, ThetaHolder

logger = logging.getLogger(__name__)

MAML_RESULTS = "maml"
#: ``timers/*`` keys: seconds of this iteration spent sampling (all adaptation steps),
#: computing the adapted weights, and in the meta-update.
SAMPLING_TIMER = "maml_sampling_s"
INNER_STEPS_TIMER = "maml_inner_steps_s"
META_UPDATE_TIMER = "maml_meta_update_s"
#: Checkpoint-state key of the task stream's and reset seeds' generator states.
RANDOM_STATE_KEY = "maml_random_state"
#: How often one adaptation round may lose runners before the iteration fails.
MAX_SAMPLING_RETRIES = 3
#: How often to log while waiting for failed EnvRunners to be restarted.
RESTART_PROGRESS_EVERY_S = 30.0


def adaptation_metrics(rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, Any]:
    """Mean returns per adaptation step, ``adaptation_delta`` and, for grouped tasks, ``per_task``.

    ``rollouts[i][k]`` is task ``i`` at step ``k``. Key ``episode_return_mean_adapt_0``
    is before adaptation, ``..._adapt_k`` after ``k`` inner steps.
    """
    num_steps = len(rollouts[0])

    def curve(task_rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        means = [mean_return([r[k] for r in task_rollouts]) for k in range(num_steps)]
        out = {f"episode_return_mean_adapt_{k}": m for k, m in enumerate(means)}
        out["adaptation_delta"] = means[-1] - means[0]
        return out

    metrics = curve(rollouts)
    groups = sorted({r[0].group for r in rollouts if r[0].group is not None})
    if groups:
        metrics["per_task"] = {g: curve([r for r in rollouts if r[0].group == g]) for g in groups}
    return metrics


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


class MAML(Algorithm):
    """Model-Agnostic Meta-Learning (Finn et al., 2017) with PPO inner loops.

    One iteration (``training_step``):

    1. sample ``meta_batch_size`` tasks from the env's task distribution;
    2. sample ``episodes_per_task`` episodes per task with theta (step 0): each
       runner samples its share of the tasks in one call, one task per sub-env
       (:class:`~rllib_maml.maml_env_runner.MAMLEnvRunner`);
    3. for ``k = 1..inner_adaptation_steps``: the Learner computes ``theta'_i`` (one
       more inner step on task ``i``'s latest data, all tasks batched), and the
       runners sample step ``k``, each task with its own ``theta'_i``;
    4. the Learner runs ``maml_optimizer_steps`` Adam steps on the meta-loss (PPO
       clip loss of step ``K`` data under ``theta'_i(theta)``, recomputed
       differentiably from steps ``0..K-1``, plus a KL penalty); theta is synced to
       all runners.

    Both RLlib API stacks are supported, chosen by ``config.api_stack(...)`` as for
    PPO: on the new stack (the default) a :class:`~rllib_maml.MAMLTorchLearner` runs
    the update and ``SingleAgentEnvRunner`` s sample; on the old stack the driver's
    :class:`~rllib_maml.MAMLTorchPolicy` runs it and ``RolloutWorker`` s sample.
    Results, ``evaluate_adaptation`` and checkpoints behave alike on both.

    Results: ``env_runners/episode_return_mean`` is the pre-adaptation return;
    ``maml/episode_return_mean_adapt_{k}`` (k = 0..K) and ``maml/adaptation_delta``
    give the adaptation curve. ``evaluate_adaptation`` measures it on fresh or given
    tasks without changing theta.

    Public handles for scripts, benchmarks and tests (each one step of the iteration):
    :meth:`sample_tasks`, :meth:`sample_on_runners` (one adaptation step's sampling),
    :meth:`sample_adaptation` / :meth:`adapt_and_sample` (all steps, with the inner
    updates), and :attr:`theta_holder` (theta's snapshot, inner and meta-update).
    """

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> AlgorithmConfig:
        return MAMLConfig()

    @classmethod
    @override(Algorithm)
    def get_default_policy_class(cls, config: AlgorithmConfig) -> Optional[Type[Policy]]:
        from rllib_maml.maml_torch_policy import MAMLTorchPolicy

        return MAMLTorchPolicy

    @property
    def _old_api_stack(self) -> bool:
        return not self.config.enable_env_runner_and_connector_v2

    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        # Check the task interface here, on the driver, before any worker starts.
        self._task_env = make_task_env(config)
        self._task_env.reset(seed=config.seed)
        # Seeds of the sub-envs' first reset in each sampling call: fresh initial states
        # every call, yet the whole run reproducible from config.seed.
        self._reset_seeds = np.random.default_rng(config.seed)
        self._iteration_seconds: Dict[str, float] = {}
        # Old stack: what training_step measured, for _compile_iteration_results_old_api_stack.
        self._old_stack_results: Dict[str, Any] = {}
        super().setup(config)
        # Whatever holds theta (theta's snapshot, inner and meta-update): the stack is checked here, once.
        self.theta_holder: ThetaHolder = (
            PolicyThetaHolder(self.get_policy) if self._old_api_stack else LearnerGroupThetaHolder(self.learner_group)
        )

    # --- checkpoint state ----------------------------------------------------------
    def _random_state(self) -> Dict[str, Any]:
        """The task stream's and the reset seeds' generator states, so a restored run
        draws the tasks and start states it would have drawn, not the first ones again."""
        return {
            "tasks": self._task_env.unwrapped.np_random.bit_generator.state,
            "reset_seeds": self._reset_seeds.bit_generator.state,
        }

    def _set_random_state(self, state: Optional[Dict[str, Any]]) -> None:
        if state:
            self._task_env.unwrapped.np_random.bit_generator.state = state["tasks"]
            self._reset_seeds.bit_generator.state = state["reset_seeds"]

    @override(Algorithm)
    def get_state(self, components: Any = None, *, not_components: Any = None, **kwargs: Any) -> Dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        state[RANDOM_STATE_KEY] = self._random_state()
        return state

    @override(Algorithm)
    def set_state(self, state: Dict[str, Any]) -> None:
        super().set_state(state)
        self._set_random_state(state.get(RANDOM_STATE_KEY))

    @override(Algorithm)
    def __getstate__(self) -> Dict[str, Any]:  # the old stack's checkpoint state
        state = super().__getstate__()
        state[RANDOM_STATE_KEY] = self._random_state()
        return state

    @override(Algorithm)
    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self._set_random_state(state.get(RANDOM_STATE_KEY))

    # --- coordination ------------------------------------------------------------
    def sample_tasks(self, num_tasks: int) -> List[Any]:
        """Draws ``num_tasks`` tasks from the env's distribution (seeded by ``config.seed``)."""
        tasks = list(self._task_env.unwrapped.sample_tasks(num_tasks))
        if len(tasks) != num_tasks:
            raise ValueError(
                f"config.env={self.config.env!r}: sample_tasks({num_tasks}) returned {len(tasks)} tasks; "
                "it must return exactly the number asked for."
            )
        return tasks

    def sample_on_runners(self, tasks: Sequence[Any], weights: Sequence[Dict[str, np.ndarray]], step: int) -> List[TaskRollout]:
        """Samples every task at adaptation step ``step`` on the runners.

        New stack: each runner gets an equal share of the tasks and samples all of
        them in one call (:class:`~rllib_maml.maml_env_runner.MAMLEnvRunner`, one task
        per sub-env). Old stack: one task per RolloutWorker at a time, in rounds.

        The tasks of a runner that fails (raises, dies or exceeds ``sample_timeout_s``)
        are sampled again once RLlib has restarted it (or on another healthy one);
        after ``MAX_SAMPLING_RETRIES`` failures the iteration raises, naming the tasks,
        so no task's data is silently dropped.
        """
        jobs = [SamplingJob(task_index=i, step=step, task=task, weights=w) for i, (task, w) in enumerate(zip(tasks, weights))]
        rollouts: Dict[int, TaskRollout] = {}
        pending = list(range(len(tasks)))
        failures = 0
        while pending:
            runner_ids = self._healthy_runner_ids()
            if self._old_api_stack:
                shares = [[i] for i in pending[: len(runner_ids)]]
            else:
                shares = [share.tolist() for share in np.array_split(pending, len(runner_ids)) if len(share)]
            calls = [
                functools.partial(
                    _sample_share,
                    jobs=[jobs[i] for i in share],
                    num_episodes=self.config.episodes_per_task,
                    # Room below 2**31 for the runner's per-round and per-sub-env offsets.
                    reset_seed=int(self._reset_seeds.integers(0, 2**31 - 2**20)),
                    old_api_stack=self._old_api_stack,
                )
                for share in shares
            ]
            if runner_ids == [None]:
                results = [call(self.env_runner) for call in calls]
            else:
                # A bounded wait: a runner that hangs (e.g. while Ray restarts it) counts as failed.
                results = self.env_runner_group.foreach_env_runner(
                    calls,
                    local_env_runner=False,
                    remote_worker_ids=runner_ids[: len(calls)],
                    timeout_seconds=self.config.sample_timeout_s,
                )
            for result in results:
                for rollout in result if isinstance(result, list) else []:
                    rollouts[rollout.task_index] = rollout
            attempted = [i for share in shares for i in share]
            pending = [i for i in pending if i not in attempted]
            lost = [i for i in attempted if i not in rollouts]
            if lost:
                failures += 1
                if failures > MAX_SAMPLING_RETRIES:
                    raise RuntimeError(
                        f"Sampling tasks {lost} at adaptation step {step} failed {failures} times; giving up."
                    )
                failed_runners = sorted({runner_ids[k] for k, share in enumerate(shares) if set(share) & set(lost)})
                logger.warning(
                    "EnvRunners %s failed on tasks %s (step %d); resampling them once the runners are back.",
                    failed_runners, lost, step,
                )
                self._take_out_of_service(failed_runners)
                pending = lost + pending
        for i, task in enumerate(tasks):
            self._check_finite(rollouts[i], task)
        return [rollouts[i] for i in range(len(tasks))]

    def _check_finite(self, rollout: TaskRollout, task: Any) -> None:
        """Stops before any Learner sees NaN or infinite rewards or observations, naming where they came from."""
        report = nonfinite_report(rollout)
        if report is not None:
            raise NonFiniteDataError(
                f"config.env={self.config.env!r} returned {report} on task {rollout.task_index} ({task!r}) at "
                f"adaptation step {rollout.step}; MAML stops instead of training on them."
            )

    def _take_out_of_service(self, runner_ids: Sequence[Optional[int]]) -> None:
        """Marks failed runners unhealthy, so that only a successful ping after their restart
        brings them back, and restarts hung ones.

        A runner whose call raised is marked unhealthy by RLlib, and RLlib's ``apply()``
        ends its process after ``delay_between_env_runner_restarts_s`` for Ray to restart.
        A runner whose call exceeded ``sample_timeout_s`` is still marked healthy and may
        never return, so it is killed for Ray to restart (when restarts are enabled).
        """
        # No public EnvRunnerGroup API for either step in Ray 2.60; the actor manager is a DeveloperAPI.
        manager = self.env_runner_group._worker_manager
        for runner_id in (i for i in runner_ids if i is not None):
            if manager.is_actor_healthy(runner_id) and self.config.restart_failed_env_runners:
                ray.kill(manager._actors[runner_id], no_restart=False)
            manager.set_actor_state(runner_id, healthy=False)

    def _healthy_runner_ids(self) -> List[Optional[int]]:
        """Remote runners to sample on (waiting for restarted ones), or ``[None]`` for the local one."""
        group = self.env_runner_group
        if group.num_remote_env_runners() == 0:
            return [None]
        runner_ids = group.healthy_worker_ids()
        if runner_ids:
            return runner_ids
        if not self.config.restart_failed_env_runners:
            raise RuntimeError(
                "No healthy EnvRunner left; enable config.fault_tolerance(restart_failed_env_runners=True) "
                "to have failed ones restarted."
            )
        timeout = self.config.env_runner_restore_timeout_s
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
                    waited, self.config.delay_between_env_runner_restarts_s,
                )
            self.restore_env_runners(group)
            runner_ids = group.healthy_worker_ids()
            if not runner_ids:
                time.sleep(1.0)
        return runner_ids

    def sample_adaptation(self, tasks: Sequence[Any], num_steps: int) -> List[List[TaskRollout]]:
        """``rollouts[i][k]``: task ``i`` sampled after ``k`` inner steps, for k = 0..num_steps."""
        return self.adapt_and_sample(tasks, num_steps)[0]

    def adapt_and_sample(
        self, tasks: Sequence[Any], num_steps: int
    ) -> Tuple[List[List[TaskRollout]], List[Sequence[Dict[str, np.ndarray]]]]:
        """The rollouts of :meth:`sample_adaptation` and the weights that sampled them:
        ``weights[k][i]`` acted on task ``i`` at step ``k`` (theta at ``k = 0``)."""
        theta = self.theta_holder.theta_weights()
        weights: List[Sequence[Dict[str, np.ndarray]]] = [[theta] * len(tasks)]
        rollouts: List[List[TaskRollout]] = [[] for _ in tasks]
        for step in range(num_steps + 1):
            if step > 0:
                with self._timed(INNER_STEPS_TIMER):
                    weights.append(self.theta_holder.adapted_weights(rollouts))
            with self._timed(SAMPLING_TIMER):
                for rollout in self.sample_on_runners(tasks, weights[step], step):
                    rollouts[rollout.task_index].append(rollout)
        return rollouts, weights

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        """Adds the wall time of the block to this iteration's ``timers/<name>`` (seconds)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._iteration_seconds[name] = self._iteration_seconds.get(name, 0.0) + time.perf_counter() - start

    def _sync_theta_to_runners(self) -> None:
        if self._old_api_stack:
            # From the driver's local worker, whose policy holds theta.
            self.env_runner_group.sync_weights()
        else:
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

    # --- the iteration -------------------------------------------------------------
    @override(Algorithm)
    def training_step(self) -> Optional[Dict[str, Any]]:
        cfg = self.config
        self._iteration_seconds = {}
        tasks = self.sample_tasks(cfg.meta_batch_size)
        rollouts = self.sample_adaptation(tasks, cfg.inner_adaptation_steps)
        with self._timed(META_UPDATE_TIMER):
            learner_stats = self.theta_holder.meta_update(rollouts)
        self._sync_theta_to_runners()
        if self._old_api_stack:
            return self._old_stack_iteration_results(rollouts, learner_stats)
        self._log_iteration(rollouts, learner_stats)
        return None

    @staticmethod
    def _runner_stats(rollouts: List[List[TaskRollout]]) -> Dict[str, float]:
        """env_runners/episode_return_mean is the meta-policy's own (pre-adaptation) return."""
        pre_adaptation = [task_rollouts[0] for task_rollouts in rollouts]
        return {
            EPISODE_RETURN_MEAN: mean_return(pre_adaptation),
            EPISODE_LEN_MEAN: float(np.mean(np.concatenate([r.episode_lens for r in pre_adaptation]))),
        }

    @staticmethod
    def _sample_counts(rollouts: List[List[TaskRollout]]) -> tuple[int, int]:
        """(env steps, episodes) over every adaptation step's samples: they are all paid for."""
        all_rollouts = [r for task_rollouts in rollouts for r in task_rollouts]
        return sum(r.num_env_steps for r in all_rollouts), sum(len(r.episode_lens) for r in all_rollouts)

    def _log_iteration(self, rollouts: List[List[TaskRollout]], learner_stats: Dict[str, float]) -> None:
        env_steps, num_episodes = self._sample_counts(rollouts)
        for key, value in self._runner_stats(rollouts).items():
            self.metrics.log_value((ENV_RUNNER_RESULTS, key), value, window=1)
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED), env_steps, reduce="sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), env_steps, reduce="lifetime_sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_EPISODES), num_episodes, reduce="sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_EPISODES_LIFETIME), num_episodes, reduce="lifetime_sum")
        for key, value in learner_stats.items():
            self.metrics.log_value((LEARNER_RESULTS, key), value, window=1)
        for key, value in self._iteration_seconds.items():
            self.metrics.log_value((TIMERS, key), value, window=1)
        self._log_nested((MAML_RESULTS,), adaptation_metrics(rollouts))

    def _old_stack_iteration_results(self, rollouts: List[List[TaskRollout]], learner_stats: Dict[str, float]) -> Dict[str, Any]:
        """The old stack's counters, and the MAML results that ``_compile_iteration_results_old_api_stack`` adds."""
        env_steps, num_episodes = self._sample_counts(rollouts)
        for counter in (NUM_ENV_STEPS_SAMPLED, NUM_AGENT_STEPS_SAMPLED):
            self._counters[counter] += env_steps
        # Every step the meta-loss reads: the post-adaptation data of every task.
        self._counters[NUM_ENV_STEPS_TRAINED] += sum(r[-1].num_env_steps for r in rollouts)
        # The new stack's env_runners keys too, so stop criteria carry over between stacks.
        runner_stats = {
            **self._runner_stats(rollouts),
            NUM_EPISODES: num_episodes,
            NUM_ENV_STEPS_SAMPLED: env_steps,
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self._counters[NUM_ENV_STEPS_SAMPLED],
        }
        self._old_stack_results = {
            ENV_RUNNER_RESULTS: runner_stats,
            MAML_RESULTS: adaptation_metrics(rollouts),
            # A copy: a held-out evaluation after training_step adds to _iteration_seconds.
            TIMERS: dict(self._iteration_seconds),
        }
        return {DEFAULT_POLICY_ID: {LEARNER_STATS_KEY: learner_stats}}

    @override(Algorithm)
    def _compile_iteration_results_old_api_stack(self, **kwargs: Any) -> Dict[str, Any]:
        results = super()._compile_iteration_results_old_api_stack(**kwargs)
        # RLlib summarises the RolloutWorkers' sampler episodes, which MAML does not use.
        measured = self._old_stack_results
        results[ENV_RUNNER_RESULTS] = {**results[ENV_RUNNER_RESULTS], **measured.get(ENV_RUNNER_RESULTS, {})}
        if MAML_RESULTS in measured:
            results[MAML_RESULTS] = measured[MAML_RESULTS]
        results[TIMERS] = {**results.get(TIMERS, {}), **measured.get(TIMERS, {})}
        return results

    def _log_nested(self, prefix: tuple, values: Dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                self._log_nested(prefix + (key,), value)
            else:
                self.metrics.log_value(prefix + (key,), value, window=1)

    # --- meta-test -----------------------------------------------------------------
    @classmethod
    @override(Algorithm)
    def _should_create_evaluation_env_runners(cls, eval_config: AlgorithmConfig) -> bool:
        # MAML's meta-test adapts on the training runners (evaluate()); RLlib's own
        # evaluation runners would only sit idle.
        return False

    @override(Algorithm)
    def evaluate(self, parallel_train_future: Any = None) -> Dict[str, Any]:
        """RLlib's periodic evaluation (``config.evaluation(evaluation_interval=N)``): the meta-test.

        Every ``N`` iterations, theta is adapted ``evaluation_adaptation_steps`` inner
        steps on the same ``evaluation_num_tasks`` held-out tasks (drawn once, with
        ``evaluation_task_seed``, from a fresh env: never the training stream).
        Reported as ``evaluation/maml/episode_return_mean_adapt_{k}`` and
        ``evaluation/maml/adaptation_delta``, so Tune and TensorBoard show the
        held-out adaptation curve against env steps. Theta is unchanged.
        """
        cfg = self.config
        if getattr(self, "_evaluation_tasks", None) is None:
            self._evaluation_tasks = held_out_tasks(cfg, cfg.evaluation_num_tasks, cfg.evaluation_task_seed)
        steps = cfg.evaluation_adaptation_steps
        curve = self.evaluate_adaptation(tasks=self._evaluation_tasks, num_steps=cfg.inner_adaptation_steps if steps is None else steps)
        return {MAML_RESULTS: curve}

    def evaluate_adaptation(
        self, num_tasks: int = 10, num_steps: int = 1, tasks: Optional[Sequence[Any]] = None
    ) -> Dict[str, Any]:
        """Adapts copies of theta to tasks and returns the mean return after each inner step.

        Args:
            num_tasks: how many fresh tasks to draw (ignored when ``tasks`` is given).
            num_steps: inner adaptation steps (>= 0); each is followed by sampling.
            tasks: fixed tasks (e.g. a held-out set) to evaluate on instead.

        Returns:
            ``{"episode_return_mean_adapt_{k}": ..., "adaptation_delta": ...}`` as in the
            training results (plus ``per_task`` for grouped tasks). Theta is unchanged.
        """
        if num_steps < 0 or (tasks is None and num_tasks < 1):
            raise ValueError(f"evaluate_adaptation needs num_steps >= 0 and num_tasks >= 1, got {num_steps}, {num_tasks}")
        tasks = list(tasks) if tasks is not None else self.sample_tasks(num_tasks)
        if not tasks:
            raise ValueError("evaluate_adaptation got an empty task list")
        try:
            rollouts = self.sample_adaptation(tasks, num_steps)
        finally:
            self._sync_theta_to_runners()
        return adaptation_metrics(rollouts)
