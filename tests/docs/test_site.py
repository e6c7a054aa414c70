"""The documentation site builds with ``mkdocs build --strict`` (docs/development.md).

The build renders the README as the home page and the sync server's API reference from
the OpenAPI document the app produces (docs/hooks/); a broken link or anchor fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.docs import ROOT

pytestmark = pytest.mark.docs


def test_site_builds_strict_with_the_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**_environment(), "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"mkdocs build --strict: {elapsed:.1f} s")

    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "/v1/sync/push" in api
    assert 'id="schema-pushrequest"' in api
    assert 'href="../openapi.json"' in api
    document = json.loads((site / "openapi.json").read_text(encoding="utf-8"))
    assert "/v1/sync/push" in document["paths"]

    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="user-guide/"' in home  # the README's docs/ links, fixed for the site
    for page in ("user-guide", "providers", "chats", "sync", "security", "server"):
        assert (site / page / "index.html").is_file(), page
    assert not (site / "hooks").exists()
    assert "fonts.googleapis.com" not in home


def _environment() -> dict[str, str]:
    """Ours without the repository address (the README's other links become text)."""
    return {key: value for key, value in os.environ.items() if key != "DOCS_REPO_URL"}
