"""MAML as an RLlib algorithm, shaped like ``ray/rllib/algorithms/ppo/``: config and
algorithm (``maml.py``), Learner, RLModule, EnvRunner, connectors, the driver-side
sampling, the env factory, the result keys and the checks behind ``validate()``."""
