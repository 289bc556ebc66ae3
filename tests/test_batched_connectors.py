"""MAML's batched module-to-env pieces give the env exactly what RLlib's per-item pieces give it."""

from __future__ import annotations

from typing import List

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.columns import Columns
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

from rllib_maml.algorithm.connectors import BatchedNormalizeAndClipActions, FastUnBatchToIndividualItems
from tests.test_training import tiny_config

SPACES = [
    gym.spaces.Box(-0.1, 0.1, (2,), np.float32),  # Navigation2D's
    gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([-0.5, 3.0], np.float32)),
    gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),  # unbounded: unsquash leaves it, clip is a no-op
]


@pytest.mark.parametrize("space", SPACES, ids=["symmetric", "asymmetric", "unbounded"])
@pytest.mark.parametrize("normalize, clip", [(True, False), (False, True), (True, True)])
def test_batched_actions_equal_rllibs_per_item_unsquash_and_clip(space: gym.spaces.Box, normalize: bool, clip: bool) -> None:
    actions = np.random.default_rng(0).normal(scale=2.0, size=(64, 2)).astype(np.float32)
    piece = BatchedNormalizeAndClipActions(gym.spaces.Box(-1, 1, (2,)), space, normalize_actions=normalize, clip_actions=clip)
    batch = piece(rl_module=None, batch={Columns.ACTIONS: actions.copy()}, episodes=[])
    # RLlib's NormalizeAndClipActions applies exactly these functions, one item at a time.
    per_item = unsquash_action if normalize else clip_action
    expected = np.stack([per_item(a, space) for a in actions])
    np.testing.assert_array_equal(batch[Columns.ACTIONS_FOR_ENV], expected)
    np.testing.assert_array_equal(batch[Columns.ACTIONS], actions)  # what the episode records stays as sampled


def test_neither_flag_adds_no_env_action_column() -> None:
    piece = BatchedNormalizeAndClipActions(None, SPACES[0], normalize_actions=False, clip_actions=False)
    assert Columns.ACTIONS_FOR_ENV not in piece(rl_module=None, batch={Columns.ACTIONS: np.zeros((3, 2))}, episodes=[])


def test_fast_unbatch_equals_rllibs_unbatch() -> None:
    rng = np.random.default_rng(1)
    batch = {Columns.ACTIONS: rng.normal(size=(5, 2)), Columns.ACTION_LOGP: rng.normal(size=5)}
    structure = ["a", "b", "a", "c", "b"]  # row -> episode id, as RLlib memorizes it
    fast = FastUnBatchToIndividualItems()(
        rl_module=None, batch={k: v.copy() for k, v in batch.items()}, episodes=[], shared_data={"memorized_map_structure": structure}
    )
    rllib = super(FastUnBatchToIndividualItems, FastUnBatchToIndividualItems()).__call__(
        rl_module=None, batch={k: v.copy() for k, v in batch.items()}, episodes=[], shared_data={"memorized_map_structure": structure}
    )
    assert fast.keys() == rllib.keys()
    for column in batch:
        assert fast[column].keys() == rllib[column].keys() == {("a",), ("b",), ("c",)}
        for key in fast[column]:
            np.testing.assert_array_equal(np.stack(fast[column][key]), np.stack(rllib[column][key]))


def sampled_episodes(runner, seed: int) -> List[np.ndarray]:
    torch.manual_seed(seed)  # GetActions samples with torch's global generator
    runner._seed = seed  # the first reset of a num_episodes call (see MAMLEnvRunner)
    episodes = runner.sample(num_episodes=4, explore=True)
    return [np.concatenate([e.get_observations()[1:].ravel(), e.get_actions().ravel()]) for e in episodes]


def test_maml_runner_samples_the_same_trajectories_as_with_rllibs_pipeline(ray_session: None) -> None:
    """Navigation2D's ±0.1 box makes the unsquash matter; same seeds, both pipelines, same episodes."""
    algo = tiny_config().build_algo()
    try:
        runner = algo.env_runner_group.local_env_runner
        names = [type(p).__name__ for p in runner._module_to_env.connectors]
        assert "BatchedNormalizeAndClipActions" in names and "NormalizeAndClipActions" not in names
        assert "FastUnBatchToIndividualItems" in names and "UnBatchToIndividualItems" not in names
        ours = sampled_episodes(runner, seed=3)
        runner._module_to_env = AlgorithmConfig.build_module_to_env_connector(
            algo.config, env=runner.env.unwrapped, spaces=runner.get_spaces()
        )
        rllibs = sampled_episodes(runner, seed=3)
        assert len(ours) == len(rllibs) == 4
        for a, b in zip(ours, rllibs):
            np.testing.assert_array_equal(a, b)
        # The actions did leave [-0.1, 0.1] in policy space, so the unsquash was exercised.
        assert np.abs(np.concatenate([e.get_actions() for e in runner.sample(num_episodes=2)])).max() > 0.1
    finally:
        algo.stop()
