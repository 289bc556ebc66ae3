"""rllib-maml: MAML with PPO inner loops as an RLlib algorithm (Ray 2.60, PyTorch).

Importing this package registers the ``rllib_maml/*`` gymnasium envs and the
``"MAML"`` trainable with Ray Tune.
"""

from rllib_maml.task_settable_env import TaskSettableEnv  # noqa: I001  (envs import it)
from rllib_maml.envs import register_envs
from rllib_maml.maml import MAML
from rllib_maml.maml_config import MAMLConfig
from rllib_maml.maml_learner import MAMLTorchLearner
from rllib_maml.maml_rl_module import MAMLTorchRLModule, MaskedDiagGaussian
from rllib_maml.maml_torch_policy import MAMLTorchPolicy
from rllib_maml.rollouts import NonFiniteDataError

from ray.tune.registry import register_trainable

__version__ = "0.1.0"
__all__ = [
    "MAML",
    "MAMLConfig",
    "MAMLTorchLearner",
    "MAMLTorchPolicy",
    "MAMLTorchRLModule",
    "MaskedDiagGaussian",
    "NonFiniteDataError",
    "TaskSettableEnv",
]

register_envs()
register_trainable("MAML", MAML)
