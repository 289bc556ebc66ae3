"""Module-to-env connector pieces that do per-sub-env work once per vector step.

A MAML runner steps 100 sub-envs per vector step, and two of RLlib's default
module-to-env pieces cost time per sub-env:

* ``NormalizeAndClipActions`` runs after the batch is split into per-episode items
  and maps ``unsquash_action`` over them one by one (a deep copy and a
  ``tree.map_structure`` per sub-env and step): 19% of a profiled ``sample`` call
  on HalfCheetah. :class:`BatchedNormalizeAndClipActions` does the same arithmetic
  as one numpy expression on the ``[B, d]`` batch, before RLlib unbatches.
* ``UnBatchToIndividualItems`` splits each column with ``tree.unflatten_as`` per
  item; for a plain array column :class:`FastUnBatchToIndividualItems` takes the
  same rows with ``list(array)``.

:func:`use_batched_connectors` swaps both into RLlib's default pipeline
(``MAMLConfig.build_module_to_env_connector``); the env receives the same actions.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.module_to_env import NormalizeAndClipActions, TensorToNumpy, UnBatchToIndividualItems
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.typing import EpisodeType


class BatchedNormalizeAndClipActions(ConnectorV2):
    """Writes ``ACTIONS_FOR_ENV`` for a whole ``[B, d]`` batch of ``Box`` actions.

    The same result as RLlib's ``NormalizeAndClipActions`` (``unsquash_action`` when
    ``normalize_actions``: ``low + (a + 1) (high - low) / 2``, then clipped, for a
    bounded float box; else ``clip_action`` when ``clip_actions``), and like it,
    ``ACTIONS`` (what the episode records and the loss sees) is left as sampled.
    Needs a single-agent ``Box`` action space; :func:`use_batched_action_normalization`
    leaves RLlib's piece in place otherwise.
    """

    def __init__(
        self,
        input_observation_space: Optional[gym.Space] = None,
        input_action_space: Optional[gym.Space] = None,
        *,
        normalize_actions: bool,
        clip_actions: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.normalize_actions = normalize_actions
        self.clip_actions = clip_actions

    @override(ConnectorV2)
    def __call__(
        self,
        *,
        rl_module: RLModule,
        batch: Optional[Dict[str, Any]],
        episodes: List[EpisodeType],
        explore: Optional[bool] = None,
        shared_data: Optional[dict] = None,
        **kwargs: Any,
    ) -> Any:
        if not (self.normalize_actions or self.clip_actions):
            return batch
        space = self.input_action_space
        actions = np.asarray(batch[Columns.ACTIONS])
        low, high = space.low, space.high
        unsquash = (
            self.normalize_actions
            and np.all(space.bounded_below)
            and np.all(space.bounded_above)
            and space.dtype in (np.float32, np.float64)
        )
        if unsquash:
            actions = low + (actions + 1.0) * (high - low) / 2.0
        if unsquash or not self.normalize_actions:
            actions = np.clip(actions, low, high)
        else:
            # unsquash_action leaves unbounded or integer boxes as they are; copy as RLlib does.
            actions = actions.copy()
        batch[Columns.ACTIONS_FOR_ENV] = actions
        return batch


class FastUnBatchToIndividualItems(UnBatchToIndividualItems):
    """RLlib's ``UnBatchToIndividualItems`` with ``list(array)`` for plain single-agent array columns.

    Same output (row ``i`` of each column goes to the ``i``-th episode of the
    memorized structure); any other batch (nested columns, multi-agent, nothing
    memorized) goes to RLlib's implementation.
    """

    @override(UnBatchToIndividualItems)
    def __call__(
        self,
        *,
        rl_module: RLModule,
        batch: Dict[str, Any],
        episodes: List[EpisodeType],
        explore: Optional[bool] = None,
        shared_data: Optional[dict] = None,
        **kwargs: Any,
    ) -> Any:
        structure = (shared_data or {}).get("memorized_map_structure")
        if not isinstance(structure, list) or not all(isinstance(v, np.ndarray) for v in batch.values()):
            return super().__call__(rl_module=rl_module, batch=batch, episodes=episodes, explore=explore, shared_data=shared_data, **kwargs)
        for column, column_data in list(batch.items()):
            items: Dict[Any, List[Any]] = defaultdict(list)
            for eps_id, item in zip(structure, column_data):
                # Tuple keys, as RLlib's, to resemble multi-agent (eps_id, agent_id, module_id) keys.
                items[(eps_id,)].append(item)
            batch[column] = dict(items)
        return batch


def use_batched_connectors(pipeline: ConnectorV2) -> ConnectorV2:
    """Swaps RLlib's per-item ``NormalizeAndClipActions`` and ``UnBatchToIndividualItems`` in ``pipeline``.

    The batched action piece needs a ``Box`` action space and RLlib's default
    pieces (it goes right after ``TensorToNumpy``, where actions are still one
    ``[B, d]`` array); otherwise RLlib's piece stays. Returns ``pipeline``.
    """
    names = [type(piece).__name__ for piece in pipeline.connectors]
    if UnBatchToIndividualItems.__name__ in names:
        pipeline.insert_after(UnBatchToIndividualItems.__name__, FastUnBatchToIndividualItems())
        pipeline.remove(UnBatchToIndividualItems.__name__)
        names = [type(piece).__name__ for piece in pipeline.connectors]
    if NormalizeAndClipActions.__name__ not in names or TensorToNumpy.__name__ not in names:
        return pipeline
    original = pipeline.connectors[names.index(NormalizeAndClipActions.__name__)]
    if not isinstance(original.input_action_space, gym.spaces.Box):
        return pipeline
    batched = BatchedNormalizeAndClipActions(normalize_actions=original.normalize_actions, clip_actions=original.clip_actions)
    pipeline.remove(NormalizeAndClipActions.__name__)
    pipeline.insert_after(TensorToNumpy.__name__, batched)  # the pipeline sets its spaces
    return pipeline
