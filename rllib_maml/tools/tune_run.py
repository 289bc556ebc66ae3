"""An experiment through ``tune.Tuner``: a fresh run, one started from a checkpoint, or
``--resume`` of one, and where it left its results."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from rllib_maml.tools.errors import UserError
from rllib_maml.tools.experiment import ExperimentSpec, parse_override


@dataclasses.dataclass
class TrainOutcome:
    """Where a ``train`` run left its results, per trial."""

    experiment_path: str
    trial_paths: List[str]
    checkpoints: List[Optional[str]]
    errors: List[str]
    last_results: List[Dict[str, Any]]


#: Seconds between saves of Tune's experiment state (which trials exist, their newest
#: checkpoint). Tune's default is at least 10 s, so a run killed soon after a checkpoint
#: was restored from an older one and overwrote the newer checkpoints; 0 saves it after
#: every result (a few hundred kB each time).
EXPERIMENT_STATE_PERIOD_S = "0"


#: In the experiment folder of a run started with ``from_checkpoint``: that checkpoint's
#: path. Tune does not save the param space, and ``Tuner.restore`` resolves the trial's
#: config against the one it is given, so ``--resume`` must rebuild the same
#: ``on_algorithm_init`` callback; it reads the checkpoint from here.
STARTED_FROM_FILE = "started_from_checkpoint.txt"


def experiment_path(spec: ExperimentSpec, storage_path: Optional[str]) -> Path:
    """Where Tune keeps ``spec``'s experiment: ``<storage_path or ~/ray_results>/<name>``."""
    root = Path(storage_path).expanduser() if storage_path else Path("~/ray_results").expanduser()
    return root.resolve() / spec.name


def resumable_path(spec: ExperimentSpec, storage_path: Optional[str]) -> Path:
    """The experiment folder that ``--resume`` continues; a :class:`UserError` if there is none."""
    from ray import tune

    path = experiment_path(spec, storage_path)
    if not tune.Tuner.can_restore(str(path)):
        raise UserError(f"--resume: no Tune experiment to resume at {path} (run the same command without --resume first)")
    return path


def check_resume_overrides(path: Path, config_overrides: Sequence[str]) -> None:
    """A :class:`UserError` for a ``--config-override`` that ``--resume`` would ignore.

    ``Tuner.restore`` keeps each trial's config as Tune saved it (``params.json``),
    so an override that differs from it would silently not apply; one that repeats
    the original command's value is fine.
    """
    overrides = [(item, *parse_override(item)) for item in config_overrides]
    for params_file in sorted(path.glob("*/params.json")) if overrides else []:
        saved = saved_trial_config(params_file)
        if saved is None:
            continue
        for item, keys, value in overrides:
            current: Any = saved
            for key in keys:
                if not isinstance(current, dict) or key not in current:
                    break
                current = current[key]
            else:
                if current != value:
                    raise UserError(
                        f"--resume restores the run's config as Tune saved it ({params_file}), where "
                        f"{'.'.join(keys)} is {current!r}: --config-override {item} would be ignored. To change it, "
                        "continue from a checkpoint as a new experiment: --from-checkpoint CHECKPOINT with the override."
                    )


def saved_trial_config(params_file: Path) -> Optional[Dict[str, Any]]:
    """The trial config Tune saved as ``params_file``, or from ``params.pkl`` beside it.

    Tune copies the whole trial folder, ``params.json`` included, to the storage path
    after every result, so a run killed during that copy can leave the file empty; the
    pickle beside it is the same config. ``None``, with a warning, if neither reads:
    ``Tuner.restore`` rewrites both from its experiment state, so only this check is lost.
    """
    try:
        return json.loads(params_file.read_text())
    except (OSError, ValueError):
        pass
    pickle_file = params_file.with_name("params.pkl")
    try:
        import cloudpickle

        with pickle_file.open("rb") as f:
            return cloudpickle.load(f)
    except Exception:  # noqa: BLE001 - any unreadable pickle means the same here
        print(
            f"warning: {params_file} and {pickle_file.name} are unreadable (cut short when the run was killed?); "
            "--config-override values are not checked against this trial's saved config",
            file=sys.stderr,
        )
        return None


def restore_on_init(algorithm: Any, checkpoint: str, **kwargs: Any) -> None:
    """``on_algorithm_init`` callback: the trial starts where ``checkpoint`` left off.

    ``Algorithm.restore`` is what Tune's own resume calls: the weights, optimizer and
    Learner state, the metrics (so the lifetime env-step counter a ``stop`` reads goes
    on from the checkpoint's), the iteration count, and MAML's task and reset-seed
    generators, so the continued run draws what the original would have drawn next.
    The optimizer's learning rate is then this run's ``lr``: a restored torch optimizer
    keeps the checkpoint's, which would silently ignore ``--config-override lr=...``.
    """
    algorithm.restore(checkpoint)
    algorithm.theta_holder.set_meta_lr(algorithm.config.lr)


def starting_from(config: Any, checkpoint: str) -> Any:
    """A copy of ``config`` whose algorithm restores ``checkpoint`` once built."""
    restore = functools.partial(restore_on_init, checkpoint=checkpoint)
    existing = config.callbacks_on_algorithm_init
    existing = list(existing) if isinstance(existing, (list, tuple)) else [existing] if existing else []
    return config.copy(copy_frozen=False).callbacks(on_algorithm_init=existing + [restore])


def run_experiment(
    spec: ExperimentSpec,
    config: Any,
    storage_path: Optional[str] = None,
    resume: bool = False,
    from_checkpoint: Optional[str] = None,
) -> TrainOutcome:
    """Runs ``spec`` with ``tune.Tuner``: Tune's progress output, JSON/CSV/TensorBoard
    logs and a checkpoint at the end (and every ``checkpoint_freq`` iterations).

    With ``resume``, continues the experiment of the same name under ``storage_path``
    (``tune.Tuner.restore``): unfinished and failed trials go on from their newest
    checkpoint, with their iteration count and env-step counters, and new checkpoints
    get new numbers. Its stop criteria and checkpoint settings are the original run's.

    With ``from_checkpoint``, a new experiment whose trial first restores that checkpoint
    (:func:`restore_on_init`): a finished run continued to a larger budget, its stop
    criteria counting from the checkpoint's counters (``time_total_s`` starts at 0).
    """
    from ray import tune

    # Read when Tune's controller starts; a user's own setting wins.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    if resume:
        path = resumable_path(spec, storage_path)
        origin = path / STARTED_FROM_FILE
        if origin.is_file():  # a continuation: the same callback, which Tune's restore then overrides
            config = starting_from(config, origin.read_text().strip())
        tuner = tune.Tuner.restore(
            str(path), trainable=spec.run, param_space=config, resume_unfinished=True, resume_errored=True
        )
    else:
        if from_checkpoint:
            config = starting_from(config, str(from_checkpoint))
            folder = experiment_path(spec, storage_path)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / STARTED_FROM_FILE).write_text(f"{from_checkpoint}\n")
        checkpoint_config = tune.CheckpointConfig(
            checkpoint_frequency=spec.checkpoint_freq,
            checkpoint_at_end=True,
            num_to_keep=spec.keep_checkpoints_num,
        )
        tuner = tune.Tuner(
            spec.run,
            param_space=config,
            tune_config=tune.TuneConfig(num_samples=spec.num_samples),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=str(Path(storage_path).resolve()) if storage_path else None,
                stop=spec.stop,
                checkpoint_config=checkpoint_config,
            ),
        )
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    return TrainOutcome(
        experiment_path=grid.experiment_path,
        trial_paths=[r.path for r in results],
        checkpoints=[r.checkpoint.path if r.checkpoint else None for r in results],
        errors=[_trial_error(r) for r in results if r.error is not None],
        last_results=[dict(r.metrics or {}) for r in results],
    )


def _trial_error(result: Any) -> str:
    """One line for a failed trial: the error's last line and where its traceback is."""
    error = result.error
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[-1] if lines else ''}"
    details = Path(result.path) / "error.txt"
    return f"{text} (traceback: {details})" if details.is_file() else text
