"""Shared fixtures: one Ray instance per test session, as RLlib's own tests do."""

from __future__ import annotations

from typing import Iterator

import pytest
import ray

import rllib_maml  # noqa: F401  (registers the rllib_maml/* envs and "MAML")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
