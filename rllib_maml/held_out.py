"""Fixed held-out tasks, so before/after comparisons use the very same tasks."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import gymnasium as gym


def held_out_tasks(env_id: str, num_tasks: int, seed: int = 12345, env_config: Optional[Dict[str, Any]] = None) -> List[Any]:
    """Draws ``num_tasks`` tasks from a fresh ``env_id`` seeded with ``seed``.

    The seed is independent of training's task stream (``config.seed``), so these
    tasks are, with probability 1 for continuous distributions, never trained on.
    """
    env = gym.make(env_id, **(env_config or {}))
    try:
        env.reset(seed=seed)
        return env.unwrapped.sample_tasks(num_tasks)
    finally:
        env.close()
