"""``/docs`` and ``/redoc`` load everything from this server: no CDN, no fonts, no badge."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from sync_server.routers.docs import STATIC_DIR

# Anything that names a host: absolute or protocol-relative URLs.
_EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+", re.IGNORECASE)


class _References(HTMLParser):
    """Every src/href of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_pages_reference_no_external_host(api: httpx.AsyncClient, page: str) -> None:
    response = await api.get(page)
    assert response.status_code == 200
    html = response.text
    assert _EXTERNAL.search(html) is None, _EXTERNAL.findall(html)
    urls = _references(html)
    assert urls, "the page loads its assets"
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        assert url.startswith("/docs-assets/"), url
        asset = await api.get(url)
        assert asset.status_code == 200, url
        local = STATIC_DIR / url.removeprefix("/docs-assets/")
        assert hashlib.sha256(asset.content).digest() == hashlib.sha256(local.read_bytes()).digest()


async def test_swagger_ui_does_not_call_the_online_validator(api: httpx.AsyncClient) -> None:
    html = (await api.get("/docs")).text
    assert '"validatorUrl": null' in html
    assert "/openapi.json" in html


async def test_only_the_vendored_directories_are_served(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs-assets/vendor.json")).status_code == 404
    assert (await api.get("/docs-assets/redoc/../vendor.json")).status_code == 404
    js = await api.get("/docs-assets/redoc/redoc.standalone.js")
    assert js.headers["content-type"].startswith(("text/javascript", "application/javascript"))


async def test_docs_pages_stay_out_of_the_api_schema(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert not {"/docs", "/redoc"} & set(paths)
    assert not any(path.startswith("/docs-assets") for path in paths)
