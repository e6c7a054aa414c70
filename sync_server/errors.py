"""The sync server's exception tree and its RFC 9457 problem-details rendering.

::

    SyncServerError                 base of everything the server raises on purpose
    ├── ConfigError                 settings missing or wrong (named in the message)
    ├── DatabaseNotMigratedError    schema older than the code and auto-migrate off
    └── ProblemError                an HTTP answer as problem+json
        └── (status, title, detail, type slug, extra members, headers)

Every HTTP error the server returns, including framework 404/405/422 and unexpected 500s,
is rendered by :func:`problem_response` with media type ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://hushchat.invalid/problems/"


class SyncServerError(Exception):
    """Base of the sync server's own exceptions."""


class ConfigError(SyncServerError):
    """Settings are missing or invalid; the message names the setting and what to do."""


class DatabaseNotMigratedError(SyncServerError):
    """The database schema is not at the revision this code needs."""


class ProblemError(SyncServerError):
    """An HTTP error answered as an RFC 9457 problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        slug: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.extra = extra or {}
        self.headers = headers or {}


class Problem(BaseModel):
    """RFC 9457 problem details; extension members are allowed."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="URI identifying the problem type.")
    title: str = Field(description="Short human-readable summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(default=None, description="Explanation of this occurrence.")
    instance: str | None = Field(default=None, description="URI of this occurrence.")
    request_id: str | None = Field(default=None, description="Request id, as in the logs.")


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    instance: str | None = None,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build a ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if request_id is not None:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)
