"""The OpenAPI document is byte-identical to the reviewed copy in ``data/openapi.json``.

Refactoring how endpoints declare their parameters (e.g. the shared ``Annotated`` header
aliases of :mod:`sync_server.deps`) or how requests reach them (:mod:`sync_server.fastlane`)
must not change the published API. When the API changes on purpose, regenerate the copy
with ``.venv/bin/python -m tests.unit.sync_server.test_openapi_document`` and review the diff.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from sync_server.app import create_app
from tests.integration.sync_server.support import make_settings

SNAPSHOT = Path(__file__).parent / "data" / "openapi.json"


def _document(tmp_path: Path, *, fast_lane: bool = True) -> str:
    app = create_app(make_settings(tmp_path), fast_lane=fast_lane)
    return json.dumps(app.openapi(), indent=1) + "\n"


def test_openapi_document_is_unchanged(tmp_path: Path) -> None:
    document = _document(tmp_path)
    assert document == SNAPSHOT.read_text(encoding="utf-8"), (
        "the OpenAPI document changed; if on purpose, regenerate data/openapi.json "
        "(see this module's docstring)"
    )
    assert _document(tmp_path, fast_lane=False) == document


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        SNAPSHOT.write_text(_document(Path(tmp)), encoding="utf-8")
