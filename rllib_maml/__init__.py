"""rllib-maml: MAML with PPO inner loops as an RLlib algorithm (Ray 2.60, PyTorch).

Importing this package registers the ``rllib_maml/*`` gymnasium envs and the
``"MAML"`` trainable with Ray Tune. Layers, each importing only those before it:
:mod:`rllib_maml.core` <- :mod:`rllib_maml.algorithm` (and :mod:`rllib_maml.old_stack`)
<- :mod:`rllib_maml.tools`; the envs (top-level ``envs/``) install as :mod:`rllib_maml.envs`.
"""

from rllib_maml.core.tasks import TaskSettableEnv  # noqa: I001  (the envs import it)
from rllib_maml.envs import register_envs
from rllib_maml import _moved_modules
from rllib_maml.algorithm.learner import MAMLTorchLearner
from rllib_maml.algorithm.maml import MAML, MAMLConfig
from rllib_maml.algorithm.rl_module import MAMLTorchRLModule
from rllib_maml.core.data import NonFiniteDataError
from rllib_maml.core.distributions import MaskedDiagGaussian
from rllib_maml.old_stack.policy import MAMLTorchPolicy

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
_moved_modules.install()
