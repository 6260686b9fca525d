"""Errors a user can act on. Their message names the cause and the fix; the command line prints it
as one line (no traceback unless ``--debug``) and exits with the code below."""

from __future__ import annotations

__all__ = ["SdlibError", "UsageError", "RunError", "DataMissingError", "DeviceUnavailableError"]


class SdlibError(Exception):
    """Base of the user-facing errors of sdlib."""

    exit_code = 1


class UsageError(SdlibError, ValueError):
    """A parameter, option or configuration is invalid (nothing ran): exit status 2."""

    exit_code = 2


class RunError(SdlibError, RuntimeError):
    """A run could not go on (missing data, no GPU, a failed download): exit status 1."""

    exit_code = 1


class DataMissingError(RunError, FileNotFoundError):
    """A data set is not where it was looked for; the message says where to place its files."""


class DeviceUnavailableError(RunError):
    """The requested device (e.g. ``cuda``) is not available on this machine."""
