"""The one exception type a user is meant to see: the CLI prints it as `error: ...` and exits 2."""


class UserError(Exception):
    """A problem the user can fix (bad input, bad setting); never shown with a traceback."""
