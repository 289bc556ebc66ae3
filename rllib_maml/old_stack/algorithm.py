"""What :class:`rllib_maml.MAML` needs only on RLlib's old API stack: its policy class,
its checkpoint state and its results glue. Deleting the old stack removes this mixin."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, Iterator, Optional, Sequence, Type

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.policy.policy import Policy
from ray.rllib.policy.sample_batch import DEFAULT_POLICY_ID
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_TRAINED,
    NUM_EPISODES,
    TIMERS,
)
from ray.rllib.utils.metrics.learner_info import LEARNER_STATS_KEY

from rllib_maml.algorithm.metrics import MAML_RESULTS, adaptation_metrics, runner_stats, sample_counts
from rllib_maml.core.data import TaskRollout

class OldStackMAML(Algorithm):
    """The old-stack half of :class:`rllib_maml.MAML`, its base class.

    On the old stack, ``training_step`` returns the learner stats RLlib expects and
    keeps MAML's own results for :meth:`_compile_iteration_results_old_api_stack`,
    which RLlib calls after it; ``__getstate__`` is the old stack's checkpoint state.
    """

    _old_stack_results: Dict[str, Any]
    #: This iteration's ``timers/*`` seconds, reset by ``training_step``: the old stack's
    #: results come from :meth:`_old_stack_iteration_results`, not from ``metrics``.
    _iteration_seconds: Dict[str, float]

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        """Adds the wall time of the block to this iteration's ``timers/<name>`` (seconds)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._iteration_seconds[name] = self._iteration_seconds.get(name, 0.0) + time.perf_counter() - start

    def _with_random_state(self, state: Dict[str, Any]) -> Dict[str, Any]:
        """``state`` plus MAML's generator states (defined by :class:`rllib_maml.MAML`)."""
        raise NotImplementedError

    def _restore_random_state(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    @override(Algorithm)
    def get_default_policy_class(cls, config: AlgorithmConfig) -> Optional[Type[Policy]]:
        from rllib_maml.old_stack.policy import MAMLTorchPolicy

        return MAMLTorchPolicy

    @override(Algorithm)
    def __getstate__(self) -> Dict[str, Any]:
        return self._with_random_state(super().__getstate__())

    @override(Algorithm)
    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self._restore_random_state(state)

    def _old_stack_iteration_results(
        self, rollouts: Sequence[Sequence[TaskRollout]], learner_stats: Dict[str, float], timers: Dict[str, float]
    ) -> Dict[str, Any]:
        """The old stack's counters, and the MAML results that ``_compile_iteration_results_old_api_stack`` adds."""
        env_steps, num_episodes = sample_counts(rollouts)
        for counter in (NUM_ENV_STEPS_SAMPLED, NUM_AGENT_STEPS_SAMPLED):
            self._counters[counter] += env_steps
        # Every step the meta-loss reads: the post-adaptation data of every task.
        self._counters[NUM_ENV_STEPS_TRAINED] += sum(r[-1].num_env_steps for r in rollouts)
        # The new stack's env_runners keys too, so stop criteria carry over between stacks.
        stats: Dict[str, Any] = {
            **runner_stats(rollouts),
            NUM_EPISODES: num_episodes,
            NUM_ENV_STEPS_SAMPLED: env_steps,
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self._counters[NUM_ENV_STEPS_SAMPLED],
        }
        self._old_stack_results = {
            ENV_RUNNER_RESULTS: stats,
            MAML_RESULTS: adaptation_metrics(rollouts),
            TIMERS: timers,  # a fresh dict each iteration (training_step); the meta-test is not timed
        }
        return {DEFAULT_POLICY_ID: {LEARNER_STATS_KEY: learner_stats}}

    @override(Algorithm)
    def _compile_iteration_results_old_api_stack(self, **kwargs: Any) -> Dict[str, Any]:
        results = super()._compile_iteration_results_old_api_stack(**kwargs)
        # RLlib summarises the RolloutWorkers' sampler episodes, which MAML does not use.
        measured = getattr(self, "_old_stack_results", {})
        results[ENV_RUNNER_RESULTS] = {**results[ENV_RUNNER_RESULTS], **measured.get(ENV_RUNNER_RESULTS, {})}
        if MAML_RESULTS in measured:
            results[MAML_RESULTS] = measured[MAML_RESULTS]
        results[TIMERS] = {**results.get(TIMERS, {}), **measured.get(TIMERS, {})}
        return results
