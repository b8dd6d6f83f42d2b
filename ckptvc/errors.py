"""Error types. Every user-facing failure is a CkptvcError with one clear line.

Exit codes (documented in docs/cli.md):
  1  operation failed (data problem, corruption, missing objects, remote failure)
  2  bad input: malformed pointer/config, bad arguments, not a repository
"""

from __future__ import annotations


class CkptvcError(Exception):
    """A failure to report as one line, without a traceback."""

    exit_code = 1


class UserInputError(CkptvcError):
    """Bad input from the user: malformed files, bad arguments. Nothing was changed."""

    exit_code = 2


class NotARepositoryError(UserInputError):
    pass


class MalformedPointerError(UserInputError):
    pass


class ConfigError(UserInputError):
    pass


class CorruptObjectError(CkptvcError):
    """Stored bytes do not match their id or their own checksum."""


class MissingObjectError(CkptvcError):
    """An object needed is in none of the stores consulted."""


class RemoteError(CkptvcError):
    """A remote store failed (network, permission, server error)."""


class WorkspaceConflictError(CkptvcError):
    """The workspace has local changes that an operation would overwrite."""
