"""The one error type of the command-line tools."""


class UserError(Exception):
    """A mistake in the command line or its inputs (a bad flag, a broken YAML, a missing
    checkpoint); ``rllib-maml`` prints it as one line and exits with status 2."""
