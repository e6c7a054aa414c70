"""The fuzz run: no per-test timeout in the long profile, and the summary table."""

from __future__ import annotations

import pytest

from tests.fuzz import _stats
from tests.fuzz._profiles import PROFILE_NAME


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In the long profile a target runs for many minutes: lift pytest-timeout's limit."""
    if PROFILE_NAME != "long":
        return
    for item in items:
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(pytest.mark.timeout(0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the per-target table when any fuzz target ran."""
    if _stats.counts():
        terminalreporter.write_sep("-", "fuzzing")
        terminalreporter.write_line(_stats.summary_table(PROFILE_NAME))
