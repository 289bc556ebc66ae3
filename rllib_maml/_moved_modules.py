"""Module paths of releases before the core/algorithm/old_stack/tools layout, still
importable so that checkpoints written by them (which pickle classes by module path,
e.g. ``rllib_maml.maml_config.MAMLConfig``) restore with this one."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Optional, Sequence

#: Old module -> the module that holds its public names now.
MOVED = {
    "rllib_maml.task_settable_env": "rllib_maml.core.tasks",
    "rllib_maml.rollouts": "rllib_maml.core.data",
    "rllib_maml.maml_math": "rllib_maml.core.maml_math",
    "rllib_maml.trpo": "rllib_maml.core.trpo",
    "rllib_maml.meta_updater": "rllib_maml.core.updater",
    "rllib_maml.maml": "rllib_maml.algorithm.maml",
    "rllib_maml.maml_config": "rllib_maml.algorithm.maml",
    "rllib_maml.maml_learner": "rllib_maml.algorithm.learner",
    "rllib_maml.maml_rl_module": "rllib_maml.algorithm.rl_module",
    "rllib_maml.maml_env_runner": "rllib_maml.algorithm.env_runner",
    "rllib_maml.batched_connectors": "rllib_maml.algorithm.connectors",
    "rllib_maml.theta_holder": "rllib_maml.algorithm.theta_holder",
    "rllib_maml.task_env": "rllib_maml.algorithm.env_factory",
    "rllib_maml.held_out": "rllib_maml.algorithm.env_factory",
    "rllib_maml.maml_torch_policy": "rllib_maml.old_stack.policy",
    "rllib_maml.maml_torch_model": "rllib_maml.old_stack.model",
    "rllib_maml.runner_hooks": "rllib_maml.old_stack.sampler",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes each old module path a small module whose attributes are the new module's."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:  # type: ignore[override]
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a plain new module

    def exec_module(self, module: ModuleType) -> None:
        target = importlib.import_module(MOVED[module.__name__])
        module.__doc__ = f"Moved to {target.__name__}."
        module.__getattr__ = lambda name: getattr(target, name)  # PEP 562: looked up on use


def install() -> None:
    """Adds the finder once (idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
