"""The diagnostic ladder's first rung: can MAML's outer loop learn plain RL as fast as PPO?

    python benchmarks/diagnostic_ladder.py --env-steps 1500000            # ~10 min on 2 cores
    python benchmarks/diagnostic_ladder.py --maml baseline=linear --maml maml_optimizer_steps=20

*Oracle*: HalfCheetahRandDirec with the direction fixed to +1 (``directions: [1.0]``)
and a negligible ``inner_lr`` (1e-6), so MAML's meta-update is a plain policy
gradient on the pre-adaptation data's successor. Built-in PPO (``PPOConfig``: batch
4,000, 10 epochs, minibatch 256) runs beside it on the same env and env-step budget,
in the same process tree. A MAML change that breaks learning shows up here within
minutes, before any hour-long meta-RL run; a slow one shows as a gap to PPO.

Writes ``<output>/oracle_curves.csv`` (algorithm, env steps, mean return) and
``<output>/oracle_curves.png``, and prints the returns at fixed env-step marks.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import ray
import yaml
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_maml  # noqa: F401  (registers envs and MAML)
from rllib_maml import MAMLConfig

ENV = "rllib_maml/HalfCheetahRandDirec-v0"
ORACLE_ENV_CONFIG = {"directions": [1.0]}


def curve(algo: Any, env_steps: int, label: str) -> List[Tuple[int, float]]:
    """Trains ``algo`` for ``env_steps`` env steps; ``(lifetime env steps, mean return)`` per iteration."""
    points: List[Tuple[int, float]] = []
    start = time.perf_counter()
    while not points or points[-1][0] < env_steps:
        result = algo.train()
        runners = result["env_runners"]
        points.append((int(runners["num_env_steps_sampled_lifetime"]), float(runners["episode_return_mean"])))
        print(f"{label:>4}  {points[-1][0]:>9,d} env steps  return {points[-1][1]:8.1f}  ({time.perf_counter() - start:5.0f} s)", flush=True)
    return points


def value_at(points: List[Tuple[int, float]], steps: int, window: int = 3) -> float:
    """Mean return of the ``window`` iterations up to ``steps`` env steps (NaN past the curve's end)."""
    before = [r for s, r in points if s <= steps][-window:]
    return sum(before) / len(before) if before and points[-1][0] >= steps else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-steps", type=int, default=1_500_000)
    parser.add_argument("--ppo-env-steps", type=int, help="PPO's budget (default: --env-steps; PPO is ~3x slower per env step)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="results/diagnostic_ladder")
    parser.add_argument("--maml", action="append", default=[], metavar="KEY=VALUE",
                        help="a MAMLConfig.training override (VALUE is YAML), e.g. baseline=linear; repeatable")
    args = parser.parse_args()
    overrides: Dict[str, Any] = {}
    for item in args.maml:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--maml {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    curves: Dict[str, List[Tuple[int, float]]] = {}
    maml = (
        MAMLConfig()
        .environment(ENV, env_config=ORACLE_ENV_CONFIG)
        .env_runners(num_env_runners=2, num_envs_per_env_runner=50)
        .training(**{"meta_batch_size": 10, "episodes_per_task": 10, "inner_lr": 1e-6, "lr": 1e-3, **overrides})
        .debugging(seed=args.seed)
        .build_algo()
    )
    curves["MAML"] = curve(maml, args.env_steps, "MAML")
    maml.stop()
    ppo = (
        PPOConfig()
        .environment(ENV, env_config=ORACLE_ENV_CONFIG)
        .env_runners(num_env_runners=2, num_envs_per_env_runner=5)
        .training(train_batch_size_per_learner=4000, minibatch_size=256, num_epochs=10)
        .debugging(seed=args.seed)
        .build_algo()
    )
    curves["PPO"] = curve(ppo, args.ppo_env_steps or args.env_steps, "PPO")
    ppo.stop()
    ray.shutdown()

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "oracle_curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["algorithm", "env_steps", "episode_return_mean"])
        for name, points in curves.items():
            writer.writerows((name, s, f"{r:.3f}") for s, r in points)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot([s / 1e6 for s, _ in points], [r for _, r in points], label=name)
    ax.set_xlabel("env steps (millions)")
    ax.set_ylabel("mean episode return (forward running)")
    ax.set_title("Oracle rung: MAML (inner_lr 1e-6) vs built-in PPO")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output / "oracle_curves.png", dpi=120)

    marks = [m for m in (300_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000) if m <= args.env_steps]
    print(f"\nOracle rung on {ENV} {ORACLE_ENV_CONFIG}, seed {args.seed}, MAML overrides {overrides or 'none'}")
    print("| env steps | " + " | ".join(curves) + " |\n|---|" + "---|" * len(curves))
    for mark in marks:
        print(f"| {mark:,d} | " + " | ".join(f"{value_at(p, mark):.1f}" for p in curves.values()) + " |")
    print(f"(mean of the last 3 iterations up to each mark, nan past a run's budget; curves in {output})")


if __name__ == "__main__":
    main()
