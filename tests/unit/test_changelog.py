"""CHANGELOG.md follows Keep a Changelog and has the current version's section, and
packaging/changelog_section.py extracts a release's notes (the release workflow's body)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import app

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "changelog_section.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("changelog_section", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHANGELOG = _module()

GOOD = """# Changelog

## [Unreleased]

### Added

- Next thing.

## [1.1.0] - 2026-12-24

### Fixed

- A bug.

## [1.0.0] - 2026-11-30

### Added

- Everything.

[Unreleased]: https://example.org/compare/v1.1.0...HEAD
[1.1.0]: https://example.org/compare/v1.0.0...v1.1.0
[1.0.0]: https://example.org/releases/tag/v1.0.0
"""


def test_the_changelog_is_well_formed_and_has_the_current_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert pyproject["project"]["version"] == app.__version__
    text = (ROOT / "CHANGELOG.md").read_text("utf-8")
    assert CHANGELOG.problems(text, app.__version__) == []
    assert CHANGELOG.section(text, app.__version__)


def test_a_good_changelog_passes() -> None:
    assert CHANGELOG.problems(GOOD, "1.1.0") == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("## [1.0.0] - 2026-11-30", "## [1.0.0] - 30.11.2026", "is not '## [X.Y.Z]"),
        ("## [1.0.0] - 2026-11-30", "## [1.0.0] - 2026-13-30", "not a valid ISO date"),
        ("## [1.0.0] - 2026-11-30", "## [1.0] - 2026-11-30", "not a semantic version"),
        ("## [1.0.0] - 2026-11-30", "## [1.0.0]", "has no date"),
        ("## [1.1.0] - 2026-12-24", "## [1.1.0] - 2026-10-24", "newest first"),
        ("## [Unreleased]", "## [Next]", "no '## [Unreleased]' section"),
        ("### Fixed", "### Bugs", "is not one of"),
        ("[1.0.0]: https://example.org/releases/tag/v1.0.0\n", "", "missing for ['1.0.0']"),
        ("# Changelog", "# Changes", "first line"),
    ],
)
def test_a_broken_changelog_fails(old: str, new: str, problem: str) -> None:
    broken = GOOD.replace(old, new, 1)
    assert broken != GOOD
    found = CHANGELOG.problems(broken, "1.0.0")
    assert any(problem in line for line in found), found


def test_the_current_version_needs_a_section() -> None:
    assert any("2.0.0 has no section" in line for line in CHANGELOG.problems(GOOD, "2.0.0"))


def test_link_references_belong_at_the_bottom() -> None:
    moved = GOOD.replace("## [Unreleased]", "[1.0.0]: https://example.org/x\n\n## [Unreleased]")
    found = CHANGELOG.problems(
        moved.replace("[1.0.0]: https://example.org/releases/tag/v1.0.0\n", ""), "1.0.0"
    )
    assert any("at the bottom" in line for line in found), found


def test_section_extracts_one_release_without_its_neighbours() -> None:
    assert CHANGELOG.section(GOOD, "v1.1.0") == "### Fixed\n\n- A bug."
    assert CHANGELOG.section(GOOD, "1.0.0") == "### Added\n\n- Everything."
    with pytest.raises(CHANGELOG.ChangelogError, match=re.escape("no '## [3.0.0]")):
        CHANGELOG.section(GOOD, "3.0.0")


def test_the_script_prints_the_section_and_fails_for_an_unknown_version(tmp_path: Path) -> None:
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(GOOD, "utf-8")
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), "1.1.0", "--changelog", str(changelog)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ok.returncode, ok.stdout) == (0, "### Fixed\n\n- A bug.\n")
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), "9.9.9", "--changelog", str(changelog)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert "add one before tagging" in missing.stderr
