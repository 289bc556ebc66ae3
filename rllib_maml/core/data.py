"""Labelled per-task, per-adaptation-step rollout data, from EnvRunner episodes to Learner tensors.

A :class:`TaskRollout` is created on the EnvRunner that sampled it and carries its
``(task_index, step)`` label until the Learner's loss reads it, so the meta-loss can
never pick the wrong adaptation step by slicing a flat array (the bug of RLlib's old
torch MAML).
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from ray.rllib.core.columns import Columns
from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets


@dataclasses.dataclass
class TaskRollout:
    """The episodes of one task at one adaptation step, as flat numpy arrays.

    Shapes (``E`` episodes of lengths ``T_e``, ``N = sum(T_e)`` steps):
        ``obs`` ``[N + E, obs_dim]``: each episode's observations including its final
        one (needed to bootstrap truncated episodes); ``actions`` ``[N, act_dim]``;
        ``logp`` ``[N]`` and ``dist_inputs`` ``[N, k]``: the sampling policy's
        log-probabilities and distribution inputs; ``rewards`` ``[N]``;
        ``episode_lens`` ``[E]``; ``terminated`` ``[E]``.

    ``num_dropped_env_steps`` counts this task's env steps that the sampling call
    simulated but could not return: episodes still running when it had enough
    (RLlib's ``sample(num_episodes=...)`` drops them). They are paid for, so they
    count towards the env-step budget, but they are not learned from.

    ``num_failed_calls`` counts the sampling calls for this task that failed (a runner
    raised, died or timed out) before this one returned it: the task was sampled again,
    never dropped. The failed calls' env steps are unknown (nothing came back), so they
    are not in the budget.
    """

    task_index: int
    step: int
    task: Any
    group: Optional[str]
    obs: np.ndarray
    actions: np.ndarray
    logp: np.ndarray
    dist_inputs: np.ndarray
    rewards: np.ndarray
    episode_lens: np.ndarray
    terminated: np.ndarray
    num_dropped_env_steps: int = 0
    num_failed_calls: int = 0

    @property
    def num_env_steps(self) -> int:
        return int(self.episode_lens.sum())

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, ``[E]``."""
        return np.add.reduceat(self.rewards, np.r_[0, np.cumsum(self.episode_lens)[:-1]])

    @property
    def step_rows(self) -> np.ndarray:
        """Indices into ``obs`` of the rows that have an action (all but each final obs)."""
        ends = np.cumsum(self.episode_lens + 1)
        is_final = np.zeros(len(self.obs), dtype=bool)
        is_final[ends - 1] = True
        return np.flatnonzero(~is_final)

    @classmethod
    def from_episode_columns(
        cls,
        *,
        task_index: int,
        step: int,
        task: Any,
        group: Optional[str],
        obs: Sequence[np.ndarray],
        actions: Sequence[np.ndarray],
        logp: Sequence[np.ndarray],
        dist_inputs: Sequence[np.ndarray],
        rewards: Sequence[np.ndarray],
        terminated: Sequence[bool],
        num_dropped_env_steps: int = 0,
    ) -> "TaskRollout":
        """Concatenates per-episode columns (episode ``e``: ``obs[e]`` ``[T_e + 1, ...]``,
        the others ``[T_e, ...]``) of complete episodes of one task."""
        if not len(obs):
            raise ValueError(f"No episodes sampled for task {task_index} at step {step}")

        def cat(columns: Sequence[np.ndarray]) -> np.ndarray:
            return np.concatenate([np.asarray(c, np.float32) for c in columns])

        return cls(
            task_index=task_index,
            step=step,
            task=task,
            group=group,
            obs=cat(obs),
            actions=cat(actions),
            logp=cat(logp),
            dist_inputs=cat(dist_inputs),
            rewards=cat(rewards),
            episode_lens=np.asarray([len(r) for r in rewards], dtype=np.int64),
            terminated=np.asarray(terminated, dtype=bool),
            num_dropped_env_steps=int(num_dropped_env_steps),
        )

    @classmethod
    def from_episodes(
        cls,
        episodes: Sequence[Any],
        *,
        task_index: int,
        step: int,
        task: Any,
        group: Optional[str],
        num_dropped_env_steps: int = 0,
    ) -> "TaskRollout":
        """Flattens RLlib ``SingleAgentEpisode``s (complete episodes of one task)."""
        return cls.from_episode_columns(
            task_index=task_index,
            step=step,
            task=task,
            group=group,
            obs=[e.get_observations() for e in episodes],
            actions=[e.get_actions() for e in episodes],
            logp=[e.get_extra_model_outputs(Columns.ACTION_LOGP) for e in episodes],
            dist_inputs=[e.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS) for e in episodes],
            rewards=[e.get_rewards() for e in episodes],
            terminated=[e.is_terminated for e in episodes],
            num_dropped_env_steps=num_dropped_env_steps,
        )


class NonFiniteDataError(ValueError):
    """Sampled data, adapted weights or a loss held NaN or infinity; MAML stops rather than train on it."""


def _first_row(bad_rows: np.ndarray, rows_per_episode: np.ndarray) -> tuple[int, int]:
    """(episode, time step) of the first flagged row, rows laid out episode after episode."""
    first = int(np.flatnonzero(bad_rows)[0])
    starts = np.r_[0, np.cumsum(rows_per_episode)[:-1]]
    episode = int(np.searchsorted(starts, first, side="right") - 1)
    return episode, first - int(starts[episode])


def nonfinite_report(rollout: "TaskRollout") -> Optional[str]:
    """Describes the non-finite rewards or observations of ``rollout`` (None when all are finite).

    Names the field, how many values, and the episode and time step of the first one.
    """
    columns = (("rewards", rollout.rewards, rollout.episode_lens), ("observations", rollout.obs, rollout.episode_lens + 1))
    for name, values, rows_per_episode in columns:
        rows = values.reshape(len(values), -1)
        bad = ~np.isfinite(rows)
        if bad.any():
            bad_rows = bad.any(axis=1)
            episode, t = _first_row(bad_rows, rows_per_episode)
            first = rows[bad_rows][0]
            return (
                f"{int(bad.sum())} non-finite {name} (the first, {first.tolist() if first.size > 1 else first.item()}, "
                f"in episode {episode} at t={t})"
            )
    return None


@dataclasses.dataclass
class TaskBatch:
    """Learner-side tensors of one :class:`TaskRollout`, with GAE advantages.

    All tensors have ``N`` rows (one per env step); advantages are standardised.
    """

    task_index: int
    step: int
    obs: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    dist_inputs_old: torch.Tensor
    advantages: torch.Tensor
    value_targets: torch.Tensor


def value_targets_and_advantages(
    rollout: TaskRollout, values: np.ndarray, gamma: float, lambda_: float
) -> tuple[np.ndarray, np.ndarray]:
    """GAE over ``rollout`` given value predictions ``values`` ``[N + E]`` for all its obs.

    Uses RLlib's own ``compute_value_targets`` with its one-extra-timestep
    convention (``AddOneTsToEpisodesAndTruncate``): each episode's final observation
    row ``s_T`` is the extra step, and the episode's last *real* step ``T - 1``
    carries the boundary flag. There ``terminated`` drops the bootstrap (0) and
    ``truncated`` keeps ``V(s_T)`` but stops GAE from running into the next
    episode. (Flagging the extra row instead lets ``T - 1`` bootstrap from the
    *next* episode's first observation.) Returns ``(value_targets [N], advantages [N])``.
    """
    n_rows = len(rollout.obs)
    final_rows = np.cumsum(rollout.episode_lens + 1) - 1
    last_steps = final_rows - 1
    rewards = np.zeros(n_rows, np.float32)
    terminateds = np.zeros(n_rows, np.float32)
    truncateds = np.zeros(n_rows, np.float32)
    rows = rollout.step_rows
    rewards[rows] = rollout.rewards
    terminateds[last_steps] = rollout.terminated.astype(np.float32)
    truncateds[last_steps] = 1.0 - rollout.terminated.astype(np.float32)
    # The extra rows are no steps: never a source of propagation either way.
    truncateds[final_rows] = 1.0
    targets = compute_value_targets(values, rewards, terminateds, truncateds, gamma, lambda_)
    return targets[rows], targets[rows] - values[rows]


def discounted_returns(rollout: TaskRollout, gamma: float) -> np.ndarray:
    """Each step's discounted reward-to-go within its episode, ``[N]`` (no bootstrap)."""
    returns = np.zeros(rollout.num_env_steps, np.float64)
    end = 0
    for length in rollout.episode_lens:
        start, end = end, end + int(length)
        running = 0.0
        for t in range(end - 1, start - 1, -1):
            running = rollout.rewards[t] + gamma * running
            returns[t] = running
    return returns


def linear_baseline_features(rollout: TaskRollout) -> np.ndarray:
    """``[N + E, 2 * obs_dim + 4]`` features of every obs row: ``o, o^2, t, t^2, t^3, 1``.

    As ProMP's ``LinearFeatureBaseline`` (and garage's, pytorch-maml-rl's, learn2learn's
    ``LinearValue``): observations clipped to [-10, 10], ``t`` = time step / 100.
    """
    obs = np.clip(rollout.obs.reshape(len(rollout.obs), -1).astype(np.float64), -10.0, 10.0)
    t = np.concatenate([np.arange(length + 1) for length in rollout.episode_lens])[:, None] / 100.0
    return np.concatenate([obs, obs**2, t, t**2, t**3, np.ones_like(t)], axis=1)


def linear_baseline_values(rollout: TaskRollout, gamma: float, reg_coeff: float = 1e-5) -> np.ndarray:
    """Values ``[N + E]`` of a linear feature baseline fitted to ``rollout``'s own returns.

    Regularised least squares, the regulariser raised tenfold until the solution is
    finite (as ProMP's ``fit``). Fitted per task and adaptation step on the batch it serves.
    """
    features = linear_baseline_features(rollout)
    steps = features[rollout.step_rows]
    returns = discounted_returns(rollout, gamma)
    gram, target = steps.T @ steps, steps.T @ returns
    for _ in range(5):
        coefficients = np.linalg.lstsq(gram + reg_coeff * np.eye(len(gram)), target, rcond=-1)[0]
        if np.all(np.isfinite(coefficients)):
            break
        reg_coeff *= 10.0
    return (features @ coefficients).astype(np.float32)


def standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / max(float(x.std()), 1e-8)


def task_batch(
    rollout: TaskRollout, values: np.ndarray, gamma: float, lambda_: float, device: Optional[torch.device] = None
) -> TaskBatch:
    """Builds the Learner's :class:`TaskBatch` (on ``device``) from a rollout and the value
    predictions of the parameters that sampled it (``values`` ``[N + E]``)."""
    targets, advantages = value_targets_and_advantages(rollout, values, gamma, lambda_)

    def as_tensor(array: np.ndarray) -> torch.Tensor:  # a copy: arrays from Ray's object store are read-only
        return torch.tensor(array, device=device)

    return TaskBatch(
        task_index=rollout.task_index,
        step=rollout.step,
        obs=as_tensor(rollout.obs[rollout.step_rows]),
        actions=as_tensor(rollout.actions),
        logp_old=as_tensor(rollout.logp),
        dist_inputs_old=as_tensor(rollout.dist_inputs),
        advantages=as_tensor(standardize(advantages).astype(np.float32)),
        value_targets=as_tensor(targets.astype(np.float32)),
    )


def mean_return(rollouts: List[TaskRollout]) -> float:
    """Mean undiscounted episode return over all episodes of ``rollouts``."""
    return float(np.concatenate([r.episode_returns for r in rollouts]).mean())
