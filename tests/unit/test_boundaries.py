"""Package boundaries from DESIGN §1, checked in a fresh interpreter each."""

from __future__ import annotations

import json
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
