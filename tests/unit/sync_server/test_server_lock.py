"""The server image's lock (requirements-server.lock) has what sync_server imports, and
only that: not the desktop app's packages (packaging/server_requirements.py)."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "packaging"))

import server_requirements  # noqa: E402


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, _, version = line.split(";")[0].strip().rstrip("\\ ").partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def _imported_top_level_modules(package: Path) -> set[str]:
    found: set[str] = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_module_the_server_imports_is_pinned() -> None:
    pins = _pins(ROOT / "requirements-server.lock")
    owners = packages_distributions()
    third_party = {
        module
        for module in _imported_top_level_modules(ROOT / "sync_server")
        if module not in sys.stdlib_module_names and module not in {"sync_server", "__future__"}
    }
    assert third_party, "no imports found: the scan is broken"
    missing = {
        module: owners.get(module)
        for module in sorted(third_party)
        if not any(dist.lower().replace("_", "-") in pins for dist in owners.get(module, []))
    }
    assert missing == {}, "add them to SERVER_BASE in packaging/server_requirements.py"


def test_the_desktop_app_stays_out_of_the_server_image() -> None:
    pins = _pins(ROOT / "requirements-server.lock")
    for desktop in ("pyside6-essentials", "sqlcipher3", "fido2", "keyring", "qasync", "zxcvbn"):
        assert desktop not in pins


def test_the_image_gets_the_versions_the_tests_ran() -> None:
    server, dev = _pins(ROOT / "requirements-server.lock"), _pins(ROOT / "requirements-dev.lock")
    assert {name: (version, dev.get(name)) for name, version in server.items()} == {
        name: (version, version) for name, version in server.items()
    }


def test_the_server_requirements_come_from_pyproject() -> None:
    lines = server_requirements.server_requirements(ROOT / "pyproject.toml")
    names = [server_requirements._name(line) for line in lines]
    assert names[: len(server_requirements.SERVER_BASE)] == list(server_requirements.SERVER_BASE)
    assert "fastapi" in names and "pyside6-essentials" not in names
