"""How many of MAML's sampled env steps are dropped unfinished, per tuned YAML or checkpoint.

    python benchmarks/dropped_steps.py tuned_examples/multi-morphology-all.yaml \
        tuned_examples/halfcheetah-rand-direc.yaml --iterations 2
    python benchmarks/dropped_steps.py --checkpoint results/mm-all-s0/.../checkpoint_000008

A sampling call ends when its sub-envs have finished enough episodes; the episodes still
running then are dropped (RLlib's ``sample(num_episodes=...)``). Their steps were simulated,
so MAML counts them in ``num_env_steps_sampled`` (and the budget), and reports their share
as ``maml/dropped_env_steps_fraction``. Envs whose episodes all last the horizon drop
nothing; envs that terminate early (falls, goals reached) drop a share that depends on the
policy, so a trained checkpoint can differ from an untrained policy.

This builds each algorithm (the YAML's config, or the checkpoint's, with held-out
evaluation switched off), trains ``--iterations`` iterations and prints, per iteration, the
counted env steps and the dropped fraction. Training on from a checkpoint changes only
this process's copy, never the checkpoint.
"""

from __future__ import annotations

import argparse
from typing import Any, List, Tuple

from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED

from rllib_maml.algorithm.metrics import DROPPED_ENV_STEPS_FRACTION, MAML_RESULTS
from rllib_maml.tools.errors import UserError


def build(source: str, from_checkpoint: bool) -> Any:
    """The algorithm of a tuned YAML (``config.build_algo()``) or of a checkpoint."""
    if from_checkpoint:
        from rllib_maml.tools.checkpoints import read_checkpoint, require_maml
        from rllib_maml.tools.compare import restore_maml

        info = read_checkpoint(source)
        require_maml(info, "checkpoint")
        return restore_maml(info, info.config.copy(copy_frozen=False).evaluation(evaluation_interval=0))
    from rllib_maml.tools.experiment import apply_overrides, build_config, load_experiment

    spec = apply_overrides(load_experiment(source), config_overrides=["evaluation_interval=0"])
    return build_config(spec).build_algo()


def measure(source: str, from_checkpoint: bool, iterations: int) -> List[Tuple[int, float]]:
    """(counted env steps, dropped fraction) of each of ``iterations`` training iterations."""
    algo = build(source, from_checkpoint)
    try:
        rows = []
        for _ in range(iterations):
            result = algo.train()
            steps = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED])
            rows.append((steps, float(result[MAML_RESULTS][DROPPED_ENV_STEPS_FRACTION])))
        return rows
    finally:
        algo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("yamls", nargs="*", help="tuned example YAMLs (their untrained policy)")
    parser.add_argument("--checkpoint", action="append", default=[], help="a MAML checkpoint (repeatable)")
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    if not args.yamls and not args.checkpoint:
        parser.error("give at least one YAML or --checkpoint")
    sources = [(y, False) for y in args.yamls] + [(c, True) for c in args.checkpoint]
    print("| source | iteration | env steps (counted) | dropped fraction |")
    print("|---|---:|---:|---:|")
    for source, from_checkpoint in sources:
        try:
            rows = measure(source, from_checkpoint, args.iterations)
        except UserError as err:  # a missing file, a broken YAML, a checkpoint of another algorithm
            parser.exit(2, f"dropped_steps.py: error: {err}\n")
        for i, (steps, fraction) in enumerate(rows):
            print(f"| {source} | {i + 1} | {steps} | {fraction:.3f} |", flush=True)


if __name__ == "__main__":
    main()
