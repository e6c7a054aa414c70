"""Interactive API pages: ``/docs`` (Swagger UI) and ``/redoc``, from files in the package.

The pages load their scripts, styles and icon from ``/docs-assets/…``, the vendored copies
in ``sync_server/static`` (versions and hashes in ``static/vendor.json``), never from a
CDN: a browser that opens them talks to this server only. Swagger UI's online validator
badge is off for the same reason.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from sync_server.routing import ApiRoute

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS_PATH = "/docs-assets"
VENDORED = ("swagger-ui", "redoc")

router = APIRouter(include_in_schema=False, route_class=ApiRoute)


def _prefix(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over ``/openapi.json``."""
    prefix = _prefix(request)
    assets = f"{prefix}{ASSETS_PATH}/swagger-ui"
    return get_swagger_ui_html(
        openapi_url=f"{prefix}/openapi.json",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon-32x32.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over ``/openapi.json`` (without Google Fonts)."""
    prefix = _prefix(request)
    return get_redoc_html(
        openapi_url=f"{prefix}/openapi.json",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{prefix}{ASSETS_PATH}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{prefix}{ASSETS_PATH}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )


def mount_assets(app: FastAPI) -> None:
    """Serve the vendored directories under ``/docs-assets/<name>/``."""
    for name in VENDORED:
        app.mount(
            f"{ASSETS_PATH}/{name}",
            StaticFiles(directory=STATIC_DIR / name),
            name=f"docs-assets-{name}",
        )
