"""How many inputs each fuzz target tried, and how long it ran: the summary table.

Each target calls ``tried(name)`` once per input (hypothesis calls the test body once
per example, shrinking included). ``tests/fuzz/conftest.py`` prints the table at the
end of the pytest run.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class _Tally:
    inputs: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)


_TALLY = _Tally()


def tried(target: str) -> None:
    """Count one input of ``target``."""
    now = time.perf_counter()
    _TALLY.inputs[target] += 1
    _TALLY.first_seen.setdefault(target, now)
    _TALLY.last_seen[target] = now


def counts() -> dict[str, int]:
    """Inputs tried per target, in the order the targets first ran."""
    return {target: _TALLY.inputs[target] for target in _TALLY.first_seen}


def summary_table(profile: str) -> str:
    """The targets, their input counts and wall time, as an aligned plain-text table."""
    rows = [
        (target, f"{count:,}", f"{_TALLY.last_seen[target] - _TALLY.first_seen[target]:.1f}")
        for target, count in counts().items()
    ]
    total = sum(_TALLY.inputs.values())
    rows.append(("total", f"{total:,}", ""))
    header = ("target", "inputs", "seconds")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]

    def line(row: tuple[str, str, str]) -> str:
        return "  ".join(
            [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2])]
        ).rstrip()

    out = [f"fuzz targets (hypothesis profile {profile!r})", line(header)]
    out.append("  ".join("-" * width for width in widths))
    out += [line(row) for row in rows]
    return "\n".join(out)
