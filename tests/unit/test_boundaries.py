"""Package boundaries from DESIGN §1 and docs/architecture.md: imports checked in a
fresh interpreter each, the layering rules of app/ checked in the source."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules_after_import(*modules: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def python_modules(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts or path.name == "__main__.py":
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def test_providers_import_neither_app_nor_sync_server_nor_qt() -> None:
    loaded = modules_after_import(*python_modules("providers"))
    assert not {m for m in loaded if m.split(".")[0] in {"app", "sync_server", "PySide6"}}


def test_app_services_do_not_import_qt() -> None:
    services = [m for m in python_modules("app") if not m.startswith("app.ui")]
    loaded = modules_after_import(*services)
    assert "PySide6" not in loaded
    assert not {m for m in loaded if m.startswith("sync_server")}


def test_sync_server_does_not_import_app() -> None:
    loaded = modules_after_import(*python_modules("sync_server"))
    assert not {m for m in loaded if m == "app" or m.startswith("app.")}


def test_only_app_ui_mentions_qt_in_imports() -> None:
    offenders = []
    for package in ("app", "providers", "sync_server"):
        for path in (ROOT / package).rglob("*.py"):
            if path.is_relative_to(ROOT / "app" / "ui"):
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                stripped = line.strip()
                if stripped.startswith(("import PySide6", "from PySide6", "import qasync")):
                    offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert offenders == []


def _app_modules(folder: str) -> list[Path]:
    return sorted((ROOT / "app" / folder).rglob("*.py"))


def _imported_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_widgets_import_no_store_module_but_its_models() -> None:
    """Widgets ask the chat service; the store's records are all they may know of it."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _app_modules("ui")
        for name in _imported_names(path)
        if name.startswith("app.store") and name != "app.store.models"
    ]
    assert offenders == []


def test_widgets_reach_no_library_store_or_database_thread() -> None:
    """No widget reads the library or a store, nor runs work on the database thread."""
    pattern = re.compile(r"\.library\b|\.store_of\(|\.stores\b|runner\.db\(|runner\.db_sync\(")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _app_modules("ui")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


# SQL a statement starts with, inside a string literal.
_SQL = re.compile(
    r"""["'](?:[^"'\n]*\s)?(SELECT\s|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"""
    r"""CREATE\s+(?:TABLE|INDEX|TRIGGER|VIRTUAL)|ALTER\s+TABLE|DROP\s+TABLE|PRAGMA\s)""",
)
# The SQLCipher file layer: keying, hardening pragmas, rekey by export, integrity checks.
# It never reads or writes chats; everything else that speaks SQL is in app/store/.
_SQL_ALLOWED = {ROOT / "app" / "vault" / "database.py"}


def test_sql_only_in_the_store() -> None:
    offenders = []
    for package in ("app", "providers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "app" / "store") or path in _SQL_ALLOWED:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _SQL.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_sql_check_finds_sql() -> None:
    """The pattern above is not vacuous: it finds the store's statements."""
    store = (ROOT / "app" / "store" / "chats.py").read_text(encoding="utf-8")
    assert len([line for line in store.splitlines() if _SQL.search(line)]) > 20


def test_app_ui_holds_only_qt_code() -> None:
    """Qt-free code (the session, provider set-up) lives beside the services, not in ui/.

    Two exceptions that serve only the window: ``tasks`` (runs coroutines on the Qt
    event loop and reports back to widgets) and ``markdown`` (renders for Qt's text
    documents).
    """
    allowed = {"__init__.py", "tasks.py", "markdown.py"}
    qt_free = [
        path.name
        for path in _app_modules("ui")
        if path.name not in allowed
        and not any(name.startswith("PySide6") for name in _imported_names(path))
    ]
    assert qt_free == []
