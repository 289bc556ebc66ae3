"""Run by ``test_cluster.py`` in its own process: MAML on a 2-node ``ray.cluster_utils.Cluster``.

Writes ``report.json`` in the working directory: the two nodes' ids, the nodes of the
EnvRunners and Learners, and the last iteration's results. A file, not stdout: Ray's
own messages (a raylet's note on a worker it killed at shutdown) can follow on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

import rllib_maml  # noqa: F401  (registers the envs)
from rllib_maml import MAMLConfig


def main() -> None:
    # 2 + 2 logical CPUs; 3 runners of 1 CPU cannot share one node, so they span both.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        config = (
            MAMLConfig()
            .environment("rllib_maml/Navigation2D-v0")
            .env_runners(num_env_runners=3, num_envs_per_env_runner=2, num_cpus_per_env_runner=1)
            .learners(num_learners=2, num_cpus_per_learner=0.5)
            .training(meta_batch_size=3, episodes_per_task=2, maml_optimizer_steps=1)
            .debugging(seed=0)
        )
        algo = config.build_algo()
        try:
            for _ in range(2):
                result = algo.train()

            def node(_: object) -> str:
                return ray.get_runtime_context().get_node_id()

            runner_nodes = algo.env_runner_group.foreach_env_runner(node, local_env_runner=False)
            learner_nodes = [r.get() for r in algo.learner_group.foreach_learner(node)]
            thetas = [r.get() for r in algo.learner_group.foreach_learner(lambda learner: learner.theta_weights())]
            same_theta = all((thetas[0][k] == t[k]).all() for t in thetas for k in thetas[0])
        finally:
            algo.stop()
        Path("report.json").write_text(json.dumps({
            "nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
            "runner_nodes": runner_nodes,
            "learner_nodes": learner_nodes,
            "same_theta": bool(same_theta),
            "training_iteration": result["training_iteration"],
            "env_steps": result["env_runners"]["num_env_steps_sampled_lifetime"],
            "adaptation_delta": result["maml"]["adaptation_delta"],
        }))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
