"""``rllib-maml``: every tuned example trains (the MAML files and navigation2d-ppo.yaml through
Tune), train -> compare end to end, one-line errors.

The runs are tiny (one iteration, budget overrides) and in-process, on the session's
Ray instance (``ray_session``); the whole file takes a few minutes on 2 CPUs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import yaml

from rllib_maml.tools.cli import EXIT_USAGE, main
from rllib_maml.tools.experiment import STEP_BUDGET_KEY, load_experiment

ROOT = Path(__file__).resolve().parents[1]
TUNED = ROOT / "tuned_examples"
YAMLS = sorted(TUNED.glob("*.yaml"))
MAML_EXAMPLES = {
    "navigation2d": "rllib_maml/Navigation2D-v0",
    "pendulum-mass": "rllib_maml/PendulumMass-v0",
    "halfcheetah-rand-direc": "rllib_maml/HalfCheetahRandDirec-v0",
    "halfcheetah-rand-vel": "rllib_maml/HalfCheetahRandVel-v0",
    "ant-rand-direc": "rllib_maml/AntRandDirec-v0",
    "ant-rand-goal": "rllib_maml/AntRandGoal-v0",
    "multi-morphology-ant-halfcheetah": "rllib_maml/MultiMorphologyLocomotion-v0",
    "multi-morphology-walker-hopper": "rllib_maml/MultiMorphologyLocomotion-v0",
    "multi-morphology-all": "rllib_maml/MultiMorphologyLocomotion-v0",
}
MORPHOLOGY_SUBSETS = {
    "multi-morphology-ant-halfcheetah": {"Ant", "HalfCheetah"},
    "multi-morphology-walker-hopper": {"Walker2d", "Hopper"},
    "multi-morphology-all": {"Ant", "HalfCheetah", "Walker2d", "Hopper", "Swimmer"},
}
NAV2D = ("navigation2d", "navigation2d-ppo")
#: Overrides that make one iteration take seconds.
TINY = {
    "MAML": ["meta_batch_size=1", "episodes_per_task=1", "num_envs_per_env_runner=1", "maml_optimizer_steps=1"],
    "PPO": ["train_batch_size_per_learner=64", "minibatch_size=64", "num_epochs=1", "num_envs_per_env_runner=1"],
}


def train_args(path: Path, output: Path, *extra: str) -> List[str]:
    overrides = [a for o in TINY[load_experiment(path).run] for a in ("--config-override", o)]
    return ["train", str(path), "--stop-iters", "1", "--num-env-runners", "0", "--output", str(output), *overrides, *extra]


def checkpoints_under(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("checkpoint_*") if (p / "class_and_ctor_args.pkl").is_file())


def assert_one_line_error(capsys: pytest.CaptureFixture, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert len(err.splitlines()) == 1 and err.startswith("rllib-maml: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


# --- the tuned examples ------------------------------------------------------------
#: Meta-optimizer variants of a MAML example (``<name>-<meta_optimizer>.yaml``).
META_OPTIMIZER_VARIANTS = {"halfcheetah-rand-direc-trpo": "trpo", "halfcheetah-rand-direc-vpg": "vpg"}


def test_every_task_distribution_has_a_maml_and_a_ppo_file_with_the_same_budget() -> None:
    names = {p.stem for p in YAMLS}
    assert names == set(MAML_EXAMPLES) | {f"{n}-ppo" for n in MAML_EXAMPLES} | set(META_OPTIMIZER_VARIANTS)
    for name, meta_optimizer in META_OPTIMIZER_VARIANTS.items():
        variant, base = load_experiment(TUNED / f"{name}.yaml"), load_experiment(TUNED / f"{name.rsplit('-', 1)[0]}.yaml")
        assert variant.run == "MAML" and variant.config["meta_optimizer"] == meta_optimizer
        assert variant.config["env"] == base.config["env"] and variant.stop == base.stop
    for name, env_id in MAML_EXAMPLES.items():
        maml, ppo = load_experiment(TUNED / f"{name}.yaml"), load_experiment(TUNED / f"{name}-ppo.yaml")
        assert (maml.run, ppo.run) == ("MAML", "PPO")
        assert maml.config["env"] == ppo.config["env"] == env_id
        assert maml.config.get("env_config") == ppo.config.get("env_config")
        assert maml.stop == ppo.stop and maml.stop[STEP_BUDGET_KEY] > 0
        # The same network; learn_inner_lr is MAML's own (compare hands its learned sizes to PPO).
        assert {k: v for k, v in maml.config["model_config"].items() if k != "learn_inner_lr"} == ppo.config["model_config"]
        if name in MORPHOLOGY_SUBSETS:
            assert set(maml.config["env_config"]["morphologies"]) == MORPHOLOGY_SUBSETS[name]


@pytest.mark.parametrize("path", [p for p in YAMLS if p.stem.endswith("-ppo")], ids=lambda p: p.stem)
def test_each_ppo_header_states_the_budget_it_runs(path: Path) -> None:
    """The header's "same <N>M env-step budget" is the file's own stop (a budget raised in
    ``stop`` once left a stale "6M" in multi-morphology-all-ppo.yaml)."""
    header = " ".join(line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#"))
    (stated,) = re.findall(r"same (\d+(?:\.\d+)?)M env-step budget", header)
    assert float(stated) * 1e6 == load_experiment(path).stop[STEP_BUDGET_KEY], path.name


@pytest.mark.parametrize("path", [p for p in YAMLS if not p.stem.endswith("-ppo")], ids=lambda p: p.stem)
def test_the_run_line_of_each_maml_yaml_is_a_working_command_and_names_its_baseline(path: Path) -> None:
    """The header's ``# Run:`` command parses with the CLI's own parser as ``train <this
    file>``, and the baseline it names is a non-MAML experiment on the same env and budget."""
    from rllib_maml.tools.cli import build_parser

    (run_line,) = [line for line in path.read_text().splitlines() if line.startswith("# Run:")]
    command, _, baseline_text = run_line.removeprefix("# Run:").partition(";")
    argv = command.split()
    assert argv[0] == "rllib-maml", run_line
    args = build_parser().parse_args(argv[1:])
    assert args.command == "train" and (ROOT / args.file).resolve() == path.resolve(), run_line
    (baseline_name,) = [w.rstrip(".") for w in baseline_text.split() if w.endswith((".yaml", ".yaml."))]
    maml, baseline = load_experiment(path), load_experiment(TUNED / baseline_name)
    assert baseline.run != "MAML" and baseline.config["env"] == maml.config["env"], baseline_name
    assert baseline.stop == maml.stop


#: Baseline files trained in-process (RLlib's own PPO; navigation2d-ppo.yaml also runs through
#: ``rllib-maml train`` and Tune in ``nav2d_runs``): a Tune trial's own worker process costs
#: about 10 s more per file than the iteration itself.
IN_PROCESS = [p for p in YAMLS if p.stem.endswith("-ppo") and p.stem not in NAV2D]


@pytest.mark.parametrize("path", IN_PROCESS, ids=lambda p: p.stem)
def test_every_baseline_yaml_trains_one_tiny_iteration(ray_session: None, path: Path) -> None:
    """The file's config, with the same tiny overrides, builds and trains one iteration, and its
    stop criteria are keys of the result (Tune stops a trial on them)."""
    from ray.tune.utils import flatten_dict

    from rllib_maml.tools.experiment import apply_overrides, build_config

    spec = load_experiment(path)
    tiny = apply_overrides(spec, num_env_runners=0, config_overrides=TINY[spec.run])
    algo = build_config(tiny).build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["env_runners"]["num_env_steps_sampled"] > 0
    assert set(spec.stop) <= set(flatten_dict(result)), sorted(spec.stop)  # Tune's own view of a result


@pytest.mark.parametrize("path", [p for p in YAMLS if p not in IN_PROCESS], ids=lambda p: p.stem)
def test_every_yaml_trains_one_tiny_iteration(ray_session: None, path: Path, tmp_path: Path, request, capsys) -> None:
    if path.stem in NAV2D:  # trained by the nav2d_runs fixture through the same command; don't pay twice
        run = request.getfixturevalue("nav2d_runs")[path.stem]
        experiment, out = run["experiment"], run["stdout"]
    else:
        assert main(train_args(path, tmp_path)) == 0
        experiment, out = tmp_path / load_experiment(path).name, capsys.readouterr().out
    assert checkpoints_under(experiment), out
    assert f"Checkpoint:  {checkpoints_under(experiment)[-1]}" in out
    assert f"tensorboard --logdir {experiment}" in out


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_every_yaml_as_written_fits_the_two_core_machine(path: Path) -> None:
    """The tiny runs above use ``--num-env-runners 0``; as written, each file's trial must
    reserve at most the 2 CPUs of this project's machines, or ``rllib-maml train`` refuses it."""
    from rllib_maml.tools.experiment import build_config, required_cpus

    assert 0 < required_cpus(build_config(load_experiment(path))) <= 2


# --- train -> compare end to end ---------------------------------------------------
@pytest.fixture(scope="module")
def nav2d_runs(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """``rllib-maml train`` of navigation2d.yaml and navigation2d-ppo.yaml, two tiny iterations each."""
    out = tmp_path_factory.mktemp("nav2d_results")
    runs: Dict[str, Any] = {}
    for name in NAV2D:
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert main(train_args(TUNED / f"{name}.yaml", out, "--stop-iters", "2")) == 0
        runs[name] = {"experiment": out / load_experiment(TUNED / f"{name}.yaml").name, "stdout": stdout.getvalue()}
    runs["maml"], runs["ppo"] = runs["navigation2d"]["experiment"], runs["navigation2d-ppo"]["experiment"]
    return runs


def test_train_writes_maml_metrics_to_tensorboard(nav2d_runs: Dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted(nav2d_runs["maml"].rglob("events.out.tfevents.*"))
    assert event_files
    events = EventAccumulator(str(event_files[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("ray/tune/maml/adaptation_delta", "ray/tune/maml/episode_return_mean_adapt_1"):
        assert tag in tags, sorted(tags)
    assert len(events.Scalars("ray/tune/maml/adaptation_delta")) == 2  # one per iteration
    assert len(checkpoints_under(nav2d_runs["maml"])) == 1  # --stop-iters 2 < checkpoint_freq: the final one


def test_compare_writes_csv_markdown_and_png(nav2d_runs: Dict[str, Any], tmp_path: Path, capsys) -> None:
    steps = 2
    args = ["compare", "--maml", str(nav2d_runs["maml"]), "--ppo", str(nav2d_runs["ppo"]),
            "--tasks", "2", "--steps", str(steps), "--output", str(tmp_path)]
    assert main(args) == 0
    with open(tmp_path / "adaptation_curves.csv") as f:
        rows = list(csv.DictReader(f))
    policies = ["MAML", "PPO + MAML inner update", "random init"]
    assert [(r["policy"], int(r["step"])) for r in rows] == [(p, k) for p in policies for k in range(steps + 1)]
    assert all(r["group"] == "all" and float(r["episode_return_mean"]) < 0 for r in rows)
    table = (tmp_path / "adaptation_curves.md").read_text()
    assert "| policy | step 0 | step 1 | step 2 | delta (K - 0) |" in table
    assert all(f"| {p} |" in table for p in policies)
    assert (tmp_path / "adaptation_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| MAML |" in capsys.readouterr().out


def test_compare_reports_each_body_of_a_multi_morphology_env(tmp_path: Path) -> None:
    """Per-group tables and panels: an overall gain must not hide a body that loses."""
    import struct

    from rllib_maml.tools import compare as cmp

    maml = cmp.Curve("MAML", [10.0, 30.0], {"Hopper": [0.0, 70.0], "Walker2d": [20.0, -10.0]})
    ppo = cmp.Curve("PPO + MAML inner update", [5.0, 6.0], {"Hopper": [4.0, 5.0], "Walker2d": [6.0, 7.0]})
    paths = cmp.write_outputs([maml, ppo], tmp_path / "two", {"env": "mm"})
    table = paths["markdown"].read_text()
    overall, hopper, walker = table.split("\n## ")
    assert "| MAML | 10.00 | 30.00 | +20.00 |" in overall
    assert hopper.startswith("Hopper") and "| MAML | 0.00 | 70.00 | +70.00 |" in hopper
    assert walker.startswith("Walker2d") and "| MAML | 20.00 | -10.00 | -30.00 |" in walker
    assert "| PPO + MAML inner update | 6.00 | 7.00 | +1.00 |" in walker
    single = cmp.write_outputs([cmp.Curve("MAML", maml.returns)], tmp_path / "one", {"env": "mm"})
    assert "## " not in single["markdown"].read_text()

    def png_width(path: Path) -> int:
        return struct.unpack(">I", path.read_bytes()[16:20])[0]

    assert png_width(paths["png"]) > 1.9 * png_width(single["png"])  # three panels, not one


def test_compare_splits_the_pre_adaptation_spread_into_task_and_noise(tmp_path: Path) -> None:
    """A spread across tasks that comes from the hidden task (forward vs backward) shows as a
    small spread across draws of the same task; per-task rows go to task_returns.csv."""
    from rllib_maml.tools import compare as cmp

    def row(i: int, direction: float, before: float, after: float) -> Dict[str, Any]:
        return {"task_index": i, "group": "Walker2d", "task": ("Walker2d", direction),
                "returns": [before, after], "episodes": [4, 4], "stderr": [3.0, 4.0]}

    rows = [row(0, 1.0, 290.0, 300.0), row(1, 1.0, 310.0, 320.0), row(2, -1.0, 0.0, 200.0), row(3, -1.0, 20.0, 220.0)]
    std, noise, same_task = cmp.pre_adaptation_spread(rows)
    assert std == pytest.approx(np.std([290, 310, 0, 20], ddof=1))
    assert same_task == pytest.approx(np.sqrt((100 + 100 + 100 + 100) / 2))  # pooled within (body, direction)
    assert noise == pytest.approx(3.0)
    assert np.isnan(cmp.pre_adaptation_spread([row(0, 1.0, 1.0, 2.0), row(1, -1.0, 3.0, 4.0)])[2])  # no repeats

    curve = cmp.Curve("MAML", [155.0, 260.0], {"Walker2d": [155.0, 260.0]}, tasks=rows)
    paths = cmp.write_outputs([curve, cmp.Curve("random init", [1.0, 2.0], {"Walker2d": [1.0, 2.0]})], tmp_path, {"env": "mm"})
    with open(paths["task_returns"]) as f:
        written = list(csv.DictReader(f))
    assert len(written) == 8 and {r["policy"] for r in written} == {"MAML"}
    assert [(r["task"], r["step"], float(r["episode_return_mean"])) for r in written[4:6]] == [
        ("('Walker2d', -1.0)", "0", 0.0), ("('Walker2d', -1.0)", "1", 200.0)]
    walker = paths["markdown"].read_text().split("\n## Walker2d")[1]
    assert f"| MAML | 4 | {std:.2f} | {same_task:.2f} | 3.00 |" in walker
    assert "| random init | " not in walker.split("Spread of")[1]  # no per-task rows, no spread row
    assert "task_returns" not in cmp.write_outputs([cmp.Curve("MAML", [1.0, 2.0])], tmp_path / "none", {"env": "mm"})


def test_compare_pairs_maml_and_the_baseline_task_by_task(tmp_path: Path) -> None:
    """MAML minus PPO after the last step, task by task, with 2 standard errors across tasks."""
    from rllib_maml.tools import compare as cmp

    def rows(after: List[float], group: str = "Hopper") -> List[Dict[str, Any]]:
        return [{"task_index": i, "group": group, "task": (group, 1.0), "returns": [0.0, x], "episodes": [2, 2],
                 "stderr": [1.0, 1.0]} for i, x in enumerate(after)]

    maml, ppo = rows([10.0, 20.0, 30.0]), rows([5.0, 20.0, 20.0])
    mean, stderr = cmp.paired_difference(maml, ppo, step=1)
    assert mean == pytest.approx(5.0) and stderr == pytest.approx(np.std([5, 0, 10], ddof=1) / np.sqrt(3))
    assert cmp.paired_difference(maml, list(reversed(ppo)), step=1)[0] == pytest.approx(5.0)  # by task, not by order
    curves = [cmp.Curve("MAML", [0.0, 20.0], {"Hopper": [0.0, 20.0]}, tasks=maml),
              cmp.Curve("PPO", [0.0, 15.0], {"Hopper": [0.0, 15.0]}, tasks=ppo)]
    text = cmp.write_outputs(curves, tmp_path, {"env": "mm"})["markdown"].read_text()
    assert f"MAML minus PPO after 1 inner step, task by task: +5.00 ± {2 * stderr:.2f} (2 s.e. across 3 tasks)" in text
    assert "minus" not in cmp.paired_line([curves[0], cmp.Curve("PPO", [0.0, 15.0])])


def test_task_returns_benchmark_reads_compares_csv_per_body_and_direction(tmp_path: Path) -> None:
    """benchmarks/task_returns.py rebuilds compare's per-task rows from task_returns.csv."""
    from rllib_maml.tools import compare as cmp

    def row(i: int, direction: float, before: float, after: float) -> Dict[str, Any]:
        return {"task_index": i, "group": "Walker2d", "task": ("Walker2d", direction),
                "returns": [before, after], "episodes": [3, 3], "stderr": [2.0, 2.0]}

    maml = [row(0, 1.0, 50.0, 250.0), row(1, 1.0, 60.0, 260.0), row(2, -1.0, 280.0, 270.0)]
    ppo = [row(0, 1.0, 200.0, 240.0), row(1, 1.0, 200.0, 250.0), row(2, -1.0, 210.0, 245.0)]
    curves = [cmp.Curve("MAML", [130.0, 260.0], tasks=maml), cmp.Curve("PPO", [203.3, 245.0], tasks=ppo)]
    cmp.write_outputs(curves, tmp_path, {"env": "mm"})
    out = subprocess.run([sys.executable, "benchmarks/task_returns.py", str(tmp_path), "--save-csv", str(tmp_path / "kept.csv")],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent).stdout
    assert "| ('Walker2d', 1.0) | 2 | 55.0 → 255.0 | 200.0 → 245.0 |" in out
    assert "| ('Walker2d', -1.0) | 1 | 280.0 → 270.0 | 210.0 → 245.0 |" in out
    std, noise, same_task = cmp.pre_adaptation_spread(maml)
    assert f"std across tasks {std:.1f}, across draws of the same task {same_task:.1f}, evaluation noise 2.0." in out
    # MAML's deltas 200, 200 and -10: mean 130, s.e. 70.
    assert "MAML after 1 inner step minus before, task by task: +130.0 ± 140.0 (2 s.e., 3 tasks)." in out
    mean, stderr = cmp.paired_difference(maml, ppo, 1)
    assert f"MAML minus PPO after 1 inner step, task by task: {mean:+.1f} ± {2 * stderr:.1f} (2 s.e., 3 tasks)" in out
    assert (tmp_path / "kept.csv").read_text() == (tmp_path / "task_returns.csv").read_text()


def test_compare_accepts_runs_that_differ_only_in_task_shares() -> None:
    """A MAML run trained with more Ant tasks is compared with a PPO run on the default shares;
    any other env_config difference (or another env) is refused."""
    from types import SimpleNamespace

    from rllib_maml.tools import compare as cmp

    def info(env: str, **env_config: Any) -> Any:
        return SimpleNamespace(config=SimpleNamespace(env=env, env_config=env_config))

    multi, nav = "rllib_maml/MultiMorphologyLocomotion-v0", "rllib_maml/Navigation2D-v0"
    shares = info(multi, directions=True, shares={"Ant": 4})
    assert cmp.env_config_difference(shares, info(multi, directions=True)) == {"shares"}
    assert cmp.env_config_difference(shares, info(multi, directions=False)) is None
    assert cmp.env_config_difference(info(nav), info(multi)) is None
    assert cmp.env_config_difference(info(nav, goal_range=1.0), info(nav)) is None  # nav2d declares no such option
    assert cmp.same_env(shares, shares) and not cmp.same_env(shares, info(multi, directions=True))


def test_compare_gives_the_baseline_mamls_learned_step_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``learn_inner_lr`` MAML steps with learned per-body sizes; the PPO baseline is
    fine-tuned with the same ones (not the config's ``inner_lr``), so the inner step is the same."""
    from types import SimpleNamespace

    from rllib_maml.tools import compare as cmp

    def info(**model_config: Any) -> Any:
        return SimpleNamespace(config=SimpleNamespace(_model_config=model_config))

    learned = np.array([0.3, -0.2], np.float32)
    monkeypatch.setattr(cmp, "module_weights", lambda checkpoint, flag: {"inner_lr_log_scale": learned, "log_std": None})
    ppo_weights = {"log_std": np.zeros(2, np.float32)}
    weights = cmp.same_inner_step(info(learn_inner_lr=True), ppo_weights)
    assert weights["inner_lr_log_scale"] is learned and weights["log_std"] is ppo_weights["log_std"]
    assert cmp._baseline_model_config(info(fcnet_hiddens=[8]), weights) == {"fcnet_hiddens": [8], "learn_inner_lr": True}
    assert cmp.same_inner_step(info(), ppo_weights) is ppo_weights
    assert cmp._baseline_model_config(info(fcnet_hiddens=[8]), ppo_weights) == {"fcnet_hiddens": [8]}


def test_videos_film_the_baseline_with_mamls_learned_step_sizes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``evaluate --video --ppo`` films the PPO baseline after the inner step that ``compare``
    measures: with MAML's learned per-body sizes, not the config's fixed ``inner_lr``."""
    from types import SimpleNamespace

    from rllib_maml.tools import compare as cmp
    from rllib_maml.tools import video

    def info(**model_config: Any) -> Any:
        return SimpleNamespace(config=SimpleNamespace(_model_config=model_config), is_maml="learn_inner_lr" in model_config)

    learned = np.array([0.3, -0.2], np.float32)
    ppo_weights = {"log_std": np.zeros(2, np.float32)}
    monkeypatch.setattr(cmp, "module_weights", lambda checkpoint, flag: (
        {"inner_lr_log_scale": learned} if checkpoint.is_maml else dict(ppo_weights)))
    monkeypatch.setattr(cmp, "adaptation_config", lambda checkpoint, model_config=None, **kw: SimpleNamespace(model_config=model_config))
    monkeypatch.setattr(cmp, "held_out_tasks", lambda config, num_tasks, seed: [])
    monkeypatch.setattr(video, "make_render_env", lambda config: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(video, "adaptation_videos", lambda algo, config, tasks, num_steps, output, label: [])
    built: Dict[str, Any] = {}

    def adapter_of(config: Any, *, checkpoint: Any = None, weights: Any = None) -> Any:
        built["maml" if checkpoint is not None else "ppo"] = (config, weights)
        return SimpleNamespace(stop=lambda: None)

    monkeypatch.setattr(cmp, "adapter_of", adapter_of)
    cmp.videos(info(learn_inner_lr=True), num_tasks=1, num_steps=1, output=str(tmp_path), ppo=info(fcnet_hiddens=[8]))
    config, weights = built["ppo"]
    assert weights["inner_lr_log_scale"] is learned and set(weights) == {"inner_lr_log_scale", "log_std"}
    assert config.model_config == {"fcnet_hiddens": [8], "learn_inner_lr": True}


def test_compare_is_reproducible_on_the_same_held_out_tasks(nav2d_runs: Dict[str, Any]) -> None:
    from rllib_maml.tools import compare as cmp

    maml = cmp.read_checkpoint(nav2d_runs["maml"])
    config = cmp.adaptation_config(maml)
    assert [t.tolist() for t in cmp.held_out_tasks(config, 3, seed=7)] == [
        t.tolist() for t in cmp.held_out_tasks(config, 3, seed=7)
    ]
    ppo = cmp.read_checkpoint(nav2d_runs["ppo"])
    weights = cmp.module_weights(ppo, "--ppo")
    assert {"log_std", "pi.0.weight", "vf.0.weight"} <= set(weights)


@pytest.mark.parametrize("which", ["maml", "ppo"])
def test_evaluate_prints_the_adaptation_curve(nav2d_runs: Dict[str, Any], which: str, capsys) -> None:
    assert main(["evaluate", str(nav2d_runs[which]), "--tasks", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "| policy | step 0 | step 1 | delta (K - 0) |" in out
    assert ("| MAML |" if which == "maml" else "| PPO + MAML inner update |") in out


@pytest.mark.parametrize("name", ["module_state.pkl", "class_and_ctor_args.pkl", "metadata.json"])
def test_a_truncated_checkpoint_file_is_named_in_one_line(
    nav2d_runs: Dict[str, Any], name: str, tmp_path: Path, capsys
) -> None:
    original = checkpoints_under(nav2d_runs["maml"])[-1]
    copy = tmp_path / original.name
    shutil.copytree(original, copy)
    damaged = sorted(copy.rglob(name), key=lambda p: len(p.parts))[-1]  # the deepest: the policy's own
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    for args in (["evaluate", str(copy)], ["compare", "--maml", str(copy), "--ppo", str(nav2d_runs["ppo"])]):
        code = main(args)
        assert_one_line_error(capsys, code, f"file {damaged.relative_to(copy)} is unreadable or truncated")


def test_wrong_algorithm_checkpoints_fail_with_one_line(nav2d_runs: Dict[str, Any], tmp_path: Path, capsys) -> None:
    maml, ppo = str(nav2d_runs["maml"]), str(nav2d_runs["ppo"])
    code = main(["compare", "--maml", ppo, "--ppo", ppo, "--output", str(tmp_path)])
    assert_one_line_error(capsys, code, "--maml", "PPO checkpoint, not a MAML one")
    code = main(["compare", "--maml", maml, "--ppo", maml, "--output", str(tmp_path)])
    assert_one_line_error(capsys, code, "--ppo", "MAML checkpoint")
    code = main(["evaluate", str(tmp_path)])
    assert_one_line_error(capsys, code, "not an RLlib algorithm checkpoint")
    code = main(["compare", "--maml", str(tmp_path / "missing"), "--ppo", ppo])
    assert_one_line_error(capsys, code, "no such checkpoint directory")
    assert not list(tmp_path.iterdir())  # nothing written


def test_failed_trial_exits_non_zero_naming_the_error(ray_session: None, tmp_path: Path, capsys) -> None:
    args = train_args(TUNED / "navigation2d.yaml", tmp_path, "--config-override", "model_config.fcnet_activation=foo")
    assert main(args) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("rllib-maml: error: a trial failed: ") and "fcnet_activation" in last, last
    assert "error.txt" in last


# --- input errors ------------------------------------------------------------------
BAD_YAMLS = {
    "broken": ("exp:\n  run: MAML\n  env: [1, 2\n", "broken YAML at line"),
    "not_a_mapping": ("- run: MAML\n- env: x\n", "not a Tune experiment"),
    "no_run": ("exp:\n  env: rllib_maml/Navigation2D-v0\n", "not a Tune experiment"),
    "unknown_env": ("exp:\n  run: MAML\n  env: rllib_maml/NoSuchEnv-v0\n", "unknown env 'rllib_maml/NoSuchEnv-v0'"),
    "unknown_key": ("exp:\n  run: PPO\n  env: rllib_maml/Navigation2D-v0\n  config: {lrr: 0.1}\n", "['lrr']"),
    "unknown_algo": ("exp:\n  run: NoSuchAlgo\n  env: rllib_maml/Navigation2D-v0\n", "unknown algorithm"),
    "invalid_value": ("exp:\n  run: MAML\n  env: rllib_maml/Navigation2D-v0\n  config: {meta_batch_size: 0}\n",
                      "meta_batch_size=0"),
}


@pytest.mark.parametrize("case", sorted(BAD_YAMLS))
def test_bad_yaml_fails_with_one_line(case: str, tmp_path: Path, capsys) -> None:
    text, fragment = BAD_YAMLS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    assert_one_line_error(capsys, main(["train", str(path), "--output", str(tmp_path / "out")]), str(path), fragment)
    assert not (tmp_path / "out").exists()


def test_missing_file_and_bad_override_fail_with_one_line(tmp_path: Path, capsys) -> None:
    assert_one_line_error(capsys, main(["train", str(tmp_path / "nope.yaml")]), "no such file")
    good = str(TUNED / "navigation2d.yaml")
    assert_one_line_error(capsys, main(["train", good, "--config-override", "meta_batch_size"]), "KEY=VALUE")
    code = main(["train", good, "--num-env-runners", "64"])
    assert_one_line_error(capsys, code, "CPUs", "--num-env-runners")


def test_overrides_reach_the_config() -> None:
    from rllib_maml.tools.experiment import apply_overrides, build_config

    spec = apply_overrides(
        load_experiment(TUNED / "multi-morphology-all-ppo.yaml"),
        stop_iters=3, stop_timesteps=1000, num_env_runners=0,
        config_overrides=["env_config.morphologies=[Hopper, Swimmer]", "num_epochs=2"],
    )
    assert spec.stop == {STEP_BUDGET_KEY: 1000, "training_iteration": 3}
    config = build_config(spec)
    assert (config.num_env_runners, config.num_epochs) == (0, 2)
    assert config.env_config == {"morphologies": ["Hopper", "Swimmer"], "directions": True}
    # PPO on an rllib_maml env gets MAML's policy network and the env's action mask.
    assert config.rl_module_spec.module_class.__name__ == "MAMLTorchRLModule"
    assert config.model_config["action_masks"] == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]


def test_console_script_reports_errors_in_one_line(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("rllib-maml")
    if not script.exists():
        pytest.skip("the rllib-maml console script is not installed in this environment")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(["not", "an", "experiment"]))
    proc = subprocess.run([str(script), "train", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.strip().splitlines() == [f"rllib-maml: error: {bad}: not a Tune experiment file; "
                                                "expected NAME: {run: ALGO, env: ENV_ID, stop: {...}, config: {...}}"]


def test_relative_checkpoint_paths_are_made_absolute(tmp_path: Path, monkeypatch) -> None:
    """RLlib reads checkpoints through pyarrow, which rejects relative paths."""
    from rllib_maml.tools.checkpoints import CHECKPOINT_MARKER, resolve_checkpoint

    checkpoint = tmp_path / "run" / "checkpoint_000000"
    checkpoint.mkdir(parents=True)
    (checkpoint / CHECKPOINT_MARKER).write_text("{}")
    monkeypatch.chdir(tmp_path)
    resolved = resolve_checkpoint("run")
    assert resolved.is_absolute() and resolved == checkpoint.resolve()


def test_old_api_stack_maml_trains_and_evaluates_through_the_cli(ray_session: None, tmp_path: Path, capsys) -> None:
    """The YAML with the one api_stack switch as overrides; ``evaluate`` restores its theta."""
    from rllib_maml.tools import compare as cmp

    old_stack = ["enable_rl_module_and_learner=false", "enable_env_runner_and_connector_v2=false"]
    extra = [a for o in old_stack for a in ("--config-override", o)]
    assert main(train_args(TUNED / "navigation2d.yaml", tmp_path, *extra)) == 0
    info = cmp.read_checkpoint(tmp_path)
    assert info.old_api_stack and info.is_maml and info.config.env == MAML_EXAMPLES["navigation2d"]
    with open(info.path / "policies" / "default_policy" / "policy_state.pkl", "rb") as f:
        saved = pickle.load(f)["weights"]
    algo = cmp.restore_maml(info, cmp.adaptation_config(info, num_env_runners=0))
    try:
        restored = algo.theta_holder.theta_weights()
    finally:
        algo.stop()
    assert restored and all(np.array_equal(value, saved[f"rl_module.{name}"]) for name, value in restored.items())
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path), "--tasks", "1", "--steps", "1"]) == 0
    assert "| MAML |" in capsys.readouterr().out


def test_old_api_stack_ppo_baseline_is_refused_by_name(tmp_path: Path) -> None:
    from ray.rllib.algorithms.ppo import PPO, PPOConfig

    from rllib_maml.tools import compare as cmp
    from rllib_maml.tools.errors import UserError

    info = cmp.CheckpointInfo(path=tmp_path, algo_class=PPO, config=PPOConfig(), old_api_stack=True)
    with pytest.raises(UserError, match="--ppo .*old-API-stack PPO checkpoint.*new stack"):
        cmp.module_weights(info, "--ppo")
