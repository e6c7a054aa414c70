"""The exception tree of the desktop app's services, and the CLI exit codes.

Every error a person can meet carries a message that says what went wrong and
what to do, and the exit code the ``hushchat`` command returns for it::

    HushchatError                 exit 1  unexpected
    ├── InternalError             exit 1  a bug: its traceback is in the log
    ├── UsageError                exit 2  bad command line
    ├── ConfigError               exit 2  malformed or invalid .config.yml
    ├── ProviderFailedError       exit 3  the LLM server failed (wraps providers.ProviderError)
    ├── VaultError                exit 4  vault locked, wrong secret, damaged key slots
    │   ├── VaultLockedError
    │   └── WrongSecretError
    └── PolicyRefusedError        exit 5  the chat's privacy tier forbids this provider

Service modules raise these (or subclasses); the CLI prints ``str(error)`` as one
line on stderr and exits with ``error.exit_code``; the UI shows the message.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by every ``hushchat`` command."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    PROVIDER = 3
    VAULT = 4
    POLICY = 5


class HushchatError(Exception):
    """Base of the app's errors; ``str()`` is a sentence a person can act on."""

    exit_code: ExitCode = ExitCode.UNEXPECTED


class InternalError(HushchatError):
    """A programming error reached the user; its cause carries the real exception."""


class UsageError(HushchatError):
    """The command line asks for something that cannot be done as written."""

    exit_code = ExitCode.USAGE


class ConfigError(HushchatError):
    """The configuration file is malformed or invalid."""

    exit_code = ExitCode.USAGE


class ProviderFailedError(HushchatError):
    """An LLM provider failed; the message comes from ``providers.ProviderError``."""

    exit_code = ExitCode.PROVIDER


class VaultError(HushchatError):
    """The vault could not be opened or changed."""

    exit_code = ExitCode.VAULT


class VaultLockedError(VaultError):
    """An operation needs the vault unlocked."""


class WrongSecretError(VaultError):
    """The passphrase, recovery code or security key does not open the vault."""


class PolicyRefusedError(HushchatError):
    """The chat's privacy tier does not allow the requested provider."""

    exit_code = ExitCode.POLICY
