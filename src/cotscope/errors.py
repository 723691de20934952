"""The errors cotscope raises on purpose, in one hierarchy.

Every error the library raises deliberately derives from :class:`CotscopeError`, so a caller (the CLI, a
notebook) catches one class and prints one clear line; anything else is a bug and keeps its traceback.
The data and config errors also derive from :class:`ValueError` and the backend error from
:class:`RuntimeError`, so code written against the built-in classes keeps working.

This module imports nothing from cotscope: every package may use it.
"""

from __future__ import annotations

__all__ = ["BackendError", "ConfigError", "CotscopeError", "DataError"]


class CotscopeError(Exception):
    """The base of every error cotscope raises deliberately."""


class DataError(CotscopeError, ValueError):
    """Bad input data: a file, a line or a record that cannot be used (missing fields, wrong types)."""


class ConfigError(CotscopeError, ValueError):
    """Bad options: an unknown name, a malformed ``key=value`` pair, an invalid benchmark spec."""


class BackendError(CotscopeError, RuntimeError):
    """A model backend that cannot be started or used (missing library, server that never came up)."""
