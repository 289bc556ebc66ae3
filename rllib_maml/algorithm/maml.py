"""``MAMLConfig`` and ``MAML``, in one module as RLlib keeps ``PPOConfig`` and ``PPO``.

One iteration, top to bottom in :meth:`MAML.training_step`: tasks
(:meth:`MAML.sample_tasks`) -> sampling on the runners (:mod:`.sampling`) -> inner
steps and the meta-update (:attr:`MAML.theta_holder`) -> sync of theta. The checks
behind :meth:`MAMLConfig.validate` live in :mod:`.validation`, the result keys in
:mod:`.metrics`, and what only the old API stack needs in :mod:`rllib_maml.old_stack`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    TIMERS,
)

from rllib_maml.algorithm import sampling, validation
from rllib_maml.algorithm.connectors import use_batched_connectors
from rllib_maml.algorithm.env_factory import HELD_OUT_SEED, held_out_tasks, make_task_env
from rllib_maml.algorithm.learner import MAMLTorchLearner
from rllib_maml.algorithm.metrics import (
    INNER_STEPS_TIMER,
    MAML_RESULTS,
    META_UPDATE_TIMER,
    SAMPLING_TIMER,
    TASK_RETURNS,
    adaptation_metrics,
    runner_stats,
    sample_counts,
    task_returns,
)
from rllib_maml.algorithm.rl_module import MAMLTorchRLModule
from rllib_maml.algorithm.theta_holder import LearnerGroupThetaHolder, PolicyThetaHolder, ThetaHolder
from rllib_maml.core.data import TaskRollout
from rllib_maml.core.settings import MAMLSettings
from rllib_maml.old_stack.algorithm import OldStackMAML

#: Checkpoint-state key of the task stream's and reset seeds' generator states.
RANDOM_STATE_KEY = "maml_random_state"


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
    * ``kl_early_stop``: PPO and VPG only: the iteration's remaining
      ``maml_optimizer_steps`` are skipped once the meta-objective's mean KL
      (``kl`` in the results) exceeds this, as Stable-Baselines3's PPO
      ``target_kl``. The adaptive penalty reacts only in the next iteration, and a
      single overshooting iteration (KL 0.4 and 18 against a target of 0.01,
      measured on HalfCheetahRandDirec past 10M env steps) blows the penalty up
      and Adam's second moments with it. Results report ``meta_optimizer_steps``,
      the steps taken. > 0 or None (never stop); ``None``.
    * ``vf_loss_coeff``: weight of the value loss (inner and outer); >= 0; ``0.5``.
    * ``entropy_coeff``: weight of the entropy bonus in the meta-objective; >= 0;
      ``0.0``.
    * ``lambda_``: GAE lambda; in [0, 1]; ``1.0``.
    * ``baseline``: what GAE's values come from; ``"linear"`` (a linear feature
      baseline, ``obs, obs^2, t, t^2, t^3, 1``, fitted by regularised least
      squares to each task's batch at each adaptation step, as in the MAML paper,
      ProMP, garage, pytorch-maml-rl and learn2learn; the update then never runs
      the value MLP) or ``"value_function"`` (the module's value MLP, trained by
      the value loss through the inner steps); ``"linear"``, chosen from measured
      runs: it adapted better on Navigation2D (4 runs) and HalfCheetahRandDirec
      (README, "Choices that differ between MAML implementations").
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
    :class:`rllib_maml.algorithm.env_runner.MAMLEnvRunner`) gets an equal share of the
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
        # The old stack's policy samples through this Exploration (set before super(), as PPO does).
        self.exploration_config = {"type": "StochasticSampling"}
        super().__init__(algo_class=algo_class or MAML)
        self.lr = 1e-3
        self.num_envs_per_env_runner = 10
        self.inner_adaptation_steps = 1
        self.meta_batch_size = 20
        self.episodes_per_task = 10
        # The update's hyperparameters (inner_lr, clip_param, kl_coeff, gamma, lambda_, baseline,
        # meta_optimizer and TRPO's, ...): their defaults live once, in MAMLSettings.
        for name, value in dataclasses.asdict(MAMLSettings()).items():
            setattr(self, name, value)
        self.torch_num_threads: Optional[int] = 1
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
        kl_early_stop: Optional[float] = NotProvided,
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
            kl_early_stop=kl_early_stop,
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
        """Raises ``ValueError`` naming the first invalid parameter and its valid range
        (:mod:`rllib_maml.algorithm.validation`)."""
        super().validate()  # also rejects a mix of the two API stacks
        validation.check_training_settings(self)
        validation.check_rllib_settings(self)
        validation.check_env_and_include_action_masks(self)

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

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=MAMLTorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> Type:
        """The new stack's Learner (the old stack uses :class:`rllib_maml.MAMLTorchPolicy`)."""
        return MAMLTorchLearner

    @override(AlgorithmConfig)
    def build_module_to_env_connector(self, env: Any = None, spaces: Any = None) -> Any:
        """RLlib's pipeline, with its per-sub-env action unsquash and unbatching done per vector step.

        See :mod:`rllib_maml.algorithm.connectors`: the env gets the same actions, from
        one numpy expression over all sub-envs instead of one ``tree`` call per sub-env.
        """
        return use_batched_connectors(super().build_module_to_env_connector(env, spaces))


class MAML(OldStackMAML):
    """Model-Agnostic Meta-Learning (Finn et al., 2017) with PPO inner loops.

    One iteration (``training_step``):

    1. sample ``meta_batch_size`` tasks from the env's task distribution;
    2. sample ``episodes_per_task`` episodes per task with theta (step 0): each
       runner samples its share of the tasks in one call, one task per sub-env
       (:class:`~rllib_maml.algorithm.env_runner.MAMLEnvRunner`);
    3. for ``k = 1..inner_adaptation_steps``: the Learner computes ``theta'_i`` (one
       more inner step on task ``i``'s latest data, all tasks batched), and the
       runners sample step ``k``, each task with its own ``theta'_i``;
    4. the Learner runs ``maml_optimizer_steps`` Adam steps on the meta-loss (PPO
       clip loss of step ``K`` data under ``theta'_i(theta)``, recomputed
       differentiably from steps ``0..K-1``, plus a KL penalty); theta is synced to
       all runners.

    Both RLlib API stacks are supported, chosen by ``config.api_stack(...)`` as for
    PPO: on the new stack (the default) a :class:`~rllib_maml.MAMLTorchLearner` runs
    the update and ``SingleAgentEnvRunner`` s sample; on the old stack the driver's
    :class:`~rllib_maml.MAMLTorchPolicy` runs it and ``RolloutWorker`` s sample.
    Results, ``evaluate_adaptation`` and checkpoints behave alike on both.

    Results: ``env_runners/episode_return_mean`` is the pre-adaptation return;
    ``maml/episode_return_mean_adapt_{k}`` (k = 0..K) and ``maml/adaptation_delta``
    give the adaptation curve. ``evaluate_adaptation`` measures it on fresh or given
    tasks without changing theta.

    Public handles for scripts, benchmarks and tests (each one step of the iteration):
    :meth:`sample_tasks`, :meth:`sample_on_runners` (one adaptation step's sampling),
    :meth:`sample_adaptation` / :meth:`adapt_and_sample` (all steps, with the inner
    updates), and :attr:`theta_holder` (theta's snapshot, inner and meta-update).
    """

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> AlgorithmConfig:
        return MAMLConfig()

    @property
    def _old_api_stack(self) -> bool:
        return not self.config.enable_env_runner_and_connector_v2

    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        # Check the task interface here, on the driver, before any worker starts.
        self._task_env = make_task_env(config)
        self._task_env.reset(seed=config.seed)
        # Seeds of the sub-envs' first reset in each sampling call: fresh initial states
        # every call, yet the whole run reproducible from config.seed.
        self._reset_seeds = np.random.default_rng(config.seed)
        self._in_training_step = False
        self._theta_holder: Optional[ThetaHolder] = None
        super().setup(config)

    @property
    def theta_holder(self) -> ThetaHolder:
        """Whatever holds theta (its snapshot, the inner step and the meta-update); the stack is
        checked here, once. Built on first use, so that ``on_algorithm_init`` callbacks, which
        run at the end of ``Algorithm.setup``, can use it."""
        if self._theta_holder is None:
            self._theta_holder = (
                PolicyThetaHolder(self.get_policy) if self._old_api_stack else LearnerGroupThetaHolder(self.learner_group)
            )
        return self._theta_holder

    # --- checkpoint state ----------------------------------------------------------
    def _with_random_state(self, state: Dict[str, Any]) -> Dict[str, Any]:
        """``state`` plus the task stream's and the reset seeds' generator states, so a restored
        run draws the tasks and start states it would have drawn, not the first ones again."""
        state[RANDOM_STATE_KEY] = {
            "tasks": self._task_env.unwrapped.np_random.bit_generator.state,
            "reset_seeds": self._reset_seeds.bit_generator.state,
        }
        return state

    def _restore_random_state(self, state: Dict[str, Any]) -> None:
        saved = state.get(RANDOM_STATE_KEY)
        if saved:
            self._task_env.unwrapped.np_random.bit_generator.state = saved["tasks"]
            self._reset_seeds.bit_generator.state = saved["reset_seeds"]

    @override(Algorithm)
    def get_state(self, components: Any = None, *, not_components: Any = None, **kwargs: Any) -> Dict[str, Any]:
        return self._with_random_state(super().get_state(components, not_components=not_components, **kwargs))

    @override(Algorithm)
    def set_state(self, state: Dict[str, Any]) -> None:
        super().set_state(state)
        self._restore_random_state(state)

    # --- coordination ------------------------------------------------------------
    def sample_tasks(self, num_tasks: int) -> List[Any]:
        """Draws ``num_tasks`` tasks from the env's distribution (seeded by ``config.seed``)."""
        tasks = list(self._task_env.unwrapped.sample_tasks(num_tasks))
        if len(tasks) != num_tasks:
            raise ValueError(
                f"config.env={self.config.env!r}: sample_tasks({num_tasks}) returned {len(tasks)} tasks; "
                "it must return exactly the number asked for."
            )
        return tasks

    def sample_on_runners(self, tasks: Sequence[Any], weights: Sequence[Dict[str, np.ndarray]], step: int) -> List[TaskRollout]:
        """Samples every task at adaptation step ``step``, task ``i`` with ``weights[i]``.

        New stack: each runner gets an equal share of the tasks and samples all of
        them in one call (:class:`~rllib_maml.algorithm.env_runner.MAMLEnvRunner`, one task
        per sub-env). Old stack: one task per RolloutWorker at a time, in rounds.
        The tasks of a runner that fails are sampled again once RLlib has restarted it;
        see :func:`rllib_maml.algorithm.sampling.sample_on_runners`.
        """
        return sampling.sample_on_runners(self, tasks, weights, step, self._reset_seeds)

    def sample_adaptation(self, tasks: Sequence[Any], num_steps: int) -> List[List[TaskRollout]]:
        """``rollouts[i][k]``: task ``i`` sampled after ``k`` inner steps, for k = 0..num_steps."""
        return self.adapt_and_sample(tasks, num_steps)[0]

    def adapt_and_sample(
        self, tasks: Sequence[Any], num_steps: int
    ) -> Tuple[List[List[TaskRollout]], List[Sequence[Dict[str, np.ndarray]]]]:
        """The rollouts of :meth:`sample_adaptation` and the weights that sampled them:
        ``weights[k][i]`` acted on task ``i`` at step ``k`` (theta at ``k = 0``)."""
        theta = self.theta_holder.theta_weights()
        weights: List[Sequence[Dict[str, np.ndarray]]] = [[theta] * len(tasks)]
        rollouts: List[List[TaskRollout]] = [[] for _ in tasks]
        for step in range(num_steps + 1):
            if step > 0:
                with self._timed(INNER_STEPS_TIMER):
                    weights.append(self.theta_holder.adapted_weights(rollouts))
            with self._timed(SAMPLING_TIMER):
                for rollout in self.sample_on_runners(tasks, weights[step], step):
                    rollouts[rollout.task_index].append(rollout)
        return rollouts, weights

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        """Adds the wall time of the block to this training iteration's ``timers/<name>`` (seconds).

        New stack: RLlib's ``metrics.log_time``, summed over the iteration (several
        sampling calls per iteration). Only ``training_step`` is timed: the meta-test
        (and any ``evaluate_adaptation`` call) runs after RLlib has reduced the
        iteration's metrics, so its seconds would land in the next iteration's sums.
        Old stack: see :meth:`OldStackMAML._timed`.
        """
        if not self._in_training_step:
            yield
        elif self._old_api_stack:
            with super()._timed(name):
                yield
        else:
            with self.metrics.log_time((TIMERS, name), reduce="sum"):
                yield

    def _sync_theta_to_runners(self) -> None:
        if self._old_api_stack:
            # From the driver's local worker, whose policy holds theta.
            self.env_runner_group.sync_weights()
        else:
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

    # --- the iteration -------------------------------------------------------------
    @override(Algorithm)
    def training_step(self) -> Optional[Dict[str, Any]]:
        cfg = self.config
        self._iteration_seconds = {}  # the old stack's timers (OldStackMAML._timed)
        self._in_training_step = True
        try:
            tasks = self.sample_tasks(cfg.meta_batch_size)
            rollouts = self.sample_adaptation(tasks, cfg.inner_adaptation_steps)
            with self._timed(META_UPDATE_TIMER):
                learner_stats = self.theta_holder.meta_update(rollouts)
        finally:
            self._in_training_step = False
        self._sync_theta_to_runners()
        if self._old_api_stack:
            return self._old_stack_iteration_results(rollouts, learner_stats, self._iteration_seconds)
        self._log_iteration(rollouts, learner_stats)
        return None

    def _log_iteration(self, rollouts: List[List[TaskRollout]], learner_stats: Dict[str, float]) -> None:
        env_steps, num_episodes = sample_counts(rollouts)
        for key, value in runner_stats(rollouts).items():
            self.metrics.log_value((ENV_RUNNER_RESULTS, key), value, window=1)
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED), env_steps, reduce="sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), env_steps, reduce="lifetime_sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_EPISODES), num_episodes, reduce="sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_EPISODES_LIFETIME), num_episodes, reduce="lifetime_sum")
        for key, value in learner_stats.items():
            self.metrics.log_value((LEARNER_RESULTS, key), value, window=1)
        self._log_nested((MAML_RESULTS,), adaptation_metrics(rollouts))

    def _log_nested(self, prefix: Tuple[str, ...], values: Dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                self._log_nested(prefix + (key,), value)
            else:
                self.metrics.log_value(prefix + (key,), value, window=1)

    # --- meta-test -----------------------------------------------------------------
    @classmethod
    @override(Algorithm)
    def _should_create_evaluation_env_runners(cls, eval_config: AlgorithmConfig) -> bool:
        # MAML's meta-test adapts on the training runners (evaluate()); RLlib's own
        # evaluation runners would only sit idle.
        return False

    @override(Algorithm)
    def evaluate(self, parallel_train_future: Any = None) -> Dict[str, Any]:
        """RLlib's periodic evaluation (``config.evaluation(evaluation_interval=N)``): the meta-test.

        Every ``N`` iterations, theta is adapted ``evaluation_adaptation_steps`` inner
        steps on the same ``evaluation_num_tasks`` held-out tasks (drawn once, with
        ``evaluation_task_seed``, from a fresh env: never the training stream).
        Reported as ``evaluation/maml/episode_return_mean_adapt_{k}`` and
        ``evaluation/maml/adaptation_delta``, so Tune and TensorBoard show the
        held-out adaptation curve against env steps. Theta is unchanged.
        """
        cfg = self.config
        if getattr(self, "_evaluation_tasks", None) is None:
            self._evaluation_tasks = held_out_tasks(cfg, cfg.evaluation_num_tasks, cfg.evaluation_task_seed)
        steps = cfg.evaluation_adaptation_steps
        curve = self.evaluate_adaptation(tasks=self._evaluation_tasks, num_steps=cfg.inner_adaptation_steps if steps is None else steps)
        return {MAML_RESULTS: curve}

    def evaluate_adaptation(
        self, num_tasks: int = 10, num_steps: int = 1, tasks: Optional[Sequence[Any]] = None,
        with_task_returns: bool = False,
    ) -> Dict[str, Any]:
        """Adapts copies of theta to tasks and returns the mean return after each inner step.

        Args:
            num_tasks: how many fresh tasks to draw (ignored when ``tasks`` is given).
            num_steps: inner adaptation steps (>= 0); each is followed by sampling.
            tasks: fixed tasks (e.g. a held-out set) to evaluate on instead.
            with_task_returns: also return each task's own returns under
                ``task_returns`` (:func:`~rllib_maml.algorithm.metrics.task_returns`).

        Returns:
            ``{"episode_return_mean_adapt_{k}": ..., "adaptation_delta": ...}`` as in the
            training results (plus ``per_task`` for grouped tasks). Theta is unchanged.
        """
        if num_steps < 0 or (tasks is None and num_tasks < 1):
            raise ValueError(f"evaluate_adaptation needs num_steps >= 0 and num_tasks >= 1, got {num_steps}, {num_tasks}")
        tasks = list(tasks) if tasks is not None else self.sample_tasks(num_tasks)
        if not tasks:
            raise ValueError("evaluate_adaptation got an empty task list")
        try:
            rollouts = self.sample_adaptation(tasks, num_steps)
        finally:
            self._sync_theta_to_runners()
        metrics = adaptation_metrics(rollouts)
        if with_task_returns:
            metrics[TASK_RETURNS] = task_returns(rollouts)
        return metrics
