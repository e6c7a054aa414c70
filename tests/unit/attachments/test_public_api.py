"""The attachments package's public surface, and what importing it loads."""

from __future__ import annotations

import json
import subprocess
import sys

import app.attachments


def test_all_names_exist_and_are_sorted() -> None:
    names = app.attachments.__all__
    assert all(hasattr(app.attachments, name) for name in names)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))


def test_importing_the_package_loads_no_qt_and_no_document_parser() -> None:
    # The window imports the package at start-up; pypdf, python-docx and lxml load on
    # the first PDF or Word file.
    code = "import sys, json, app.attachments; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert not loaded & {"PySide6", "pypdf", "docx", "lxml"}
