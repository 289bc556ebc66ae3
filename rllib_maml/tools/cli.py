"""The ``rllib-maml`` command: train a tuned example, compare or evaluate checkpoints.

.. code-block:: bash

    rllib-maml train tuned_examples/navigation2d.yaml --output results
    rllib-maml train tuned_examples/navigation2d.yaml --output results --resume  # after a crash
    rllib-maml train tuned_examples/navigation2d.yaml --output results-longer --stop-timesteps 800000 \\
        --from-checkpoint results/navigation2d-maml  # a finished run, continued to a larger budget
    rllib-maml train tuned_examples/navigation2d-ppo.yaml --output results
    tensorboard --logdir results
    rllib-maml compare --maml results/navigation2d-maml --ppo results/navigation2d-ppo \\
        --tasks 20 --steps 3 --output results/compare-navigation2d
    rllib-maml evaluate results/navigation2d-maml --tasks 20 --steps 3

A checkpoint argument may be a checkpoint folder or any folder above one (a Tune
trial or experiment folder): the newest ``checkpoint_*`` below it is used.

A mistake in the inputs (missing or broken file, a YAML that is not a Tune
experiment, an unknown env or config key, a checkpoint of the wrong algorithm)
ends the command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from rllib_maml.tools.errors import UserError

#: Exit status for input mistakes (as argparse's own usage errors).
EXIT_USAGE = 2
#: Exit status when a Tune trial failed.
EXIT_FAILED = 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rllib-maml", description="MAML with PPO inner loops on RLlib: train tuned examples, compare checkpoints."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,compare,evaluate}")

    train = sub.add_parser("train", help="run a Tune experiment YAML (run: MAML or run: PPO)")
    train.add_argument("file", help="a tuned_examples/*.yaml file (classic Tune experiment format)")
    train.add_argument("--stop-iters", type=_positive_int, help="also stop after N training iterations")
    train.add_argument("--stop-timesteps", type=_positive_int, help="env-step budget (replaces the file's)")
    train.add_argument("--num-env-runners", type=_non_negative_int, help="EnvRunner actors (0: sample in the trial)")
    train.add_argument("--output", help="results folder (Tune storage_path; default ~/ray_results)")
    train.add_argument(
        "--checkpoint-freq", type=_non_negative_int, metavar="N",
        help="checkpoint every N iterations (replaces the file's checkpoint_freq; 0: only at the end)",
    )
    train.add_argument(
        "--resume", action="store_true",
        help="continue the killed or failed run of this experiment under --output from its newest checkpoint "
        "(give the same file and options; the original stop criteria apply)",
    )
    train.add_argument(
        "--from-checkpoint", metavar="CHECKPOINT",
        help="start from this checkpoint of a run of the same file (weights, optimizer, env-step and iteration "
        "counters, task draws), as a new experiment under --output: a finished run continued to a larger "
        "--stop-timesteps",
    )
    train.add_argument(
        "--config-override", action="append", default=[], metavar="KEY=VALUE",
        help="set a config key (VALUE is YAML; KEY may be dotted, e.g. env_config.morphologies=[Ant]); repeatable",
    )

    compare = sub.add_parser("compare", help="adaptation curves of a MAML and a PPO checkpoint on the same tasks")
    compare.add_argument("--maml", required=True, help="MAML checkpoint (or a trial/experiment folder holding one)")
    compare.add_argument("--ppo", required=True, help="PPO checkpoint on the same env (or a folder holding one)")
    compare.add_argument("--output", default="results/compare", help="folder for the CSV, markdown and PNG (default: %(default)s)")
    _add_eval_args(compare)

    evaluate = sub.add_parser("evaluate", help="print the adaptation curve of one checkpoint")
    evaluate.add_argument("checkpoint", help="checkpoint (or a trial/experiment folder holding one)")
    evaluate.add_argument(
        "--video", metavar="DIR",
        help="also write a GIF per held-out task and inner step (0..--steps) of the policy's mean action into DIR "
        "(MuJoCo envs; headless through EGL)",
    )
    evaluate.add_argument("--video-tasks", type=_positive_int, default=2, help="tasks to film (default: %(default)s)")
    evaluate.add_argument("--ppo", help="with --video: also film this PPO checkpoint's policy after the same inner steps")
    _add_eval_args(evaluate)
    return parser


def _add_eval_args(parser: argparse.ArgumentParser) -> None:
    from rllib_maml.tools.compare import HELD_OUT_SEED

    parser.add_argument("--tasks", type=_positive_int, default=10, help="held-out tasks (default: %(default)s)")
    parser.add_argument("--steps", type=_non_negative_int, default=3, help="inner adaptation steps K (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="seed of the held-out task draw")
    parser.add_argument("--num-env-runners", type=_non_negative_int, help="EnvRunner actors (default: as trained)")


# --- commands ----------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from rllib_maml.tools import experiment as ye
    from rllib_maml.tools import tune_run

    if args.resume and args.from_checkpoint:  # a continuation's --resume finds its checkpoint itself
        raise UserError(
            "train: --resume continues this experiment (one started --from-checkpoint too), "
            "--from-checkpoint starts a new one; give one of them"
        )
    spec = ye.apply_overrides(
        ye.load_experiment(args.file),
        stop_iters=args.stop_iters,
        stop_timesteps=args.stop_timesteps,
        num_env_runners=args.num_env_runners,
        config_overrides=args.config_override,
        checkpoint_freq=args.checkpoint_freq,
    )
    config = ye.build_config(spec)
    _check_cpus(ye.required_cpus(config))
    start_from = None
    if args.from_checkpoint:  # before Ray starts: a readable checkpoint this file's config can continue
        from rllib_maml.tools.checkpoints import read_checkpoint, require_same_run

        info = read_checkpoint(args.from_checkpoint, "--from-checkpoint")
        require_same_run(info, config, "--from-checkpoint")
        start_from = str(info.path)
    if args.resume:  # before Ray starts: the run exists and its newest checkpoints are readable
        from rllib_maml.tools.checkpoints import check_checkpoint_files, newest_checkpoints

        experiment = tune_run.resumable_path(spec, args.output)
        tune_run.check_resume_overrides(experiment, args.config_override)
        for checkpoint in newest_checkpoints(experiment):
            check_checkpoint_files(checkpoint, "--resume")
    elif tune_run.experiment_path(spec, args.output).exists():
        print(
            f"rllib-maml: note: {tune_run.experiment_path(spec, args.output)} exists; this starts a new run beside it "
            "(add --resume to continue that one)",
            file=sys.stderr,
        )
    with _ray_started():
        outcome = tune_run.run_experiment(spec, config, args.output, resume=args.resume, from_checkpoint=start_from)
    print(f"\nExperiment:  {outcome.experiment_path}")
    for trial_path, checkpoint, result in zip(outcome.trial_paths, outcome.checkpoints, outcome.last_results):
        print(f"Results:     {trial_path}")
        print(f"Checkpoint:  {checkpoint or '(none written)'}")
        from rllib_maml.algorithm.metrics import ADAPTATION_DELTA, MAML_RESULTS

        maml = result.get(MAML_RESULTS) or {}
        if ADAPTATION_DELTA in maml:
            print(f"Last {MAML_RESULTS}/{ADAPTATION_DELTA}: {float(maml[ADAPTATION_DELTA]):.3f}")
    print(f"TensorBoard: tensorboard --logdir {outcome.experiment_path}")
    for error in outcome.errors:
        print(f"rllib-maml: error: a trial failed: {error}", file=sys.stderr)
    return EXIT_FAILED if outcome.errors else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rllib_maml.tools import compare as cmp

    plan = cmp.plan_compare(args.maml, args.ppo)
    with _ray_started():
        paths = cmp.compare(
            plan, num_tasks=args.tasks, num_steps=args.steps, output=args.output,
            seed=args.seed, num_env_runners=args.num_env_runners,
        )
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind:>12}: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rllib_maml.tools import compare as cmp

    info = cmp.plan_evaluate(args.checkpoint)
    if args.ppo and not args.video:
        raise UserError("evaluate --ppo films the PPO policy and needs --video DIR (for curves of both: rllib-maml compare)")
    ppo = cmp.read_checkpoint(args.ppo, "--ppo") if args.ppo else None
    if ppo is not None:
        cmp.require_non_maml(ppo, "--ppo")
    with _ray_started():
        curve = cmp.evaluate(
            info, num_tasks=args.tasks, num_steps=args.steps, seed=args.seed,
            num_env_runners=args.num_env_runners,
        )
        print(cmp.markdown_table([curve]) + cmp.per_group_tables([curve]))
        if args.video:
            paths = cmp.videos(
                info, num_tasks=min(args.video_tasks, args.tasks), num_steps=args.steps, output=args.video,
                seed=args.seed, num_env_runners=args.num_env_runners, ppo=ppo,
            )
            print(f"{len(paths)} GIFs in {args.video}: " + ", ".join(p.name for p in paths))
    return 0


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate}


def _check_cpus(needed: float) -> None:
    import ray

    if ray.is_initialized():
        available = ray.cluster_resources().get("CPU", 0.0)
    else:  # what ray.init() will find (this process's CPU affinity, where the OS has it)
        available = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if needed > available:
        raise UserError(
            f"one trial needs {needed:g} CPUs (main process + EnvRunners) but only {available:g} exist; "
            "lower --num-env-runners"
        )


class _ray_started:
    """Starts Ray (quietly, without the dashboard) unless it runs already; stops what it started."""

    def __enter__(self) -> None:
        import ray

        self.started = not ray.is_initialized()
        if self.started:
            ray.init(include_dashboard=False, configure_logging=True, logging_level="WARNING")

    def __exit__(self, *exc: object) -> None:
        import ray

        if self.started:
            ray.shutdown()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``rllib-maml`` console script; returns the exit status."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if getattr(args, "video", None) and not os.environ.get("DISPLAY"):
        # Headless MuJoCo rendering; read when mujoco is first imported, so set it before.
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import rllib_maml  # noqa: F401  (registers the envs and MAML with Tune, for restoring too)

        return COMMANDS[args.command](args)
    except UserError as err:
        print(f"rllib-maml: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rllib-maml: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
