"""``MAMLConfig``: every MAML hyperparameter, documented and validated."""

from __future__ import annotations

import math
from typing import Any, Optional, Type

import numpy as np

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.utils.annotations import override
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_maml.held_out import HELD_OUT_SEED


#: Valid values of ``MAMLConfig.baseline``.
BASELINES = ("value_function", "linear")
#: Valid values of ``MAMLConfig.meta_optimizer``.
META_OPTIMIZERS = ("ppo", "trpo", "vpg")


class MAMLConfig(AlgorithmConfig):
    """Configuration of :class:`rllib_maml.MAML`: MAML with PPO inner loops.

    .. code-block:: python

        from rllib_maml import MAMLConfig

        config = (
            MAMLConfig()
            .environment("rllib_maml/Navigation2D-v0")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=10)
            .training(meta_batch_size=20, episodes_per_task=10, inner_lr=0.1)
        )
        algo = config.build_algo()
        result = algo.train()
        print(result["maml"]["adaptation_delta"])

    MAML-specific parameters of :meth:`training` (meaning; valid range; default):

    * ``lr``: the *meta* learning rate, of the Adam meta-optimizer; > 0; ``1e-3``.
    * ``inner_lr``: step size of each inner adaptation step (plain gradient
      descent on the PPO surrogate); > 0; ``0.1``.
    * ``inner_adaptation_steps``: number of inner steps ``K`` (each followed by
      sampling with the adapted weights); int >= 1; ``1``.
    * ``maml_optimizer_steps``: meta-optimizer (Adam) steps per iteration on the
      same data; int >= 1; ``5``.
    * ``meta_batch_size``: tasks sampled per iteration; int >= 1; ``20``.
    * ``episodes_per_task``: minimum episodes sampled per task and adaptation
      step; int >= 1; ``10``. A task whose sub-envs do not divide it evenly gets
      the few extra episodes its sub-envs finish in the same pass.
    * ``first_order``: if True, drop the second-order terms (FOMAML: the inner
      gradient is treated as a constant); bool; ``False``.
    * ``clip_param``: PPO clip range ``eps`` of the meta-objective (the ratio is
      clipped to ``[1 - eps, 1 + eps]``); in (0, 1], since above 1 the lower bound
      is negative and never binds; ``0.3``.
    * ``kl_coeff``: initial coefficient of the KL penalty that keeps each
      adaptation step's policy near the policy that sampled its data; adapted
      towards ``kl_target`` after every iteration; >= 0; ``0.0005``.
    * ``kl_target``: target KL of that adaptive penalty; > 0; ``0.01``.
    * ``vf_loss_coeff``: weight of the value loss (inner and outer); >= 0; ``0.5``.
    * ``entropy_coeff``: weight of the entropy bonus in the meta-objective; >= 0;
      ``0.0``.
    * ``lambda_``: GAE lambda; in [0, 1]; ``1.0``.
    * ``baseline``: what GAE's values come from; ``"value_function"`` (the
      module's value MLP, trained by the value loss) or ``"linear"`` (a linear
      feature baseline, ``obs, obs^2, t, t^2, t^3, 1``, fitted by regularised
      least squares to each task's batch at each adaptation step, as in the MAML
      paper, ProMP, garage, pytorch-maml-rl and learn2learn; the value MLP is then
      not used, so ``vf_loss_coeff=0`` saves its training); ``"value_function"``.
    * ``gamma``: discount; in [0, 1]; ``0.99``.
    * ``meta_optimizer``: the policy-gradient method of the meta-step (the outer
      update; the inner steps are plain gradient steps either way);
      ``"ppo"`` (the default): ``maml_optimizer_steps`` Adam steps on PPO's
      clipped surrogate plus the adaptive KL penalty (ProMP, RLlib's old MAML);
      ``"trpo"``: one natural-gradient step, as in the MAML paper and
      pytorch-maml-rl: the meta-gradient of the plain surrogate, taken through the
      inner steps, times the inverse Fisher of the post-adaptation KL (itself taken
      through the inner steps) by conjugate gradient, scaled to ``max_kl`` and
      backtracked until the surrogate improves within ``max_kl`` (no Adam state;
      the value network, when used, still takes ``maml_optimizer_steps`` Adam
      steps on its loss); ``"vpg"``: ``maml_optimizer_steps`` Adam steps on the
      plain surrogate, no clipping and no KL term.
    * TRPO's options (``meta_optimizer="trpo"`` only): ``max_kl``, the trust
      region's mean KL, > 0, ``0.01``; ``cg_iters``, conjugate-gradient
      iterations, int >= 1, ``10``; ``cg_damping``, added to the Fisher's
      diagonal, >= 0, ``1e-5``; ``line_search_steps``, int >= 1, ``15``;
      ``line_search_backtrack_ratio``, each try's fraction of the last, in (0, 1),
      ``0.8`` (pytorch-maml-rl's values).
    * ``update_num_threads``: torch intra-op threads while the Learner computes
      adapted weights and the meta-update, all tasks batched into large matmuls;
      the EnvRunners wait meanwhile, so their cores are free; int >= 1 or None for
      every core of the machine; ``None``.
    * ``torch_num_threads``: torch intra-op threads in the Learner's process (the
      driver when ``num_learners=0``); int >= 1 or None to leave torch's default;
      ``1``. MAML's many small forward/backward passes run fastest on one
      thread, and multi-threaded torch stalls badly on a busy 2-core machine
      (measured: 4.6 ms vs 32 us per 64x64 linear layer under load).

    Learners (RLlib's ``config.learners(...)``; new stack):

    * ``num_learners``: 0 (the default) runs the update in the algorithm's own
      process; 1 in one Learner actor; N >= 2 in N actors, each taking the
      second-order meta-gradient of its block of the meta-batch, the gradients
      averaged by ``torch.distributed.all_reduce`` in RLlib's Learner process
      group (see :class:`rllib_maml.MAMLTorchLearner`); int <= ``meta_batch_size``.
    * ``num_gpus_per_learner``: GPUs per Learner actor (RLlib's setting); the
      update's tensors then live on that Learner's GPU and only numpy arrays
      cross to the runners; ``0``. ``num_cpus_per_learner``: as in RLlib.

    Held-out meta-test during training, with RLlib's ``evaluation_interval``
    (``config.evaluation(evaluation_interval=N, ...)``; see ``MAML.evaluate``):

    * ``evaluation_num_tasks``: fixed held-out tasks; int >= 1; ``40``.
    * ``evaluation_adaptation_steps``: inner steps on them (results for steps
      ``0..K``); int >= 0 or None for ``inner_adaptation_steps``; ``None``.
    * ``evaluation_task_seed``: seed of the held-out task draw (independent of
      ``config.seed``); int; ``12345``, the seed ``rllib-maml compare`` and
      ``evaluate`` use, so all three adapt on the very same tasks.

    Sampling layout (new stack): each EnvRunner (a
    :class:`rllib_maml.maml_env_runner.MAMLEnvRunner`) gets an equal share of the
    meta-batch, ``m`` tasks, and samples all of them in one ``sample`` call per
    adaptation step, sub-env ``j`` on task ``j mod m``, each task with its own
    (adapted) weights. Choose ``num_envs_per_env_runner`` as ``m`` times a divisor
    of ``episodes_per_task`` (e.g. 10 tasks x 10 episodes on 2 runners: 50); with
    fewer sub-envs than tasks, a runner takes its tasks in chunks.

    Defaults of other settings: ``num_envs_per_env_runner=10``, ``grad_clip=None``.
    The env must implement the task interface of
    :class:`rllib_maml.TaskSettableEnv` (``sample_tasks``, ``set_task``,
    ``get_task``); ``validate()`` (run when the algorithm is built) checks this on
    the driver. An env with an ``action_mask_table`` attribute (``[num_groups,
    action_dim]``, e.g. multi-morphology locomotion) has it passed to the RLModule
    as ``model_config["action_masks"]``.
    """

    def __init__(self, algo_class: Optional[Type] = None) -> None:
        from rllib_maml.maml import MAML

        # The old stack's policy samples through this Exploration (set before super(), as PPO does).
        self.exploration_config = {"type": "StochasticSampling"}
        super().__init__(algo_class=algo_class or MAML)
        self.lr = 1e-3
        self.gamma = 0.99
        self.num_envs_per_env_runner = 10
        self.inner_lr = 0.1
        self.inner_adaptation_steps = 1
        self.maml_optimizer_steps = 5
        self.meta_batch_size = 20
        self.episodes_per_task = 10
        self.first_order = False
        self.clip_param = 0.3
        self.kl_coeff = 0.0005
        self.kl_target = 0.01
        self.vf_loss_coeff = 0.5
        self.entropy_coeff = 0.0
        self.lambda_ = 1.0
        self.baseline = "value_function"
        self.meta_optimizer = "ppo"
        self.max_kl = 0.01
        self.cg_iters = 10
        self.cg_damping = 1e-5
        self.line_search_steps = 15
        self.line_search_backtrack_ratio = 0.8
        self.torch_num_threads: Optional[int] = 1
        self.update_num_threads: Optional[int] = None
        self.evaluation_num_tasks = 40
        self.evaluation_adaptation_steps: Optional[int] = None
        self.evaluation_task_seed = HELD_OUT_SEED

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        inner_lr: Optional[float] = NotProvided,
        inner_adaptation_steps: Optional[int] = NotProvided,
        maml_optimizer_steps: Optional[int] = NotProvided,
        meta_batch_size: Optional[int] = NotProvided,
        episodes_per_task: Optional[int] = NotProvided,
        first_order: Optional[bool] = NotProvided,
        clip_param: Optional[float] = NotProvided,
        kl_coeff: Optional[float] = NotProvided,
        kl_target: Optional[float] = NotProvided,
        vf_loss_coeff: Optional[float] = NotProvided,
        entropy_coeff: Optional[float] = NotProvided,
        lambda_: Optional[float] = NotProvided,
        baseline: Optional[str] = NotProvided,
        meta_optimizer: Optional[str] = NotProvided,
        max_kl: Optional[float] = NotProvided,
        cg_iters: Optional[int] = NotProvided,
        cg_damping: Optional[float] = NotProvided,
        line_search_steps: Optional[int] = NotProvided,
        line_search_backtrack_ratio: Optional[float] = NotProvided,
        torch_num_threads: Optional[int] = NotProvided,
        update_num_threads: Optional[int] = NotProvided,
        **kwargs: Any,
    ) -> "MAMLConfig":
        """Sets MAML's training parameters (see the class docstring); others go to RLlib."""
        super().training(**kwargs)
        given = dict(
            inner_lr=inner_lr,
            inner_adaptation_steps=inner_adaptation_steps,
            maml_optimizer_steps=maml_optimizer_steps,
            meta_batch_size=meta_batch_size,
            episodes_per_task=episodes_per_task,
            first_order=first_order,
            clip_param=clip_param,
            kl_coeff=kl_coeff,
            kl_target=kl_target,
            vf_loss_coeff=vf_loss_coeff,
            entropy_coeff=entropy_coeff,
            lambda_=lambda_,
            baseline=baseline,
            meta_optimizer=meta_optimizer,
            max_kl=max_kl,
            cg_iters=cg_iters,
            cg_damping=cg_damping,
            line_search_steps=line_search_steps,
            line_search_backtrack_ratio=line_search_backtrack_ratio,
            torch_num_threads=torch_num_threads,
            update_num_threads=update_num_threads,
        )
        for name, value in given.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid parameter and its valid range."""
        super().validate()
        positive_ints = (
            "inner_adaptation_steps", "maml_optimizer_steps", "meta_batch_size", "episodes_per_task", "evaluation_num_tasks",
            "cg_iters", "line_search_steps",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MAMLConfig.{name}={value!r} is invalid: it must be an integer >= 1.")
        for name in ("lr", "inner_lr", "kl_target", "max_kl"):
            self._check_number(name, lambda v: v > 0, "a number > 0")
        self._check_number("cg_damping", lambda v: v >= 0, "a number >= 0")
        self._check_number("line_search_backtrack_ratio", lambda v: 0 < v < 1, "a number in (0, 1)")
        if self.meta_optimizer not in META_OPTIMIZERS:
            raise ValueError(f"MAMLConfig.meta_optimizer={self.meta_optimizer!r} is invalid: it must be one of {META_OPTIMIZERS}.")
        self._check_number("clip_param", lambda v: 0 < v <= 1, "a number in (0, 1]")
        for name in ("kl_coeff", "vf_loss_coeff", "entropy_coeff"):
            self._check_number(name, lambda v: v >= 0, "a number >= 0")
        for name in ("lambda_", "gamma"):
            self._check_number(name, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        for name in ("torch_num_threads", "update_num_threads"):
            threads = getattr(self, name)
            if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
                raise ValueError(f"MAMLConfig.{name}={threads!r} is invalid: it must be an integer >= 1 or None.")
        from rllib_maml.maml_rl_module import log_action_scale

        log_action_scale(self.model_config or {})  # fails here, on the driver, not inside a runner
        steps = self.evaluation_adaptation_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
            raise ValueError(f"MAMLConfig.evaluation_adaptation_steps={steps!r} is invalid: it must be an integer >= 0 or None.")
        if isinstance(self.evaluation_task_seed, bool) or not isinstance(self.evaluation_task_seed, int):
            raise ValueError(f"MAMLConfig.evaluation_task_seed={self.evaluation_task_seed!r} is invalid: it must be an integer.")
        if self.baseline not in BASELINES:
            raise ValueError(f"MAMLConfig.baseline={self.baseline!r} is invalid: it must be one of {BASELINES}.")
        if not isinstance(self.first_order, bool):
            raise ValueError(f"MAMLConfig.first_order={self.first_order!r} is invalid: it must be True or False.")
        if self.num_learners > self.meta_batch_size:
            raise ValueError(
                f"MAMLConfig.num_learners={self.num_learners} is invalid: each Learner updates on a share of the "
                f"meta-batch, so it must be <= meta_batch_size={self.meta_batch_size}."
            )
        # A mix of the two API stacks is rejected by AlgorithmConfig.validate() above.
        if not self.enable_rl_module_and_learner:
            self._validate_old_api_stack()
        if self.restart_failed_sub_environments:
            raise ValueError(
                "MAMLConfig.restart_failed_sub_environments=True is not supported: RLlib would "
                "recreate a failed sub-env without its task and its episodes would be mislabelled."
            )
        self._check_env_and_include_action_masks()
        if self.enable_env_runner_and_connector_v2:
            self._validate_env_runner_cls()

    def _validate_env_runner_cls(self) -> None:
        """The new stack samples with :class:`rllib_maml.maml_env_runner.MAMLEnvRunner` (or a subclass)."""
        from rllib_maml.maml_env_runner import MAMLEnvRunner

        if self.env_runner_cls is None and not self._is_frozen:
            self.env_runner_cls = MAMLEnvRunner
        elif self.env_runner_cls is not None and not (
            isinstance(self.env_runner_cls, type) and issubclass(self.env_runner_cls, MAMLEnvRunner)
        ):
            raise ValueError(
                f"MAMLConfig.env_runner_cls={self.env_runner_cls!r} is not supported: MAML samples several "
                "tasks per runner through rllib_maml.maml_env_runner.MAMLEnvRunner; subclass it."
            )
        if str(self.gym_env_vectorize_mode).lower().split(".")[-1] != "sync":
            raise ValueError(
                f"MAMLConfig.gym_env_vectorize_mode={self.gym_env_vectorize_mode!r} is not supported: "
                "MAMLEnvRunner sets a task on each sub-env, which needs the 'sync' vector env."
            )

    @override(AlgorithmConfig)
    def evaluation(
        self,
        *,
        evaluation_num_tasks: Optional[int] = NotProvided,
        evaluation_adaptation_steps: Optional[int] = NotProvided,
        evaluation_task_seed: Optional[int] = NotProvided,
        **kwargs: Any,
    ) -> "MAMLConfig":
        """RLlib's evaluation settings plus MAML's held-out meta-test (see the class docstring)."""
        super().evaluation(**kwargs)
        for name, value in dict(
            evaluation_num_tasks=evaluation_num_tasks,
            evaluation_adaptation_steps=evaluation_adaptation_steps,
            evaluation_task_seed=evaluation_task_seed,
        ).items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    def _validate_old_api_stack(self) -> None:
        """Settings of the old stack that MAML cannot honour fail here, by name."""
        from ray.rllib.models.catalog import MODEL_DEFAULTS

        changed = sorted(k for k, v in self.model.items() if MODEL_DEFAULTS.get(k) != v)
        if changed:
            raise ValueError(
                f"MAMLConfig.model (ModelV2 settings {changed}) is not used by MAML: both API stacks "
                "build the same MAMLTorchRLModule; set its options with "
                "config.rl_module(model_config={...}) instead."
            )
        if self.observation_filter != "NoFilter":
            raise ValueError(
                f"MAMLConfig.observation_filter={self.observation_filter!r} is not supported on the "
                "old API stack: MAML's samples would bypass the filter; use 'NoFilter'."
            )

    def _check_env_and_include_action_masks(self) -> None:
        """Fails early (on the driver, at build time) for an env without the task interface,
        and hands an env's per-group action masks to the RLModule."""
        from rllib_maml.maml_rl_module import ACTION_MASKS_KEY
        from rllib_maml.task_env import make_task_env

        env = make_task_env(self)
        try:
            masks = getattr(env.unwrapped, "action_mask_table", None)
            if masks is not None and ACTION_MASKS_KEY not in self.model_config and not self._is_frozen:
                self._model_config = {**self.model_config, ACTION_MASKS_KEY: np.asarray(masks).tolist()}
        finally:
            env.close()

    def _check_number(self, name: str, is_valid: Any, valid_text: str) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not is_valid(value):
            raise ValueError(f"MAMLConfig.{name}={value!r} is invalid: it must be a finite {valid_text.removeprefix('a ')}.")

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from rllib_maml.maml_rl_module import MAMLTorchRLModule

        return RLModuleSpec(module_class=MAMLTorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> Type:
        """The new stack's Learner (the old stack uses :class:`rllib_maml.MAMLTorchPolicy`)."""
        from rllib_maml.maml_learner import MAMLTorchLearner

        return MAMLTorchLearner

    @override(AlgorithmConfig)
    def build_module_to_env_connector(self, env: Any = None, spaces: Any = None) -> Any:
        """RLlib's pipeline, with its per-sub-env action unsquash and unbatching done per vector step.

        See :mod:`rllib_maml.batched_connectors`: the env gets the same actions, from
        one numpy expression over all sub-envs instead of one ``tree`` call per sub-env.
        """
        from rllib_maml.batched_connectors import use_batched_connectors

        return use_batched_connectors(super().build_module_to_env_connector(env, spaces))
