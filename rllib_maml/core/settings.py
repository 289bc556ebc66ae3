"""The one hyperparameter object that flows from ``MAMLConfig`` into the math."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class MAMLSettings:
    """Every hyperparameter the inner step, the meta-loss and the update read: the one
    object that flows from ``MAMLConfig`` (whose defaults these are) into the math.

    ``kl_coeff`` is the KL penalty's coefficient: the initial one in the config, the
    current adaptive one (``MAMLMetaUpdater.coefficients()``) when the loss reads it.
    ``meta_optimizer``: ``"ppo"``, clipped surrogate + KL penalty; ``"vpg"`` and
    ``"trpo"``, the plain importance-weighted surrogate (TRPO's trust region is a
    constraint, not a penalty).
    """

    inner_lr: float = 0.1
    clip_param: float = 0.3
    vf_loss_coeff: float = 0.5
    entropy_coeff: float = 0.0
    first_order: bool = False
    gamma: float = 0.99
    lambda_: float = 1.0
    kl_coeff: float = 0.0005
    kl_target: float = 0.01
    kl_early_stop: Optional[float] = None
    maml_optimizer_steps: int = 5
    baseline: str = "linear"
    update_num_threads: Optional[int] = None
    meta_optimizer: str = "ppo"
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    line_search_steps: int = 15
    line_search_backtrack_ratio: float = 0.8

    @classmethod
    def from_config(cls, config: Any) -> "MAMLSettings":
        """Reads a ``MAMLConfig`` (the Learner's) or the config dict a Policy gets.

        ``AlgorithmConfig.to_dict()`` renames ``lambda_`` to ``lambda``.
        """
        if isinstance(config, Mapping):
            values = dict(config)
            values.setdefault("lambda_", values.get("lambda"))
        else:
            values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})
