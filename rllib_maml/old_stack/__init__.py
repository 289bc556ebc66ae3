"""RLlib's old API stack (RolloutWorker, Policy, ModelV2): MAML's policy, model adapter,
sampler and results glue. Outside this folder only three fenced places know it: the
base class of ``MAML`` (:class:`~rllib_maml.old_stack.algorithm.OldStackMAML`), the
per-runner call in :mod:`rllib_maml.algorithm.sampling` and ``PolicyThetaHolder`` in
:mod:`rllib_maml.algorithm.theta_holder`; deleting the old stack means those too."""
