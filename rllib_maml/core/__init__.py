"""The MAML core: torch and numpy (and RLlib's column names, GAE and Gaussian), no
RLlib Algorithm, Learner or EnvRunner. Tasks, labelled data, the math of the inner
step and the meta-loss, TRPO's pieces, and the updater both API stacks share."""
