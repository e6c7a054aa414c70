#!/usr/bin/env python3
"""Check the test run's coverage of the critical modules against their floors.

The floors are data in ``pyproject.toml``::

    [tool.hushchat.coverage-floors]
    "app/vault/" = 90            # a folder: every measured file below it, summed
    "app/chat/service.py" = 90   # one file

Each entry is the least percent of its lines, and separately of its branches,
that the tests must run. The figures come from coverage.py's JSON report
(``coverage json``): its per-file counts of statements and branches, summed over
the files of an entry. Prints one row per entry; names each entry under its floor
with its figures and exits 1 when there is one (``--report-only``: exits 0).
An entry that matches no measured file is an error too: a renamed module must not
silently drop out of the check.

Only the standard library is used, like ``bootstrap.py`` which runs it.

    python packaging/coverage_floors.py coverage.json [--pyproject pyproject.toml]
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Figures:
    """Covered and total lines and branches of one entry."""

    lines: int
    lines_covered: int
    branches: int
    branches_covered: int

    @staticmethod
    def percent(covered: int, total: int) -> float:
        """``covered`` of ``total`` in percent; nothing to cover counts as all of it."""
        return 100.0 * covered / total if total else 100.0

    @property
    def lines_percent(self) -> float:
        return self.percent(self.lines_covered, self.lines)

    @property
    def branches_percent(self) -> float:
        return self.percent(self.branches_covered, self.branches)

    def misses(self, floor: float) -> list[str]:
        """What falls short of ``floor``, e.g. ``["branches 85.1% (40/47)"]``."""
        short = []
        if self.lines_percent < floor:
            short.append(f"lines {self.lines_percent:.1f}% ({self.lines_covered}/{self.lines})")
        if self.branches_percent < floor:
            short.append(
                f"branches {self.branches_percent:.1f}% ({self.branches_covered}/{self.branches})"
            )
        return short


def read_floors(pyproject: Path) -> dict[str, float]:
    """The ``[tool.hushchat.coverage-floors]`` table: path → percent."""
    with pyproject.open("rb") as file:
        table = tomllib.load(file).get("tool", {}).get("hushchat", {}).get("coverage-floors")
    if not isinstance(table, dict) or not table:
        raise SystemExit(f"{pyproject}: no [tool.hushchat.coverage-floors] table")
    floors: dict[str, float] = {}
    for path, floor in table.items():
        if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 <= floor <= 100:
            raise SystemExit(f"{pyproject}: coverage floor of {path!r} must be a percent (0-100)")
        floors[path] = float(floor)
    return floors


def relative_name(name: str) -> str:
    """A measured file's path relative to the checkout, with forward slashes."""
    path = Path(name)
    if path.is_absolute() and path.is_relative_to(ROOT):
        path = path.relative_to(ROOT)
    return path.as_posix()


def figures_of(entry: str, files: dict[str, Any]) -> Figures | None:
    """The summed figures of the measured files ``entry`` names, or None if it names none."""
    prefix = entry if entry.endswith("/") else None
    matched = [
        summary
        for name, summary in files.items()
        if (relative_name(name).startswith(prefix) if prefix else relative_name(name) == entry)
    ]
    if not matched:
        return None
    return Figures(
        lines=sum(int(s["num_statements"]) for s in matched),
        lines_covered=sum(int(s["covered_lines"]) for s in matched),
        branches=sum(int(s.get("num_branches", 0)) for s in matched),
        branches_covered=sum(int(s.get("covered_branches", 0)) for s in matched),
    )


def check(report: dict[str, Any], floors: dict[str, float]) -> list[str]:
    """Print the table; return one line per entry under its floor (or missing)."""
    files = {name: data["summary"] for name, data in report.get("files", {}).items()}
    width = max(len("critical module"), *(len(entry) for entry in floors))
    print(f"{'critical module':<{width}}  {'lines':>18}  {'branches':>18}  floor")
    failures = []
    for entry, floor in floors.items():
        figures = figures_of(entry, files)
        if figures is None:
            print(f"{entry:<{width}}  {'not measured':>18}  {'':>18}  {floor:.0f}%")
            failures.append(f"{entry}: no measured file (not run, or renamed: fix the floor table)")
            continue
        lines = f"{figures.lines_percent:5.1f}% {figures.lines_covered:>5}/{figures.lines:<5}"
        branches = (
            f"{figures.branches_percent:5.1f}% {figures.branches_covered:>5}/{figures.branches:<5}"
        )
        misses = figures.misses(floor)
        mark = "  UNDER" if misses else ""
        print(f"{entry:<{width}}  {lines:>18}  {branches:>18}  {floor:.0f}%{mark}")
        if misses:
            failures.append(f"{entry}: {', '.join(misses)}; floor {floor:.0f}%")
    return failures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="coverage.py's JSON report")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument(
        "--report-only", action="store_true", help="print, but exit 0 when under a floor"
    )
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    failures = check(report, read_floors(args.pyproject))
    if not failures:
        print("coverage floors: every critical module is at or above its floor")
        return 0
    for failure in failures:
        print(f"coverage floor missed: {failure}", file=sys.stderr)
    return 0 if args.report_only else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
