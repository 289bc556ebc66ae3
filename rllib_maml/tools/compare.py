"""Adaptation curves of trained checkpoints on the same held-out tasks.

``compare``: a MAML checkpoint, a PPO checkpoint fine-tuned with MAML's inner
update (its RLModule weights become theta of a MAML algorithm with the MAML
checkpoint's env and inner-loop settings) and a randomly initialised policy, each
adapted for 0..K inner steps on the same tasks. ``evaluate``: one checkpoint.
Results go to a CSV file, a markdown table and a PNG plot.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

from rllib_maml.algorithm import env_factory
from rllib_maml.algorithm.env_factory import HELD_OUT_SEED
from rllib_maml.algorithm.rl_module import INNER_LR_PARAM, LEARN_INNER_LR_KEY
from rllib_maml.algorithm.metrics import (
    ADAPT_RETURN_PREFIX, PER_TASK, TASK_RETURNS, adapt_return_key, same_task_std, stderr,
)
from rllib_maml.tools.checkpoints import CheckpointInfo, module_weights, read_checkpoint, require_maml, require_non_maml
from rllib_maml.tools.errors import UserError

OUTPUT_NAMES = {"csv": "adaptation_curves.csv", "markdown": "adaptation_curves.md", "png": "adaptation_curves.png"}
#: One row per policy, held-out task and inner step (written when the curves carry ``tasks``).
TASK_RETURNS_CSV = "task_returns.csv"


@dataclasses.dataclass
class Curve:
    """Mean episode return after ``k`` inner steps, ``returns[k]``, k = 0..K, over all
    held-out tasks, per group (body) and, in ``tasks``, per task
    (rows of :func:`rllib_maml.algorithm.metrics.task_returns`)."""

    label: str
    returns: List[float]
    per_group: Dict[str, List[float]] = dataclasses.field(default_factory=dict)
    tasks: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    def returns_of(self, group: Optional[str] = None) -> List[float]:
        """``returns`` over all held-out tasks, or over one group's (body's) with ``group``."""
        return self.returns if group is None else self.per_group[group]

    def tasks_of(self, group: Optional[str] = None) -> List[Dict[str, Any]]:
        """``tasks`` rows of all held-out tasks, or of one group's (body's) with ``group``."""
        return [r for r in self.tasks if group is None or r["group"] == group]

    @classmethod
    def from_metrics(cls, label: str, metrics: Dict[str, Any]) -> "Curve":
        def returns_in(m: Dict[str, Any]) -> List[float]:
            steps = sum(1 for k in m if k.startswith(ADAPT_RETURN_PREFIX))
            return [float(m[adapt_return_key(k)]) for k in range(steps)]

        groups = {g: returns_in(m) for g, m in (metrics.get(PER_TASK) or {}).items()}
        return cls(label=label, returns=returns_in(metrics), per_group=groups, tasks=list(metrics.get(TASK_RETURNS) or []))


# --- MAML configs that adapt a policy ----------------------------------------------
def adaptation_config(info: CheckpointInfo, *, model_config: Optional[Dict[str, Any]] = None,
                      num_env_runners: Optional[int] = None, seed: Optional[int] = None) -> Any:
    """A MAML config to adapt with: the MAML checkpoint's own config, or for another
    algorithm's checkpoint MAML's default inner loop on its env (and its gamma/lambda)."""
    from rllib_maml.algorithm.maml import MAMLConfig

    if info.is_maml:
        config = info.config.copy(copy_frozen=False)
    else:
        src = info.config
        config = MAMLConfig().environment(src.env, env_config=dict(src.env_config or {}))
        config.training(gamma=src.gamma, lambda_=getattr(src, "lambda_", 1.0))
        config.rl_module(model_config=_own_model_config(src))
    if model_config is not None:
        config.rl_module(model_config=model_config)
    if num_env_runners is not None:
        config.env_runners(num_env_runners=num_env_runners)
    if seed is not None:
        config.debugging(seed=seed)
    return config


def _own_model_config(config: Any) -> Dict[str, Any]:
    """The model_config a config's user set (without an algorithm's auto-included keys)."""
    own = config._model_config
    return dict(own) if isinstance(own, dict) else dataclasses.asdict(own)


def task_distribution_options(env: Any) -> Tuple[str, ...]:
    """The env_config keys that, by the env class's own ``task_distribution_options``, only
    weight which tasks ``sample_tasks`` draws (none for an env that declares nothing)."""
    try:
        entry_point = gym.spec(env).entry_point if isinstance(env, str) else env
        env_class = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    except Exception:  # not a registered gymnasium id (e.g. a Tune-registered creator)
        return ()
    return tuple(getattr(env_class, "task_distribution_options", ()))


def env_config_difference(a: CheckpointInfo, b: CheckpointInfo) -> Optional[set]:
    """The env_config keys in which two checkpoints' envs differ, or None if the envs are
    not comparable (another env, or a difference beyond its task-distribution options)."""
    if a.config.env != b.config.env:
        return None
    config_a, config_b = dict(a.config.env_config or {}), dict(b.config.env_config or {})
    differing = {k for k in set(config_a) | set(config_b) if config_a.get(k) != config_b.get(k)}
    return differing if differing <= set(task_distribution_options(a.config.env)) else None


def same_env(a: CheckpointInfo, b: CheckpointInfo) -> bool:
    return env_config_difference(a, b) == set()


def held_out_tasks(config: Any, num_tasks: int, seed: int = HELD_OUT_SEED) -> List[Any]:
    """``num_tasks`` tasks drawn from the env's distribution with a fixed seed
    (:func:`rllib_maml.algorithm.env_factory.held_out_tasks`), any failure as a one-line :class:`UserError`."""
    try:
        return env_factory.held_out_tasks(config, num_tasks, seed=seed)
    except Exception as err:  # the env cannot be made here (e.g. MuJoCo missing)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot draw held-out tasks from env {config.env!r}: {first}") from None


def _evaluate(algo: Any, label: str, tasks: Sequence[Any], num_steps: int) -> Curve:
    try:
        return Curve.from_metrics(label, algo.evaluate_adaptation(num_steps=num_steps, tasks=tasks, with_task_returns=True))
    finally:
        algo.stop()


def restore_maml(info: CheckpointInfo, config: Any) -> Any:
    """A MAML algorithm built from ``config`` holding the checkpoint's theta and optimizer state."""
    from rllib_maml.algorithm.maml import MAML

    if info.old_api_stack:
        # RLlib's old-stack from_checkpoint ignores a new config; restore into one instead.
        algo = config.build_algo()
        algo.restore(str(info.path))
        return algo
    return MAML.from_checkpoint(str(info.path), config=config)


def adapter_of(config: Any, *, checkpoint: Optional[CheckpointInfo] = None, weights: Optional[Dict[str, Any]] = None) -> Any:
    """A MAML algorithm built from ``config`` that adapts: a MAML ``checkpoint`` restored,
    or theta set to another policy's ``weights``, or (neither) a random init."""
    if checkpoint is not None:
        return restore_maml(checkpoint, config)
    algo = config.build_algo()
    if weights is not None:
        from ray.rllib.core import DEFAULT_MODULE_ID

        try:
            algo.learner_group.set_weights({DEFAULT_MODULE_ID: weights})
        except Exception as err:
            algo.stop()
            raise UserError(f"the policy weights do not fit the MAML policy network ({err})") from None
    return algo


def videos(info: CheckpointInfo, *, num_tasks: int, num_steps: int, output: str, seed: int = HELD_OUT_SEED,
           num_env_runners: Optional[int] = None, ppo: Optional[CheckpointInfo] = None) -> List[Path]:
    """GIFs of ``info``'s policy (and, with ``ppo``, the PPO policy with the same inner
    update) on ``num_tasks`` held-out tasks, before and after each inner step."""
    from rllib_maml.tools.video import adaptation_videos, make_render_env

    config = adaptation_config(info, num_env_runners=num_env_runners)
    make_render_env(config).close()  # fails in one line, before any algorithm is built
    tasks = held_out_tasks(config, num_tasks, seed)
    if info.is_maml:
        runs = [("maml", config, dict(checkpoint=info))]
    else:
        runs = [(info.algo_class.__name__.lower(), config, dict(weights=module_weights(info, "checkpoint")))]
    if ppo is not None:
        ppo_weights = baseline_weights(info, ppo)
        runs.append(("ppo", baseline_config(info, ppo, ppo_weights, num_env_runners), dict(weights=ppo_weights)))
    paths: List[Path] = []
    for label, run_config, source in runs:
        algo = adapter_of(run_config, **source)
        try:
            paths += adaptation_videos(algo, run_config, tasks, num_steps, Path(output), label)
        finally:
            algo.stop()
    return paths


def curve_of_checkpoint(info: CheckpointInfo, config: Any, label: str, tasks: Sequence[Any], num_steps: int) -> Curve:
    """Restores a MAML checkpoint (either API stack) and adapts it."""
    return _evaluate(adapter_of(config, checkpoint=info), label, tasks, num_steps)


def curve_of_weights(config: Any, weights: Optional[Dict[str, Any]], label: str, tasks: Sequence[Any], num_steps: int) -> Curve:
    """Builds MAML from ``config``, sets theta to ``weights`` (None: random init), adapts."""
    return _evaluate(adapter_of(config, weights=weights), label, tasks, num_steps)


# --- commands ----------------------------------------------------------------------
@dataclasses.dataclass
class ComparePlan:
    """Checked inputs of ``compare`` (read without starting Ray)."""

    maml: CheckpointInfo
    ppo: CheckpointInfo
    ppo_weights: Dict[str, Any]
    #: env_config keys (task-distribution options only) in which the two training runs differ;
    #: the held-out tasks are then drawn without them, from the env's default distribution.
    task_options_dropped: Tuple[str, ...] = ()


def plan_compare(maml_path: str, ppo_path: str) -> ComparePlan:
    """Reads and checks both checkpoints: algorithms, env, policy network."""
    maml = read_checkpoint(maml_path, "--maml")
    require_maml(maml, "--maml")
    ppo = read_checkpoint(ppo_path, "--ppo")
    require_non_maml(ppo, "--ppo")
    differing = env_config_difference(maml, ppo)
    if differing is None:
        raise UserError(
            f"the checkpoints were trained on different envs: --maml {maml.config.env} "
            f"{maml.config.env_config or ''} vs --ppo {ppo.config.env} {ppo.config.env_config or ''}"
        )
    return ComparePlan(maml=maml, ppo=ppo, ppo_weights=baseline_weights(maml, ppo),
                       task_options_dropped=tuple(sorted(differing)))


def same_inner_step(maml: CheckpointInfo, ppo_weights: Dict[str, Any]) -> Dict[str, Any]:
    """``ppo_weights``, plus MAML's learned inner step sizes where MAML learned them
    (``learn_inner_lr``), so that the baseline adapts with the same step per body."""
    if not _own_model_config(maml.config).get(LEARN_INNER_LR_KEY) or INNER_LR_PARAM in ppo_weights:
        return ppo_weights
    return {**ppo_weights, INNER_LR_PARAM: module_weights(maml, "--maml")[INNER_LR_PARAM]}


def baseline_weights(maml: CheckpointInfo, ppo: CheckpointInfo) -> Dict[str, Any]:
    """The ``--ppo`` checkpoint's policy weights, with ``maml``'s inner step (:func:`same_inner_step`)."""
    return same_inner_step(maml, module_weights(ppo, "--ppo"))


def _baseline_model_config(ppo: CheckpointInfo, ppo_weights: Dict[str, Any]) -> Dict[str, Any]:
    """The baseline's own model_config, with ``learn_inner_lr`` where its weights carry step sizes."""
    own = _own_model_config(ppo.config)
    return {**own, LEARN_INNER_LR_KEY: True} if INNER_LR_PARAM in ppo_weights else own


def baseline_config(maml: CheckpointInfo, ppo: CheckpointInfo, ppo_weights: Dict[str, Any],
                    num_env_runners: Optional[int] = None) -> Any:
    """The config that fine-tunes the baseline's ``ppo_weights`` (from ``same_inner_step``)
    with ``maml``'s inner update: the same one for ``compare``'s curves and ``videos``' GIFs."""
    return adaptation_config(maml, model_config=_baseline_model_config(ppo, ppo_weights), num_env_runners=num_env_runners)


def compare(plan: ComparePlan, *, num_tasks: int, num_steps: int, output: str,
            seed: int = HELD_OUT_SEED, num_env_runners: Optional[int] = None) -> Dict[str, Path]:
    """MAML vs PPO fine-tuned with MAML's inner update vs random init; writes the outputs."""
    maml, ppo = plan.maml, plan.ppo
    maml_config = adaptation_config(maml, num_env_runners=num_env_runners)
    task_config = maml_config
    if plan.task_options_dropped:
        task_config = maml_config.copy(copy_frozen=False)
        # Assigned, not set through environment(): that deep-updates and would keep the dropped keys.
        task_config.env_config = {k: v for k, v in dict(maml_config.env_config).items() if k not in plan.task_options_dropped}
    tasks = held_out_tasks(task_config, num_tasks, seed)
    ppo_config = baseline_config(maml, ppo, plan.ppo_weights, num_env_runners)
    random_config = adaptation_config(maml, num_env_runners=num_env_runners, seed=seed)
    curves = [
        curve_of_checkpoint(maml, maml_config, "MAML", tasks, num_steps),
        curve_of_weights(ppo_config, plan.ppo_weights, "PPO + MAML inner update", tasks, num_steps),
        curve_of_weights(random_config, None, "random init", tasks, num_steps),
    ]
    header = {
        "env": maml.config.env,
        "env_config": dict(maml.config.env_config or {}),
        "held-out tasks": f"{len(tasks)} (seed {seed})" + (
            f", drawn without env_config {list(plan.task_options_dropped)}: the runs' task distributions differ in them"
            if plan.task_options_dropped else ""
        ),
        "inner update": (
            f"inner_lr={maml.config.inner_lr}, episodes_per_task={maml.config.episodes_per_task}, "
            f"gamma={maml.config.gamma}, lambda={maml.config.lambda_}"
            + (", times MAML's learned factors (learn_inner_lr: one per body where the env has bodies), for MAML and PPO alike"
               if _own_model_config(maml.config).get(LEARN_INNER_LR_KEY) else "")
        ),
        "MAML checkpoint": str(maml.path),
        "PPO checkpoint": str(ppo.path),
    }
    return write_outputs(curves, Path(output), header)


def plan_evaluate(path: str) -> CheckpointInfo:
    """Reads and checks the checkpoint of ``evaluate`` (without starting Ray)."""
    info = read_checkpoint(path)
    if not info.is_maml:
        module_weights(info, "checkpoint")  # fails early on a policy MAML cannot adapt
    return info


def evaluate(info: CheckpointInfo, *, num_tasks: int, num_steps: int, seed: int = HELD_OUT_SEED,
             num_env_runners: Optional[int] = None) -> Curve:
    """The adaptation curve of one checkpoint: a MAML one (row ``MAML``), or another
    algorithm's (e.g. PPO's) ``MAMLTorchRLModule`` policy adapted with MAML's default
    inner update (row ``PPO + MAML inner update``, as in ``compare``). Anything else
    was refused by :func:`plan_evaluate`."""
    config = adaptation_config(info, num_env_runners=num_env_runners)
    tasks = held_out_tasks(config, num_tasks, seed)
    if info.is_maml:
        return curve_of_checkpoint(info, config, info.algo_class.__name__, tasks, num_steps)
    label = f"{info.algo_class.__name__} + MAML inner update"
    return curve_of_weights(config, module_weights(info, "checkpoint"), label, tasks, num_steps)


# --- outputs -----------------------------------------------------------------------
def markdown_table(curves: Sequence[Curve], group: Optional[str] = None) -> str:
    """Rows: policies; columns: return after 0..K inner steps and the change; over all
    held-out tasks, or over one group's (a multi-morphology env's body) with ``group``."""
    rows = [(c.label, c.returns_of(group)) for c in curves]
    num_steps = len(rows[0][1])
    head = ["policy"] + [f"step {k}" for k in range(num_steps)] + ["delta (K - 0)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, returns in rows:
        cells = [label] + [f"{r:.2f}" for r in returns] + [f"{returns[-1] - returns[0]:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shared_groups(curves: Sequence[Curve]) -> List[str]:
    """The groups every curve reports (the bodies of a multi-morphology env), sorted."""
    return sorted(set.intersection(*(set(c.per_group) for c in curves))) if curves else []


def per_group_tables(curves: Sequence[Curve]) -> str:
    """One markdown section per shared group (body), or "" for an env without groups."""
    return "".join(
        f"\n## {group}\n\nMean episode return on its held-out tasks:\n\n{markdown_table(curves, group)}"
        f"{spread_table(curves, group)}{paired_line(curves, group)}\n"
        for group in shared_groups(curves)
    )


def pre_adaptation_spread(rows: Sequence[Dict[str, Any]]) -> Tuple[float, float, float]:
    """Of the per-task mean returns before adaptation (``rows`` of one policy's ``tasks``):
    their spread across tasks (std), the part of it that is evaluation noise alone, and the
    spread across draws of the same task value.

    The noise is the root mean square, over tasks, of each task mean's standard error
    across its episodes. The same-task spread is the pooled std within groups of
    identical task values (e.g. ``("Walker2d", -1.0)`` drawn 10 times), NaN when no
    task value repeats. Where it is much smaller than the spread across tasks, the
    spread is the hidden task itself, not noise.
    """
    before = np.array([r["returns"][0] for r in rows], dtype=float)
    std = float(before.std(ddof=1)) if len(before) > 1 else float("nan")
    stderrs = np.array([r["stderr"][0] for r in rows], dtype=float)
    stderrs = stderrs[~np.isnan(stderrs)]  # NaN: a task with one episode
    noise = float(np.sqrt(np.mean(stderrs**2))) if len(stderrs) else float("nan")
    return std, noise, same_task_std([r["task"] for r in rows], before)


def spread_table(curves: Sequence[Curve], group: Optional[str] = None) -> str:
    """A markdown table of :func:`pre_adaptation_spread` per policy (curves with ``tasks``
    only; "" if none has), over all held-out tasks or one group's."""
    lines = []
    for c in curves:
        rows = c.tasks_of(group)
        if rows:
            std, noise, same_task = pre_adaptation_spread(rows)
            lines.append(f"| {c.label} | {len(rows)} | {std:.2f} | {same_task:.2f} | {noise:.2f} |")
    if not lines:
        return ""
    head = ("| policy | tasks | std across tasks | std across draws of the same task | "
            "evaluation noise (RMS s.e. over episodes) |\n|---|---:|---:|---:|---:|")
    return "\n\nSpread of the per-task return before adaptation:\n\n" + head + "\n" + "\n".join(lines)


def paired_difference(a: Sequence[Dict[str, Any]], b: Sequence[Dict[str, Any]], step: int) -> Tuple[float, float]:
    """Mean and standard error, across tasks, of ``a``'s return minus ``b``'s after
    ``step`` inner steps, task by task (both ``tasks`` rows of the same held-out tasks)."""
    by_index = {r["task_index"]: r["returns"][step] for r in b}
    diffs = np.array([r["returns"][step] - by_index[r["task_index"]] for r in a if r["task_index"] in by_index])
    return (float(diffs.mean()) if len(diffs) else float("nan")), stderr(diffs)


def steps_text(step: int) -> str:
    return f"{step} inner step" + ("" if step == 1 else "s")


def paired_line(curves: Sequence[Curve], group: Optional[str] = None) -> str:
    """The first curve minus the second after the last inner step, paired by task, ± 2
    standard errors ("" unless both carry ``tasks``): whether MAML is higher than the
    baseline by more than the tasks' noise."""
    if len(curves) < 2 or not (curves[0].tasks and curves[1].tasks):
        return ""
    a, b = (c.tasks_of(group) for c in curves[:2])
    step = len(curves[0].returns) - 1
    mean, se = paired_difference(a, b, step)
    return (f"\n\n{curves[0].label} minus {curves[1].label} after {steps_text(step)}, task by task: "
            f"{mean:+.2f} ± {2 * se:.2f} (2 s.e. across {len(a)} tasks)")


def write_task_returns(curves: Sequence[Curve], path: Path) -> None:
    """One CSV row per policy, held-out task and inner step (the curves' ``tasks``)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["policy", "task_index", "group", "task", "step", "episode_return_mean", "episodes", "stderr"])
        for c in curves:
            for r in c.tasks:
                for k, (ret, n, se) in enumerate(zip(r["returns"], r["episodes"], r["stderr"])):
                    writer.writerow([c.label, r["task_index"], r["group"] or "", repr(r["task"]), k, f"{ret:.6g}", n, f"{se:.6g}"])


def write_outputs(curves: Sequence[Curve], out_dir: Path, header: Dict[str, Any]) -> Dict[str, Path]:
    """Writes the CSV, the markdown table and the PNG plot into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in OUTPUT_NAMES.items()}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["policy", "group", "step", "episode_return_mean"])
        for c in curves:
            for group, returns in [("all", c.returns), *sorted(c.per_group.items())]:
                writer.writerows([c.label, group, k, f"{r:.6g}"] for k, r in enumerate(returns))
    if any(c.tasks for c in curves):
        paths["task_returns"] = out_dir / TASK_RETURNS_CSV
        write_task_returns(curves, paths["task_returns"])
    meta = "\n".join(f"- {k}: {v}" for k, v in header.items())
    paths["markdown"].write_text(
        f"# Adaptation curves\n\n{meta}\n\nMean episode return after k inner steps:\n\n{markdown_table(curves)}"
        f"{spread_table(curves)}{paired_line(curves)}\n" + per_group_tables(curves)
    )
    plot_curves(curves, paths["png"], title=str(header.get("env", "")))
    return paths


def plot_curves(curves: Sequence[Curve], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One panel over all held-out tasks, then one per group (body): an average over bodies
    # can hide a body that does not adapt.
    panels = [("all held-out tasks", None)] + [(g, g) for g in shared_groups(curves)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 + 3.5 * (len(panels) - 1), 4), squeeze=False)
    for ax, (name, group) in zip(axes[0], panels):
        for c in curves:
            returns = c.returns_of(group)
            ax.plot(range(len(returns)), returns, marker="o", label=c.label)
        ax.set_xlabel("inner adaptation steps")
        ax.set_xticks(range(len(curves[0].returns)))
        ax.set_title(name if len(panels) > 1 else "held-out tasks")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean episode return")
    axes[0][0].legend()
    fig.suptitle(f"Adaptation on held-out tasks: {title}" if title else "Adaptation on held-out tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
