"""``rllib-maml train --resume`` continues a run killed with SIGKILL, losing at most one iteration.

A real ``rllib-maml train`` process (its own Ray instance) checkpoints every
iteration and is killed, with its whole process group, as soon as its third
checkpoint exists. The same command with ``--resume`` then finishes the run: the
iteration count and the lifetime env steps go on from the newest checkpoint Tune
recorded, and no checkpoint but possibly the one written in the instant of the kill
is written again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from rllib_maml.tools.cli import EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[1]
NAV2D = ROOT / "tuned_examples" / "navigation2d.yaml"
STOP_ITERS = 6
#: One task, one episode, two adaptation steps (0 and 1) of 100 steps.
ENV_STEPS_PER_ITERATION = 200
TINY = ["meta_batch_size=1", "episodes_per_task=1", "num_envs_per_env_runner=1", "maml_optimizer_steps=1"]


def train_command(output: Path, *extra: str) -> List[str]:
    overrides = [a for o in TINY for a in ("--config-override", o)]
    return [
        sys.executable, "-m", "rllib_maml.tools.cli", "train", str(NAV2D), "--stop-iters", str(STOP_ITERS),
        "--num-env-runners", "0", "--checkpoint-freq", "1", "--output", str(output), *overrides, *extra,
    ]


def complete_checkpoints(output: Path) -> List[Path]:
    return sorted(p.parent for p in output.rglob("checkpoint_*/class_and_ctor_args.pkl"))


def file_times(checkpoint: Path) -> Dict[str, int]:
    return {str(p.relative_to(checkpoint)): p.stat().st_mtime_ns for p in checkpoint.rglob("*") if p.is_file()}


def kill_at_checkpoints(command: List[str], output: Path, count: int) -> None:
    """Runs ``command`` and SIGKILLs it, with the Ray processes it started, once ``output``
    holds ``count`` complete checkpoints."""
    log_path = output.parent / f"{output.name}.log"
    with log_path.open("w") as log:
        run = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while len(complete_checkpoints(output)) < count:
                assert run.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, f"no checkpoint number {count} within 240 s"
                time.sleep(0.05)
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def test_a_killed_run_resumes_from_its_newest_checkpoint(tmp_path: Path) -> None:
    kill_at_checkpoints(train_command(tmp_path / "results"), tmp_path / "results", 3)
    before = {p.name: file_times(p) for p in complete_checkpoints(tmp_path / "results")}
    (trial,) = [p.parent for p in (tmp_path / "results").rglob("result.json")]
    rows_at_kill = len((trial / "result.json").read_text().splitlines())

    resumed = subprocess.run(train_command(tmp_path / "results", "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    iterations = [r["training_iteration"] for r in rows]
    # The resumed process's results continue the count from the newest (or the one
    # before the newest) checkpoint at the kill: checkpoint_00000k holds iteration k + 1.
    resumed = iterations[rows_at_kill:]
    assert resumed and resumed[0] - 1 in (len(before), len(before) - 1), (iterations, rows_at_kill, sorted(before))
    assert resumed == list(range(resumed[0], STOP_ITERS + 1)), iterations
    assert rows[-1]["env_runners"]["num_env_steps_sampled_lifetime"] == STOP_ITERS * ENV_STEPS_PER_ITERATION
    # Only the checkpoint written in the instant of the kill may be written again.
    newest = max(before)
    for name, times in before.items():
        if name != newest:
            assert file_times(trial / name) == times, f"{name} was overwritten"
    assert len(complete_checkpoints(tmp_path / "results")) >= STOP_ITERS


def test_resume_without_a_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", str(NAV2D), "--output", str(tmp_path), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and len(err.splitlines()) == 1 and "no Tune experiment to resume" in err, err


def test_resume_from_a_truncated_checkpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The folder layout Tune leaves, with a newest checkpoint whose policy state is cut short.
    from ray import tune

    experiment = tmp_path / "navigation2d-maml"
    checkpoint = experiment / "MAML_trial" / "checkpoint_000001"
    (checkpoint / "learner_group").mkdir(parents=True)
    (checkpoint / "class_and_ctor_args.pkl").write_bytes(b"\x80\x05\x95")  # truncated pickle
    (experiment / "MAML_trial" / "checkpoint_000000").mkdir()
    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: True))  # only the files matter here
    code = main(["train", str(NAV2D), "--output", str(tmp_path), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and len(err.splitlines()) == 1, err
    assert "--resume" in err and "file class_and_ctor_args.pkl is unreadable or truncated" in err, err


def test_resume_refuses_an_override_tune_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune's restore keeps the saved trial config: a changed value is named, an equal one passes."""
    from ray import tune

    trial = tmp_path / "navigation2d-maml" / "MAML_trial"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"seed": 7, "sample_timeout_s": 60.0, "lr": 0.003}))
    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: True))  # only the files matter here
    base = ["train", str(NAV2D), "--output", str(tmp_path), "--resume", "--config-override", "seed=7"]
    for override, key, saved in [("sample_timeout_s=600", "sample_timeout_s", "60.0"), ("lr=0.0001", "lr", "0.003")]:
        code = main([*base, "--config-override", override])
        err = capsys.readouterr().err.strip()
        assert code == EXIT_USAGE and len(err.splitlines()) == 1, err
        assert f"{key} is {saved}" in err and override in err and "--from-checkpoint" in err, err
    # The original command's own values (the README's "same command plus --resume") pass.
    from rllib_maml.tools.tune_run import check_resume_overrides

    check_resume_overrides(trial.parent, ["seed=7", "sample_timeout_s=60", "lr=0.003", "not_saved_key=1"])



def test_a_params_file_cut_short_by_a_kill_falls_back_to_the_pickle(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Tune re-copies ``params.json`` after every result; a kill mid-copy leaves it empty."""
    import cloudpickle

    from rllib_maml.tools.errors import UserError
    from rllib_maml.tools.tune_run import check_resume_overrides

    trial = tmp_path / "navigation2d-maml" / "MAML_trial"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text("")
    (trial / "params.pkl").write_bytes(cloudpickle.dumps({"lr": 0.003}))
    check_resume_overrides(trial.parent, ["lr=0.003"])
    with pytest.raises(UserError, match="lr is 0.003"):
        check_resume_overrides(trial.parent, ["lr=0.0001"])
    # Both cut short: the check is skipped with a warning that names the file, not a traceback.
    (trial / "params.pkl").write_bytes(b"\x80\x05")
    check_resume_overrides(trial.parent, ["lr=0.0001"])
    err = capsys.readouterr().err
    assert "params.json" in err and "not checked" in err, err

def lifetime_steps_by_iteration(output: Path) -> Dict[int, int]:
    rows = [json.loads(line) for f in output.rglob("result.json") for line in f.read_text().splitlines()]
    return {row["training_iteration"]: row["env_runners"]["num_env_steps_sampled_lifetime"] for row in rows}


def test_a_finished_run_continues_from_its_checkpoint(
    ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--from-checkpoint``: 3 iterations, then on to 5 as a new experiment, counting on from 3."""
    import numpy as np
    from ray.rllib.algorithms.algorithm import Algorithm

    from rllib_maml.algorithm.maml import RANDOM_STATE_KEY
    from rllib_maml.tools import experiment, tune_run
    from rllib_maml.tools.checkpoints import read_checkpoint

    def train(output: str, steps: int, *extra: str) -> None:
        command = train_command(tmp_path / output, "--stop-timesteps", str(steps), *extra)
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    train("first", 3 * ENV_STEPS_PER_ITERATION)
    train("continued", 5 * ENV_STEPS_PER_ITERATION, "--from-checkpoint", str(tmp_path / "first"))
    # The counters go on from the checkpoint's, so the larger budget stops it after 2 more iterations.
    assert lifetime_steps_by_iteration(tmp_path / "continued") == {4: 800, 5: 1000}

    # What the continued trial started from is what RLlib's own from_checkpoint restores:
    # the iteration, theta and the task and reset-seed generators (not a fresh draw).
    checkpoint = read_checkpoint(tmp_path / "first").path
    config = experiment.build_config(experiment.apply_overrides(
        experiment.load_experiment(NAV2D), num_env_runners=0, config_overrides=TINY))
    # Continued with a tenth of the lr: the restored Adam keeps its state but takes this run's lr.
    slower = config.copy(copy_frozen=False).training(lr=config.lr / 10)
    started, reference, fresh = (
        tune_run.starting_from(slower, str(checkpoint)).build(), Algorithm.from_checkpoint(str(checkpoint)), config.build()
    )

    def lrs(algo: Algorithm) -> List[float]:
        (optimizers,) = [r.get() for r in algo.learner_group.foreach_learner(lambda learner: learner.meta_optimizers())]
        return [group["lr"] for optimizer in optimizers for group in optimizer.param_groups]

    try:
        assert lrs(started) == [pytest.approx(config.lr / 10)] and lrs(reference) == [pytest.approx(config.lr)]
        assert started.iteration == reference.iteration == 3 and fresh.iteration == 0
        theta, expected = started.theta_holder.theta_weights(), reference.theta_holder.theta_weights()
        for name in expected:
            np.testing.assert_array_equal(theta[name], expected[name], err_msg=name)
        random_state = started.get_state(components=[])[RANDOM_STATE_KEY]
        assert random_state == reference.get_state(components=[])[RANDOM_STATE_KEY]
        assert random_state != fresh.get_state(components=[])[RANDOM_STATE_KEY]
    finally:
        for algo in (started, reference, fresh):
            algo.stop()

    # A checkpoint this file cannot continue, or both flags, is one line before Ray starts.
    code = main(train_command(tmp_path / "other", "--from-checkpoint", str(tmp_path / "first"),
                              "--config-override", "model_config.fcnet_hiddens=[8]")[3:])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and len(err.splitlines()) == 1, err
    assert "cannot continue it with this file" in err and "model_config.fcnet_hiddens [64, 64], this run [8]" in err, err
    code = main(["train", str(NAV2D), "--resume", "--from-checkpoint", str(tmp_path / "first")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and len(err.splitlines()) == 1 and "give one of them" in err, err


def test_a_killed_continuation_resumes_with_plain_resume(tmp_path: Path) -> None:
    """A run started ``--from-checkpoint`` and killed goes on with just ``--resume``.

    Tune does not save the param space, so the resumed trial's ``on_algorithm_init``
    callback must be rebuilt from the checkpoint the experiment folder records; without
    it RLlib called Tune's unresolved placeholder (``'list' object is not callable``).
    """
    done = subprocess.run(train_command(tmp_path / "first", "--stop-iters", "2"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    continued = train_command(tmp_path / "continued", "--from-checkpoint", str(tmp_path / "first"))
    kill_at_checkpoints(continued, tmp_path / "continued", 2)

    resumed = subprocess.run(train_command(tmp_path / "continued", "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    steps = lifetime_steps_by_iteration(tmp_path / "continued")
    # Iterations 3.. go on from the first run's 2; the resumed part ends at STOP_ITERS.
    assert min(steps) == 3 and max(steps) == STOP_ITERS, steps
    assert steps == {i: i * ENV_STEPS_PER_ITERATION for i in range(3, STOP_ITERS + 1)}, steps
