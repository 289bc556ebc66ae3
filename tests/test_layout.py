"""The package's layers point one way, and checkpoints of the old layout still restore."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path
from typing import List

import pytest

import rllib_maml
from rllib_maml._moved_modules import MOVED

PACKAGE = Path(rllib_maml.__file__).parent
#: layer -> module prefixes its files must not import.
FORBIDDEN = {
    "core": ("rllib_maml.algorithm", "rllib_maml.old_stack", "rllib_maml.tools", "ray.rllib.algorithms",
             "ray.rllib.core.learner", "ray.rllib.env", "ray.rllib.evaluation"),
    "algorithm": ("rllib_maml.tools",),
    "old_stack": ("rllib_maml.tools",),
}


def imported_modules(path: Path) -> List[str]:
    names: List[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).glob("*.py"))
    assert files, layer
    bad = [
        f"{path.name} imports {name}"
        for path in files
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN[layer])
    ]
    assert not bad, bad


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_classes_pickled_under_an_old_module_path_restore(old: str, new: str) -> None:
    """A checkpoint pickles classes (and functions) by module path; one written before the layout moved
    (e.g. ``rllib_maml.maml_config.MAMLConfig``) must load the class from its new module."""
    module = __import__(new, fromlist=["_"])
    defined = [v for k, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == new and not k.startswith("_")]
    assert defined, new
    for obj in defined:  # classes and functions both pickle by module path
        data = pickle.dumps(obj, protocol=0).replace(new.encode(), old.encode())
        assert old.encode() in data
        assert pickle.loads(data) is obj, obj
