"""The typed seam between :class:`rllib_maml.MAML` and whatever holds theta.

On the new API stack theta lives in the ``MAMLTorchLearner`` (s) of a
``LearnerGroup``; on the old one in the driver's ``MAMLTorchPolicy``. Both expose
the same three update methods (:class:`rllib_maml.core.updater.MAMLUpdaterMethods`).
``MAML.setup`` picks one :class:`ThetaHolder` implementation (``MAML.theta_holder``),
so the stack is checked once and every call site is typed and greppable.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Protocol, Sequence, runtime_checkable

import numpy as np
from ray.rllib.core.learner.learner_group import LearnerGroup

from rllib_maml.core.data import TaskRollout

Weights = Dict[str, np.ndarray]


@runtime_checkable
class ThetaHolder(Protocol):
    """What the algorithm asks of the holder of theta (meta-parameters and meta-optimizer)."""

    def theta_weights(self) -> Weights:
        """A numpy snapshot of theta."""
        ...

    def adapted_weights(self, rollouts: Sequence[Sequence[TaskRollout]]) -> List[Weights]:
        """``theta_i^{j+1}`` for each task ``i`` whose rollouts for steps ``0..j`` are given."""
        ...

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        """The meta-optimizer's update of theta on rollouts labelled ``0..K`` per task; its statistics."""
        ...

    def kl_coeff(self) -> float:
        """The adaptive KL coefficient of the PPO meta-objective (checkpointed with theta)."""
        ...

    def set_meta_lr(self, lr: float) -> None:
        """Sets the meta-optimizer's learning rate (after a restore, which brings the checkpoint's)."""
        ...


class LearnerGroupThetaHolder:
    """Theta in a ``LearnerGroup`` of ``MAMLTorchLearner`` s (new API stack).

    ``meta_update`` runs on every Learner (each on its share of the tasks, the
    gradients all-reduced); every other call asks the first healthy Learner, since
    theta is the same on all.
    """

    def __init__(self, learner_group: LearnerGroup) -> None:
        self._group = learner_group

    def _call(self, fn: Callable[[Any], Any], everywhere: bool = False) -> Any:
        group = self._group
        # The only private LearnerGroup field MAML reads: the healthy remote Learners.
        first_only = None if everywhere or group.is_local else group._worker_manager.healthy_actor_ids()[:1]
        results = group.foreach_learner(fn, remote_actor_ids=first_only)
        return [result.get() for result in results][0]  # .get() raises a Learner's error here

    def theta_weights(self) -> Weights:
        return self._call(lambda learner: learner.theta_weights())

    def adapted_weights(self, rollouts: Sequence[Sequence[TaskRollout]]) -> List[Weights]:
        return self._call(lambda learner: learner.adapted_weights(rollouts))

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        return self._call(lambda learner: learner.meta_update(rollouts), everywhere=True)

    def kl_coeff(self) -> float:
        return float(self._call(lambda learner: learner.maml.kl_coeff))

    def set_meta_lr(self, lr: float) -> None:
        self._call(lambda learner: learner.set_meta_lr(lr), everywhere=True)


class PolicyThetaHolder:
    """Theta in the driver's ``MAMLTorchPolicy`` (old API stack); ``policy`` returns it."""

    def __init__(self, policy: Callable[[], Any]) -> None:
        self._policy = policy  # looked up per call: a restore may replace the local worker's policy

    def theta_weights(self) -> Weights:
        return self._policy().theta_weights()

    def adapted_weights(self, rollouts: Sequence[Sequence[TaskRollout]]) -> List[Weights]:
        return self._policy().adapted_weights(rollouts)

    def meta_update(self, rollouts: Sequence[Sequence[TaskRollout]]) -> Dict[str, float]:
        return self._policy().meta_update(rollouts)

    def kl_coeff(self) -> float:
        return float(self._policy().maml.kl_coeff)

    def set_meta_lr(self, lr: float) -> None:
        self._policy().set_meta_lr(lr)
