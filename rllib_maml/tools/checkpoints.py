"""Algorithm checkpoints on disk: finding, checking and reading them without building
the algorithm (``compare``, ``evaluate``, ``train --resume`` and ``train --from-checkpoint`` use these)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any, Dict, List

from rllib_maml.tools.errors import UserError

#: The file every new-API-stack checkpoint component holds (Ray 2.60's ``Checkpointable``).
CHECKPOINT_MARKER = "class_and_ctor_args.pkl"
#: What an old-API-stack checkpoint (``Algorithm.save()``) holds instead.
OLD_STACK_STATE = "algorithm_state.pkl"


@dataclasses.dataclass
class CheckpointInfo:
    """An algorithm checkpoint directory and what it holds (read without building it)."""

    path: Path
    algo_class: type
    config: Any  # the AlgorithmConfig it was trained with
    old_api_stack: bool = False

    @property
    def is_maml(self) -> bool:
        from rllib_maml.algorithm.maml import MAML

        return issubclass(self.algo_class, MAML)


def resolve_checkpoint(path: str | Path, flag: str = "checkpoint") -> Path:
    """An algorithm checkpoint directory: ``path`` itself, or the newest
    ``checkpoint_*`` below it (so a Tune trial or experiment folder also works)."""
    # Absolute: RLlib reads checkpoints through pyarrow, which rejects relative paths.
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise UserError(f"{flag} {path}: no such checkpoint directory")
    def is_checkpoint(folder: Path) -> bool:
        return (folder / CHECKPOINT_MARKER).is_file() or (folder / OLD_STACK_STATE).is_file()

    if is_checkpoint(path):
        return path
    if path.is_dir():
        found = [p for p in path.rglob("checkpoint_*") if is_checkpoint(p)]
        if found:
            return max(found, key=lambda p: (p.stat().st_mtime, p.name))
    raise UserError(
        f"{flag} {path}: not an RLlib algorithm checkpoint and holds none (no {CHECKPOINT_MARKER} or {OLD_STACK_STATE})"
    )


def newest_checkpoints(experiment: Path) -> List[Path]:
    """The newest complete checkpoint of each trial below a Tune experiment folder."""
    newest: Dict[Path, Path] = {}
    for marker in experiment.rglob(f"checkpoint_*/{CHECKPOINT_MARKER}"):
        checkpoint = marker.parent
        if checkpoint.parent not in newest or checkpoint.name > newest[checkpoint.parent].name:
            newest[checkpoint.parent] = checkpoint
    return sorted(newest.values())


def check_checkpoint_files(path: Path, flag: str = "checkpoint") -> None:
    """Reads every state file of a checkpoint once, so a truncated or corrupt one is named
    here, in one line, instead of failing deep inside RLlib's restore."""
    import json

    import msgpack

    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        try:
            if file.suffix == ".pkl":
                with open(file, "rb") as f:
                    pickle.load(f)
            elif file.suffix == ".json":
                json.loads(file.read_text())
            elif file.suffix == ".msgpack":
                msgpack.unpackb(file.read_bytes())
        except Exception as err:
            detail = " ".join(str(err).split()) or "no details"
            raise UserError(
                f"{flag} {path}: file {file.relative_to(path)} is unreadable or truncated ({type(err).__name__}: {detail})"
            ) from None


def read_checkpoint(path: str | Path, flag: str = "checkpoint") -> CheckpointInfo:
    """Reads a checkpoint's algorithm class and config; :class:`UserError` if unreadable."""
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    import rllib_maml  # noqa: F401  (MAML checkpoints unpickle rllib_maml classes)

    path = resolve_checkpoint(path, flag)
    check_checkpoint_files(path, flag)
    old_api_stack = not (path / CHECKPOINT_MARKER).is_file()
    try:
        if old_api_stack:
            with open(path / OLD_STACK_STATE, "rb") as f:
                state = pickle.load(f)
            algo_class = state["algorithm_class"]
            config = algo_class.get_default_config().update_from_dict(state["config"])
        else:
            with open(path / CHECKPOINT_MARKER, "rb") as f:
                ctor_info = pickle.load(f)
            algo_class = ctor_info["class"]
            config = AlgorithmConfig.from_state(ctor_info["ctor_args_and_kwargs"][0][0])
    except Exception as err:
        raise UserError(f"{flag} {path}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    if not (isinstance(algo_class, type) and issubclass(algo_class, Algorithm)):
        raise UserError(f"{flag} {path}: not an RLlib algorithm checkpoint")
    return CheckpointInfo(path=path, algo_class=algo_class, config=config, old_api_stack=old_api_stack)


def require_maml(info: CheckpointInfo, flag: str) -> None:
    if not info.is_maml:
        raise UserError(f"{flag} {info.path}: a {info.algo_class.__name__} checkpoint, not a MAML one")


def require_non_maml(info: CheckpointInfo, flag: str) -> None:
    if info.is_maml:
        raise UserError(f"{flag} {info.path}: a MAML checkpoint; pass the PPO (baseline) checkpoint here")


def require_same_run(info: CheckpointInfo, config: Any, flag: str) -> None:
    """``info`` must be a checkpoint that ``config`` can continue: the same algorithm,
    env, API stack and policy network (anything else fails inside RLlib's restore)."""
    old_api_stack = not config.enable_env_runner_and_connector_v2
    mismatches = []
    if info.algo_class.__name__ != config.algo_class.__name__:
        mismatches.append(f"algorithm {info.algo_class.__name__}, this run {config.algo_class.__name__}")
    if info.config.env != config.env:
        mismatches.append(f"env {info.config.env!r}, this run {config.env!r}")
    if info.old_api_stack != old_api_stack:
        stack = lambda old: "old" if old else "new"  # noqa: E731
        mismatches.append(f"{stack(info.old_api_stack)} API stack, this run the {stack(old_api_stack)} one")
    for key in ("fcnet_hiddens", "fcnet_activation"):
        saved, wanted = (info.config.model_config or {}).get(key), (config.model_config or {}).get(key)
        if saved != wanted:
            mismatches.append(f"model_config.{key} {saved!r}, this run {wanted!r}")
    if mismatches:
        raise UserError(f"{flag} {info.path}: cannot continue it with this file: " + "; ".join(mismatches))


def module_weights(info: CheckpointInfo, flag: str) -> Dict[str, Any]:
    """The policy weights of a checkpoint, which must hold a :class:`MAMLTorchRLModule`."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_maml.algorithm.rl_module import MAMLTorchRLModule

    if info.old_api_stack:
        raise UserError(
            f"{flag} {info.path}: an old-API-stack {info.algo_class.__name__} checkpoint; the baseline's "
            "weights are read from a new-stack RLModule, so train it on the new stack (the default)"
        )
    module_dir = info.path / "learner_group" / "learner" / "rl_module" / DEFAULT_MODULE_ID
    if not (module_dir / CHECKPOINT_MARKER).is_file():
        raise UserError(f"{flag} {info.path}: holds no RLModule '{DEFAULT_MODULE_ID}' at {module_dir}")
    module = RLModule.from_checkpoint(module_dir)
    if not isinstance(module, MAMLTorchRLModule):
        raise UserError(
            f"{flag} {info.path}: its policy is a {type(module).__name__}, not a MAMLTorchRLModule; "
            "train it with `rllib-maml train` on an rllib_maml env"
        )
    return module.get_state()
