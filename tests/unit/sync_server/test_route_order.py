"""The sync endpoints are matched first; the API documentation keeps the inclusion order."""

from __future__ import annotations

from pathlib import Path

from sync_server.app import create_app
from sync_server.routers import health, sync
from tests.integration.sync_server.support import make_settings


def test_sync_routes_are_tried_first_and_documented_in_inclusion_order(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    first = app.router.routes[0]
    assert getattr(first, "original_router", None) is sync.router
    paths = list(app.openapi()["paths"])
    health_paths = [route.path for route in health.router.routes]  # type: ignore[attr-defined]
    sync_paths = [route.path for route in sync.router.routes]  # type: ignore[attr-defined]
    assert paths[: len(health_paths)] == health_paths
    assert paths.index(sync_paths[0]) > paths.index(health_paths[-1])
    assert set(sync_paths) <= set(paths)
