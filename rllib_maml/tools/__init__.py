"""What a user runs: the ``rllib-maml`` CLI, experiment YAMLs through Tune, checkpoint
comparison and evaluation, videos and the quickstart. Built on the public package."""
