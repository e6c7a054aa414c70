"""Print the sync server's requirements, taken from pyproject.toml: ``.ci/lock`` input.

The server image installs ``requirements-server.lock`` and then the project with
``--no-deps``: it needs the ``server`` extra and the few base dependencies that
``sync_server`` imports, not the desktop app's (PySide6, SQLCipher, FIDO2, keyring...,
several hundred MB). The names below are the base dependencies the server uses; their
version ranges come from ``[project] dependencies``, so they are written once.
``tests/unit/sync_server/test_server_lock.py`` checks that every third-party module
``sync_server`` imports is pinned by the lock, and that the desktop's are not.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: Base dependencies (``[project] dependencies``) that sync_server imports.
SERVER_BASE = ("httpx", "pydantic", "cryptography", "argon2-cffi", "python-json-logger")


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


def server_requirements(pyproject: Path) -> list[str]:
    """The requirement lines of the server image, from ``pyproject``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    base = {_name(requirement): requirement for requirement in project["dependencies"]}
    missing = [name for name in SERVER_BASE if name not in base]
    if missing:
        raise SystemExit(f"not in [project] dependencies any more: {', '.join(missing)}")
    return [base[name] for name in SERVER_BASE] + list(project["optional-dependencies"]["server"])


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    sys.stdout.write("".join(f"{line}\n" for line in server_requirements(root / "pyproject.toml")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
