"""Print one version's section of CHANGELOG.md (Keep a Changelog), for release notes.

    python3 packaging/changelog_section.py 0.1.0 [--changelog CHANGELOG.md]

Exits 1 with a message on stderr when the version has no section (the release workflow
then stops: every release needs its notes). Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ``## [1.2.3] - 2026-01-31`` or ``## [Unreleased]``.
HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")
#: ``[1.2.3]: https://…`` link references at the bottom.
LINK_REFERENCE = re.compile(r"^\[[^\]]+\]:\s+\S+")


SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
#: Keep a Changelog's kinds of change.
KINDS = frozenset({"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"})


class ChangelogError(Exception):
    """The changelog has no section for the version asked for."""


def section(text: str, version: str) -> str:
    """The body of ``version``'s section (without its heading), stripped."""
    version = version.removeprefix("v")
    lines = text.splitlines()
    body: list[str] | None = None
    for line in lines:
        match = HEADING.match(line)
        if match:
            if body is not None:
                break
            if match["version"] == version:
                body = []
            continue
        if body is not None:
            if LINK_REFERENCE.match(line):
                break
            body.append(line)
    if body is None:
        raise ChangelogError(
            f"CHANGELOG.md has no '## [{version}] - YYYY-MM-DD' section: add one before tagging."
        )
    notes = "\n".join(body).strip()
    if not notes:
        raise ChangelogError(f"The CHANGELOG.md section of {version} is empty: describe it.")
    return notes


def problems(text: str, current_version: str) -> list[str]:
    """What breaks the Keep a Changelog format, one line each (empty: fine)."""
    found: list[str] = []
    lines = text.splitlines()
    if not lines or lines[0] != "# Changelog":
        found.append("the first line must be '# Changelog'")
    versions: list[str] = []
    dates: list[date] = []
    references: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if line.startswith("## "):
            match = HEADING.match(line)
            if not match:
                found.append(f"line {number}: '{line}' is not '## [X.Y.Z] - YYYY-MM-DD'")
                continue
            version, day = match["version"], match["date"]
            if version == "Unreleased":
                if day is not None:
                    found.append(f"line {number}: [Unreleased] has no date")
                if versions:
                    found.append(f"line {number}: [Unreleased] must be the first section")
            elif not SEMVER.fullmatch(version):
                found.append(f"line {number}: {version} is not a semantic version")
            elif day is None:
                found.append(f"line {number}: {version} has no date (YYYY-MM-DD)")
            else:
                try:
                    dates.append(date.fromisoformat(day))
                except ValueError:
                    found.append(f"line {number}: {day} is not a valid ISO date")
            if version in versions:
                found.append(f"line {number}: {version} has two sections")
            versions.append(version)
        elif line.startswith("### ") and line[4:].strip() not in KINDS:
            found.append(f"line {number}: '{line[4:]}' is not one of {sorted(KINDS)}")
        elif LINK_REFERENCE.match(line):
            name = line[1 : line.index("]")]
            references[name] = line
    if "Unreleased" not in versions:
        found.append("there is no '## [Unreleased]' section")
    if current_version not in versions:
        found.append(f"the current version {current_version} has no section")
    if dates != sorted(dates, reverse=True):
        found.append("release sections must be newest first (dates descending)")
    if references:
        missing = [v for v in versions if v not in references]
        if missing:
            found.append(f"link references are missing for {missing}")
        unknown = [name for name in references if name not in versions]
        if unknown:
            found.append(f"link references name no section: {unknown}")
        tail = [line for line in lines if line.strip()][-len(references) :]
        if not all(LINK_REFERENCE.match(line) for line in tail):
            found.append("link references belong at the bottom of the file")
    return found


def main(argv: list[str] | None = None) -> int:
    """Print the section; 1 and a message when it is missing or empty."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("version", help="version, with or without a leading v")
    parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    args = parser.parse_args(argv)
    try:
        print(section(args.changelog.read_text(encoding="utf-8"), args.version))
    except ChangelogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
