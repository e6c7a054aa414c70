"""The unlock agent's exceptions, in the app-wide tree of ``app.errors``::

    HushchatError (app.errors)
    └── AgentError                      exit 1  the agent could not start or answer
        ├── AgentUnavailableError       exit 2  not on this platform (Windows) or unsafe dir
        └── AgentRunningError           exit 1  another agent serves the profile already

"No agent is running" is not an error: the client answers None/False.
"""

from __future__ import annotations

from app.errors import ExitCode, HushchatError

__all__ = ["AgentError", "AgentRunningError", "AgentUnavailableError"]


class AgentError(HushchatError):
    """The unlock agent could not be started or did not do what was asked."""


class AgentUnavailableError(AgentError):
    """The agent cannot run here: Windows (not yet), or a socket directory not ours."""

    exit_code = ExitCode.USAGE


class AgentRunningError(AgentError):
    """Another process already serves this profile's agent socket."""
