"""MkDocs hooks of the documentation site (``mkdocs.yml``, docs/development.md).

- ``index.md`` is the repository's README, read at build time (never copied by hand):
  links into ``docs/`` become site links, links to other files of the repository point
  at ``repo_url`` when it is set (the Pages workflow sets it) and become plain text
  otherwise.
- ``api.md`` and ``openapi.json``: the sync server's OpenAPI document, produced by
  ``sync_server.app.create_app`` with throw-away settings, and a Markdown reference
  rendered from it (:mod:`openapi_markdown`).

Nothing is downloaded; the build needs the server's extra (``requirements-dev.lock``).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))

from openapi_markdown import render

API_PAGE = "api.md"
OPENAPI_FILE = "openapi.json"
_LINK = re.compile(r"(!?)\[([^\]]*)\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def _repo_root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def readme_as_index(readme: str, repo_url: str | None) -> str:
    """The README with its relative links fixed for the site (its ``index.md``)."""

    def fix(match: re.Match[str]) -> str:
        bang, text, target = match.groups()
        if target.startswith("docs/"):
            return f"{bang}[{text}]({target.removeprefix('docs/')})"
        if repo_url:
            return f"{bang}[{text}]({repo_url.rstrip('/')}/blob/HEAD/{target})"
        # Without the repository's address a file outside docs/ cannot be linked.
        return f"`{target}`" if bang else text

    return _LINK.sub(fix, readme)


def openapi_document(root: Path) -> dict[str, Any]:
    """The OpenAPI document of the sync server, built with throw-away settings."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from sync_server.app import create_app
    from sync_server.sealing import generate_secrets
    from sync_server.settings import Settings

    with tempfile.TemporaryDirectory(prefix="hushchat-docs-") as data_dir:
        # The server's own secrets only (the escrow private key belongs to the escrow
        # worker; given it, the app warns about an older set-up).
        values: dict[str, Any] = {
            k.lower(): v
            for k, v in generate_secrets().items()
            if k.lower() not in {"escrow_private_key", "escrow_kek"}
        }
        settings = Settings(
            **values,
            data_dir=Path(data_dir),
            oidc_issuer="https://issuer.example/realms/hushchat",
            oidc_audience="hushchat-sync",
            oidc_client_id="hushchat-desktop",
        )
        document: dict[str, Any] = create_app(settings).openapi()
    return document


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add the generated pages: the README as ``index.md``, the API reference."""
    root = _repo_root(config)
    readme = (root / "README.md").read_text(encoding="utf-8")
    files.append(
        File.generated(config, "index.md", content=readme_as_index(readme, config.repo_url))
    )
    document = openapi_document(root)
    files.append(
        File.generated(config, OPENAPI_FILE, content=json.dumps(document, indent=1) + "\n")
    )
    files.append(File.generated(config, API_PAGE, content=render(document, OPENAPI_FILE)))
    return files
