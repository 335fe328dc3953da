"""Errors the CLI prints without a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, bad file)."""
