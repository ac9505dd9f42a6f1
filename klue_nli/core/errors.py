"""Errors a user can act on: stages print them as one line, never as a traceback."""


class UserError(Exception):
    """A problem with input, configuration or the environment, explained in one line."""


class ParamsError(UserError):
    """A value in params.yaml is missing, unknown or out of range; the message names the key."""


class DataError(UserError):
    """A data file is unreachable, corrupt or not what it claims to be; names the file."""
