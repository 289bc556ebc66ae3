"""``MAMLEnvRunner``: one EnvRunner samples several tasks at once, each with its own weights.

RLlib spreads its cost per vector step over the vector's width, so a runner that
serves one task at a time (its vector no wider than ``episodes_per_task``) leaves
most of the simulator's speed unused. This runner gives every vector sub-env a task
of its own and every batch row that task's (adapted) policy
(:meth:`MAMLTorchRLModule.set_row_weights`), then samples with RLlib's own
``SingleAgentEnvRunner.sample``: env-to-module and module-to-env connectors,
callbacks and metrics all run as usual, and all sub-envs' actions come from one
batched forward pass.

Invariants:
    * every episode belongs to one sub-env, hence one task and one weight version:
      ``sample(num_episodes=...)`` starts all sub-envs from a reset and nothing
      changes a sub-env's task or weights during the call;
    * every returned :class:`TaskRollout` carries its ``(task_index, step)`` label.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.annotations import override
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from rllib_maml.algorithm.vector_env import ListInfoSyncVectorEnv, ListInfoToList
from rllib_maml.core.data import TaskRollout

#: Extra sampling rounds allowed for tasks whose episodes ended early (terminations).
MAX_TOP_UP_ROUNDS = 20


@dataclasses.dataclass
class SamplingJob:
    """One task to sample at one adaptation step, with the weights that act on it."""

    task_index: int
    step: int
    task: Any
    weights: Dict[str, np.ndarray]


def episodes_per_sub_env(num_jobs: int, num_episodes: int, width: int) -> int:
    """How many episodes each of ``width`` sub-envs runs one after another when
    :meth:`MAMLEnvRunner.sample_jobs` samples ``num_episodes`` of each of ``num_jobs`` jobs
    (before any top-up round for episodes that ended early): jobs go in chunks of at
    most ``width``, and a chunk of ``m`` jobs gives each job ``width // m`` sub-envs."""
    return sum(
        math.ceil(num_episodes / (width // min(width, num_jobs - start))) for start in range(0, num_jobs, width)
    )


class MAMLEnvRunner(SingleAgentEnvRunner):
    """A ``SingleAgentEnvRunner`` whose sub-envs serve several MAML tasks in one ``sample`` call.

    :class:`rllib_maml.MAML` calls :meth:`sample_jobs` on each runner with its share
    of the meta-batch. Sub-env ``j`` gets job ``j mod m`` (``m`` jobs at a time, at most
    ``num_envs_per_env_runner``), so with ``n`` sub-envs a job has ``n // m`` or more of
    them and its episodes are sampled in parallel. Requires the ``"sync"`` vector mode
    (the runner sets each sub-env's task directly).

    Two costs that RLlib's runner pays per sub-env and vector step are cut
    (``benchmarks/vector_infos.py`` measures them): the sub-envs' infos reach RLlib as a
    list without gymnasium's pack-and-unpack (:mod:`rllib_maml.algorithm.vector_env`), and
    ``on_episode_step`` is not called where no callback overrides it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._env_index_of_episode: Dict[str, int] = {}
        super().__init__(*args, **kwargs)
        self._listens_to_episode_step = bool(self.config.callbacks_on_episode_step) or any(
            type(callback).on_episode_step is not RLlibCallback.on_episode_step for callback in self._callbacks
        )

    @override(SingleAgentEnvRunner)
    def _make_on_episode_callback(self, which: str, idx: int, episodes: List[SingleAgentEpisode]) -> None:
        # RLlib builds the kwargs of on_episode_step for every sub-env and vector step (100 per
        # step here) even when no callback overrides it; skip only that no-op.
        if which == "on_episode_step" and not getattr(self, "_listens_to_episode_step", True):
            return
        super()._make_on_episode_callback(which, idx, episodes)

    @override(SingleAgentEnvRunner)
    def make_env(self) -> None:
        # RLlib's env, with the sub-env infos passed on as a list instead of packed into
        # arrays and unpacked again (rllib_maml/algorithm/vector_env.py says why).
        super().make_env()
        if isinstance(self.env, DictInfoToList) and type(self.env.env) is SyncVectorEnv:
            self.env = ListInfoToList(ListInfoSyncVectorEnv.around(self.env.env))

    @override(SingleAgentEnvRunner)
    def _new_episode(self, env_index: int, episodes: Optional[List[SingleAgentEpisode]] = None) -> None:
        # RLlib's hook for a sub-env's next episode: remember which sub-env it runs in.
        super()._new_episode(env_index, episodes)
        episodes = episodes if episodes is not None else self._ongoing_episodes
        self._env_index_of_episode[episodes[env_index].id_] = env_index

    def sample_jobs(self, jobs: Sequence[SamplingJob], num_episodes: int, reset_seed: Optional[int]) -> List[TaskRollout]:
        """Samples at least ``num_episodes`` episodes of every job, in as few calls as the width allows.

        ``reset_seed`` seeds the sub-envs' first reset of each call (RLlib would
        reseed them with the same ``config.seed``-derived seed on every call).
        """
        sub_envs = self._sub_envs()
        episodes: Dict[int, List[SingleAgentEpisode]] = defaultdict(list)
        dropped: Dict[int, int] = defaultdict(int)
        width = len(sub_envs)
        for start in range(0, len(jobs), width):
            chunk = list(range(start, min(start + width, len(jobs))))
            for round_index in range(MAX_TOP_UP_ROUNDS + 1):
                short = [i for i in chunk if len(episodes[i]) < num_episodes]
                if not short:
                    break
                if round_index == MAX_TOP_UP_ROUNDS:
                    raise RuntimeError(
                        f"tasks {[jobs[i].task_index for i in short]} still lack episodes after "
                        f"{MAX_TOP_UP_ROUNDS} extra sampling rounds"
                    )
                deficit = max(num_episodes - len(episodes[i]) for i in short)
                seed = None if reset_seed is None else reset_seed + 7919 * (start + round_index)
                grouped, unfinished = self._sample_round([jobs[i] for i in short], deficit, seed)
                for job_index, group in grouped.items():
                    episodes[short[job_index]].extend(group)
                for job_index, steps in unfinished.items():
                    dropped[short[job_index]] += steps
        self.get_metrics()  # MAML reports its own step-labelled metrics; don't let these pile up.
        return [self._rollout(job, episodes[i], dropped[i]) for i, job in enumerate(jobs)]

    def _sample_round(
        self, jobs: Sequence[SamplingJob], num_episodes: int, reset_seed: Optional[int]
    ) -> tuple[Dict[int, List[SingleAgentEpisode]], Dict[int, int]]:
        """One ``sample`` call with sub-env ``j`` on job ``j mod len(jobs)``.

        Returns the finished episodes grouped by job, and per job the env steps of its
        sub-envs' episodes that were still running when the call had enough episodes:
        RLlib drops those, but the simulator ran them.
        """
        sub_envs = self._sub_envs()
        job_of_env = [j % len(jobs) for j in range(len(sub_envs))]
        for env, job_index in zip(sub_envs, job_of_env):
            env.unwrapped.set_task(jobs[job_index].task)
        per_env = episodes_per_sub_env(len(jobs), num_episodes, len(sub_envs))
        module = self.module
        module.set_row_weights([job.weights for job in jobs], job_of_env)
        # SingleAgentEnvRunner resets with self._seed whenever num_episodes is given (Ray 2.60).
        self._seed = reset_seed
        self._env_index_of_episode.clear()
        try:
            sampled = self.sample(num_episodes=per_env * len(sub_envs), explore=True)
        finally:
            module.clear_row_weights()
        grouped: Dict[int, List[SingleAgentEpisode]] = defaultdict(list)
        for episode in sampled:
            grouped[job_of_env[self._env_index_of_episode[episode.id_]]].append(episode)
        unfinished: Dict[int, int] = defaultdict(int)
        # After a sample(num_episodes=...) call, each sub-env's ongoing episode holds the steps it ran
        # since its last finished episode (including one that finished in the last vector step unseen).
        for env_index, episode in enumerate(self._ongoing_episodes):
            unfinished[job_of_env[env_index]] += len(episode)
        return grouped, unfinished

    def _sub_envs(self) -> List[Any]:
        vector_env = self.env.unwrapped
        if not hasattr(vector_env, "envs"):
            raise ValueError(
                "MAMLEnvRunner needs config.env_runners(gym_env_vectorize_mode='sync'): it sets a "
                f"task on each sub-env, which {type(vector_env).__name__} does not expose."
            )
        return list(vector_env.envs)

    def _rollout(self, job: SamplingJob, episodes: Sequence[SingleAgentEpisode], num_dropped: int) -> TaskRollout:
        group = self._sub_envs()[0].unwrapped.task_group(job.task)
        return TaskRollout.from_episodes(
            episodes, task_index=job.task_index, step=job.step, task=job.task, group=group,
            num_dropped_env_steps=num_dropped,
        )


def sample_jobs_on_runner(
    env_runner: MAMLEnvRunner, *, jobs: Sequence[SamplingJob], num_episodes: int, reset_seed: Optional[int]
) -> List[TaskRollout]:
    """What :class:`rllib_maml.MAML` runs on each runner (``foreach_env_runner``)."""
    return env_runner.sample_jobs(jobs, num_episodes, reset_seed)
