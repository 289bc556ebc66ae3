"""Classic Tune experiment YAML files -> RLlib ``AlgorithmConfig`` (run by :mod:`.tune_run`).

A file holds one experiment in the classic Tune format::

    navigation2d-maml:          # experiment name (the results folder's name)
        run: MAML               # a registered trainable: MAML, PPO, ...
        env: rllib_maml/Navigation2D-v0
        stop: {num_env_steps_sampled_lifetime: 4000000}
        config: {meta_batch_size: 20, ...}   # AlgorithmConfig keys

Everything that can go wrong with a file (missing, broken YAML, not a Tune
experiment, unknown config key, unknown env, invalid hyperparameter) is found
here, before Ray starts, and raised as :class:`UserError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import gymnasium as gym
import yaml

from rllib_maml.tools.errors import UserError

#: Top-level keys of an experiment (besides ``run``, ``env``, ``stop``, ``config``).
CHECKPOINT_KEYS = ("checkpoint_freq", "checkpoint_at_end", "keep_checkpoints_num")
EXPERIMENT_KEYS = ("run", "env", "stop", "config", "num_samples") + CHECKPOINT_KEYS
#: The step budget key of the tuned examples (Tune's ``stop`` criterion).
STEP_BUDGET_KEY = "num_env_steps_sampled_lifetime"
EXPECTED_FORMAT = "NAME: {run: ALGO, env: ENV_ID, stop: {...}, config: {...}}"


@dataclasses.dataclass
class ExperimentSpec:
    """One experiment of a YAML file."""

    name: str
    run: str
    stop: Dict[str, Any]
    config: Dict[str, Any]
    checkpoint_freq: int = 0
    keep_checkpoints_num: Optional[int] = None
    num_samples: int = 1
    source: Optional[Path] = None


# --- reading ---------------------------------------------------------------------
def load_experiment(path: str | os.PathLike) -> ExperimentSpec:
    """Reads and checks a classic Tune experiment file (exactly one experiment)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise UserError(f"{path}: broken YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot be read: {err}") from None
    return parse_experiment(data, source=path)


def parse_experiment(data: Any, source: Optional[Path] = None) -> ExperimentSpec:
    """Checks the parsed YAML ``data`` and returns its experiment."""
    where = f"{source}: " if source else ""
    not_tune = f"{where}not a Tune experiment file; expected {EXPECTED_FORMAT}"
    if not isinstance(data, dict) or not data:
        raise UserError(not_tune)
    if len(data) != 1:
        raise UserError(f"{where}holds {len(data)} experiments ({', '.join(map(str, data))}); give one per file")
    name, spec = next(iter(data.items()))
    if not isinstance(spec, dict) or "run" not in spec:
        raise UserError(not_tune)
    unknown = sorted(set(spec) - set(EXPERIMENT_KEYS))
    if unknown:
        raise UserError(f"{where}experiment {name!r} has unknown keys {unknown}; allowed: {list(EXPERIMENT_KEYS)}")
    if not isinstance(spec["run"], str):
        raise UserError(f"{where}'run' must name a registered algorithm (e.g. MAML, PPO), got {spec['run']!r}")
    stop = spec.get("stop") or {}
    config = spec.get("config") or {}
    for key, value in (("stop", stop), ("config", config)):
        if not isinstance(value, dict):
            raise UserError(f"{where}'{key}' of experiment {name!r} must be a mapping, got {type(value).__name__}")
    config = copy.deepcopy(config)
    if "env" in spec:
        if "env" in config and config["env"] != spec["env"]:
            raise UserError(f"{where}'env' is given twice with different values ({spec['env']!r}, {config['env']!r})")
        config["env"] = spec["env"]
    if not config.get("env"):
        raise UserError(f"{where}experiment {name!r} names no env (give 'env:')")
    keep = spec.get("keep_checkpoints_num")
    return ExperimentSpec(
        name=str(name),
        run=spec["run"],
        stop=dict(stop),
        config=config,
        checkpoint_freq=_non_negative_int(spec.get("checkpoint_freq", 0), "checkpoint_freq", where),
        keep_checkpoints_num=None if keep is None else _non_negative_int(keep, "keep_checkpoints_num", where) or None,
        num_samples=max(1, _non_negative_int(spec.get("num_samples", 1), "num_samples", where)),
        source=source,
    )


def _non_negative_int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{where}'{name}' must be an integer >= 0, got {value!r}")
    return value


# --- command-line overrides --------------------------------------------------------
def apply_overrides(
    spec: ExperimentSpec,
    *,
    stop_iters: Optional[int] = None,
    stop_timesteps: Optional[int] = None,
    num_env_runners: Optional[int] = None,
    config_overrides: Sequence[str] = (),
    checkpoint_freq: Optional[int] = None,
) -> ExperimentSpec:
    """Returns a copy of ``spec`` with the command line's budget and config overrides.

    ``stop_iters`` adds a ``training_iteration`` stop criterion (Tune stops at the
    first criterion met); ``stop_timesteps`` replaces the env-step budget;
    ``config_overrides`` are ``KEY=VALUE`` strings, VALUE parsed as YAML, KEY
    possibly dotted into a nested mapping (``env_config.morphologies=[Ant]``);
    ``checkpoint_freq`` replaces the file's checkpoint frequency (iterations).
    """
    spec = copy.deepcopy(spec)
    if checkpoint_freq is not None:
        spec.checkpoint_freq = checkpoint_freq
    if stop_iters is not None:
        spec.stop["training_iteration"] = stop_iters
    if stop_timesteps is not None:
        spec.stop[STEP_BUDGET_KEY] = stop_timesteps
    if num_env_runners is not None:
        spec.config.pop("num_workers", None)
        spec.config["num_env_runners"] = num_env_runners
    for item in config_overrides:
        (*parents, leaf), value = parse_override(item)
        target = spec.config
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UserError(f"--config-override {item!r}: {part!r} is not a mapping")
        target[leaf] = value
    return spec


# --- AlgorithmConfig ---------------------------------------------------------------
def parse_override(item: str) -> Tuple[List[str], Any]:
    """``"a.b=VALUE"`` -> ``(["a", "b"], VALUE parsed as YAML)``; a :class:`UserError` if malformed."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--config-override expects KEY=VALUE, got {item!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"--config-override {item!r}: the value is not valid YAML") from None
    return key.strip().split("."), value


def algorithm_class(run: str) -> type:
    """The Algorithm class a ``run:`` name stands for (registered with Tune)."""
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.tune.registry import get_trainable_cls

    try:
        with warnings.catch_warnings():
            # The first lookup imports every RLlib algorithm; some build a debug env on import.
            warnings.simplefilter("ignore")
            cls = get_trainable_cls(run)
    except Exception:  # Tune raises TuneError/ValueError for unknown names
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise UserError(f"unknown algorithm run: {run!r} (use MAML, PPO or another RLlib algorithm)")
    return cls


def make_env(env_spec: Any, env_config: Dict[str, Any]) -> gym.Env:
    """Creates one env as RLlib's EnvRunners would; :class:`UserError` if that fails."""
    from rllib_maml.algorithm.env_factory import make_env as make

    if not isinstance(env_spec, str):
        raise UserError(f"env must be a gymnasium id, a Tune-registered name or a class path, got {env_spec!r}")
    try:
        return make(env_spec, env_config)
    except ValueError as err:
        raise UserError(str(err)) from None


def build_config(spec: ExperimentSpec) -> Any:
    """Builds and validates the ``AlgorithmConfig`` of ``spec`` on the driver.

    For an algorithm other than MAML on an ``rllib_maml`` task env, the policy is
    :class:`rllib_maml.MAMLTorchRLModule` (with the env's action masks, if any), so
    its checkpoint can be fine-tuned with MAML's inner update by ``compare``.
    Raises :class:`UserError` naming the file for any mistake in it.
    """
    try:
        return _build_config(spec)
    except UserError as err:
        raise UserError(f"{spec.source}: {err}" if spec.source else str(err)) from None


def _build_config(spec: ExperimentSpec) -> Any:
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_maml.algorithm.maml import MAML
    from rllib_maml.algorithm.env_factory import action_masks, is_task_env
    from rllib_maml.algorithm.rl_module import ACTION_MASKS_KEY, MAMLTorchRLModule

    cls = algorithm_class(spec.run)
    config = cls.get_default_config()
    values = copy.deepcopy(spec.config)
    env_spec = values.pop("env")
    env_config = values.pop("env_config", None) or {}
    model_config = values.pop("model_config", None)
    if not isinstance(env_config, dict) or not isinstance(model_config, (dict, type(None))):
        raise UserError("config keys 'env_config' and 'model_config' must be mappings")
    unknown = [k for k in values if not _is_config_key(config, config._translate_special_keys(k, warn_deprecated=False))]
    if unknown:
        raise UserError(f"unknown {spec.run} config key(s) {sorted(unknown)} in experiment {spec.name!r}")
    try:
        config.update_from_dict(values)
    except Exception as err:
        raise UserError(f"invalid {spec.run} config in experiment {spec.name!r}: {err}") from None
    config.environment(env_spec, env_config=env_config)
    if model_config is not None:
        config.rl_module(model_config=model_config)

    env = make_env(env_spec, env_config)
    try:
        if is_task_env(env) and not issubclass(cls, MAML):
            module_config = dict(model_config or {})
            masks = action_masks(env)
            if masks is not None:
                module_config.setdefault(ACTION_MASKS_KEY, masks)
            config.rl_module(rl_module_spec=RLModuleSpec(module_class=MAMLTorchRLModule), model_config=module_config)
    finally:
        env.close()
    if not _has_search_space(values):
        try:
            with quiet_rllib():
                config.copy(copy_frozen=False).validate()
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"invalid {spec.run} config in experiment {spec.name!r}: {first}") from None
    return config


@contextlib.contextmanager
def quiet_rllib() -> Iterator[None]:
    """Silences RLlib's config warnings (e.g. "running X on the new API stack") on the driver."""
    rllib_logger = logging.getLogger("ray.rllib")
    level = rllib_logger.level
    rllib_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        rllib_logger.setLevel(level)


def _is_config_key(config: Any, key: str) -> bool:
    """Whether ``update_from_dict`` can set ``key`` (an attribute, or a property with a setter)."""
    prop = getattr(type(config), key, None)
    return key in vars(config) or (isinstance(prop, property) and prop.fset is not None)


def _has_search_space(values: Any) -> bool:
    if isinstance(values, dict):
        return any(k in ("grid_search", "choice") or _has_search_space(v) for k, v in values.items())
    return isinstance(values, list) and any(_has_search_space(v) for v in values)


def required_cpus(config: Any) -> float:
    """CPUs one trial of ``config`` reserves (main process, Learners and EnvRunners)."""
    try:
        with quiet_rllib():
            resources = config.algo_class.default_resource_request(config.to_dict()).required_resources
    except Exception:  # a search space or an exotic config: leave the check to Tune
        return 0.0
    return float(resources.get("CPU", 0.0))
