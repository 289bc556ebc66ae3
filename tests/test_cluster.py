"""Multi-node: EnvRunners on both nodes of a 2-node ``ray.cluster_utils.Cluster`` and 2 Learners.

The cluster needs a Ray instance of its own, so the run happens in a child process
(``cluster_run.py``); this test checks what it reports.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path


def test_runners_on_two_nodes_and_two_learners_train(tmp_path: Path) -> None:
    script = Path(__file__).with_name("cluster_run.py")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["nodes"]) == 2
    assert set(report["runner_nodes"]) == set(report["nodes"]), report  # runners on both nodes
    assert len(report["learner_nodes"]) == 2 and set(report["learner_nodes"]) <= set(report["nodes"])
    assert report["same_theta"], "the two Learners' theta diverged"
    assert report["training_iteration"] == 2
    assert report["env_steps"] == 2 * 3 * 2 * 2 * 100  # iterations x tasks x steps x episodes x horizon
    assert math.isfinite(report["adaptation_delta"])
