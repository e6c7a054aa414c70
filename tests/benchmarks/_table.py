"""What a benchmark module reports (``Row``) and the one table the runner prints.

Benchmarks print figures against the budgets of shared DESIGN §8; they are not pass/fail.
``ratio`` is the share of the budget used, whichever way the budget points: at most 1.00
means within budget, both for "≤ 1.05x" and for "≥ 2,000 records/s".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BenchmarkUnavailableError(RuntimeError):
    """A benchmark cannot run here (a peer or tool is missing); the message says why."""


@dataclass(frozen=True, slots=True)
class Row:
    """One measured figure, with its budget when DESIGN §8 sets one."""

    figure: str
    value: float
    unit: str = ""
    budget: float | None = None
    #: True for floors ("≥ budget", e.g. throughput); False for ceilings ("≤ budget").
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Share of the budget used; ``None`` without a budget."""
        if self.budget is None:
            return None
        if self.higher_is_better:
            return self.budget / self.value if self.value else float("inf")
        return self.value / self.budget if self.budget else float("inf")

    @property
    def is_within_budget(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else ratio <= 1.0


def _number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table: figure, value, budget, ratio, verdict."""
    header = ("figure", "value", "budget", "ratio", "")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        unit = f" {row.unit}" if row.unit else ""
        value = f"{_number(row.value)}{unit}"
        if row.budget is None:
            budget = ratio = verdict = ""
        else:
            sign = "≥" if row.higher_is_better else "≤"
            budget = f"{sign} {_number(row.budget)}{unit}"
            ratio = f"{row.ratio:.2f}"
            verdict = "ok" if row.is_within_budget else "OVER BUDGET"
        figure = f"{row.figure} ({row.note})" if row.note else row.figure
        lines.append((figure, value, budget, ratio, verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out: list[str] = []
    for index, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:4], widths[1:4], strict=True)]
        cells.append(line[4])
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths[:4]))
    return "\n".join(out)
