"""The README's main job: a short MAML run on Navigation2D, reporting held-out adaptation.

    python -m rllib_maml.tools.quickstart [--iterations 12] [--old-api-stack]

Prints the mean return on fixed held-out tasks before adaptation (step 0) and
after one inner step (step 1), once for the untrained policy and once after
training, so the effect of meta-training can be read off directly.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional, Tuple

import ray

from rllib_maml.algorithm.env_factory import held_out_tasks
from rllib_maml.algorithm.maml import MAMLConfig
from rllib_maml.algorithm.metrics import MAML_RESULTS, adapt_return_key

ENV_ID = "rllib_maml/Navigation2D-v0"


def navigation2d_config(seed: int = 0, old_api_stack: bool = False) -> MAMLConfig:
    """The small Navigation2D setting used by the quickstart and the learning tests.

    ``old_api_stack`` is the one switch that moves it to RLlib's old API stack.
    """
    return (
        MAMLConfig()
        .api_stack(enable_rl_module_and_learner=not old_api_stack, enable_env_runner_and_connector_v2=not old_api_stack)
        .environment(ENV_ID)
        # 10 tasks x 10 sub-envs: every episode of an adaptation step in one vector pass.
        .env_runners(num_env_runners=0, num_envs_per_env_runner=100)
        .training(meta_batch_size=10, episodes_per_task=10, inner_lr=0.5, lr=3e-3)
        .debugging(seed=seed)
    )


def train_and_evaluate(
    iterations: int, num_eval_tasks: int = 10, config: Optional[MAMLConfig] = None, verbose: bool = True
) -> Tuple[Dict[str, Any], Dict[str, Any], List[Dict[str, Any]]]:
    """Evaluates on held-out tasks of ``config``'s env (default: the Navigation2D setting),
    trains ``iterations`` iterations, evaluates again.

    Returns ``(curve_before_training, curve_after_training, training_results)``.
    """
    config = config or navigation2d_config()
    algo = config.build_algo()
    try:
        tasks = held_out_tasks(config, num_eval_tasks)
        before = algo.evaluate_adaptation(tasks=tasks, num_steps=1)
        results = []
        start = time.perf_counter()
        for i in range(iterations):
            result = algo.train()
            results.append(result)
            if verbose:
                maml = result[MAML_RESULTS]
                print(
                    f"iter {i + 1:3d}/{iterations}  {time.perf_counter() - start:6.0f}s  "
                    f"return before adaptation {maml[adapt_return_key(0)]:8.2f}  "
                    f"after 1 step {maml[adapt_return_key(1)]:8.2f}",
                    flush=True,
                )
        after = algo.evaluate_adaptation(tasks=tasks, num_steps=1)
        return before, after, results
    finally:
        algo.stop()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--eval-tasks", type=int, default=10)
    parser.add_argument("--old-api-stack", action="store_true", help="run on RLlib's old API stack (MAMLTorchPolicy)")
    args = parser.parse_args(argv)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = navigation2d_config(old_api_stack=args.old_api_stack)
        before, after, _ = train_and_evaluate(args.iterations, args.eval_tasks, config=config)
    finally:
        ray.shutdown()
    print(f"\nNavigation2D, {args.eval_tasks} held-out goals, mean episode return (higher is better):")
    print("| policy | before adaptation | after 1 inner step |\n|---|---|---|")
    for name, curve in (("untrained", before), (f"after {args.iterations} MAML iterations", after)):
        print(f"| {name} | {curve[adapt_return_key(0)]:.2f} | {curve[adapt_return_key(1)]:.2f} |")


if __name__ == "__main__":
    main()
