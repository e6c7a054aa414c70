"""The opt-in check for a newer release (``updates.check`` in the config, off by default).

When it is on, the window asks once per run (after the first unlock) for the project's
latest release (``updates.url``: GitHub's "latest release" API answer, which lists no
pre-releases) and,
when that release is newer than the running version, shows a link to its page. Nothing is
downloaded or installed: the user follows the link, reads the release notes and installs it
themselves. The request carries no chat, key or account data, only what any HTTPS request
does (the address it comes from) and a ``User-Agent`` naming Hushchat and its version; it
uses the proxy the environment or system sets, like cloud providers do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import httpx

from app import __version__
from app.config import DEFAULT_RELEASES_URL
from app.errors import HushchatError

__all__ = [
    "DEFAULT_RELEASES_URL",
    "Release",
    "UpdateCheckError",
    "newer_release",
    "parse_version",
]

#: Seconds for the whole check.
TIMEOUT_SECONDS = 10.0
#: Largest answer read (GitHub's is a few KiB plus the release notes).
MAX_ANSWER_BYTES = 1 << 20

_VERSION = re.compile(r"v?(\d{1,6})\.(\d{1,6})\.(\d{1,6})")


@dataclass(frozen=True, slots=True)
class Release:
    """A release newer than the running version: its version and its web page."""

    version: str
    url: str


class UpdateCheckError(HushchatError):
    """The check failed (network, answer); the message says what happened."""


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``1.2.3`` or ``v1.2.3`` as numbers; ``None`` for anything else (pre-releases too)."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


async def newer_release(
    url: str,
    current: str = __version__,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Release | None:
    """The latest release when it is newer than ``current``, else ``None``.

    Raises :class:`UpdateCheckError` when the server cannot be reached or its answer is
    not a release.
    """
    headers = {
        "Accept": "application/vnd.github+json",
        "User-Agent": f"Hushchat/{current} (update check)",
    }
    try:
        async with (
            httpx.AsyncClient(
                timeout=TIMEOUT_SECONDS, transport=transport, follow_redirects=True
            ) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            if response.status_code != 200:
                raise UpdateCheckError(f"the release server answered HTTP {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise UpdateCheckError("the release server's answer is too large")
    except httpx.HTTPError as exc:
        raise UpdateCheckError(
            f"could not reach the release server ({type(exc).__name__})"
        ) from exc
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise UpdateCheckError("the release server's answer is not JSON") from exc
    if not isinstance(answer, dict):
        raise UpdateCheckError("the release server's answer is not a release")
    tag, page = answer.get("tag_name"), answer.get("html_url")
    if not isinstance(tag, str) or not isinstance(page, str):
        raise UpdateCheckError("the release server's answer has no tag_name or html_url")
    latest = parse_version(tag)
    if latest is None:
        raise UpdateCheckError(f"the latest release has no version number: {tag[:40]!r}")
    if not page.startswith("https://"):
        raise UpdateCheckError("the release page is not an https:// address")
    running = parse_version(current)
    if running is not None and latest <= running:
        return None
    return Release(version=".".join(str(part) for part in latest), url=page)
