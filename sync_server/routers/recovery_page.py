"""The cancel link of the "recovery started" mail: ``GET|POST /recovery/cancel``.

``GET /recovery/cancel?token=…`` shows a minimal page (no JavaScript, a strict Content
Security Policy, ``Cache-Control: no-store``, no referrer) with a *Cancel this recovery*
button; only the ``POST`` that button sends cancels, so mail scanners that fetch links do
not. The token is 256 random bits, stored as its SHA-256 only, good until the recovery
expires, and works once: a used or unknown token gets a page saying so. The page counts
against the sign-in rate limit of the caller's address.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from sync_server.accounts import audit, now
from sync_server.deps import SignInLimits, StateDep
from sync_server.models import Recovery
from sync_server.recoveries import (
    CANCEL_PATH,
    OPEN_STATUSES,
    PendingMails,
    RecoveryNotices,
    hash_token,
    known_addresses,
    simple_mail,
)
from sync_server.routing import ApiRoute
from sync_server.state import ServerState

router = APIRouter(tags=["recovery"], route_class=ApiRoute, include_in_schema=False)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;"
    "line-height:1.5;color:#222}button{font-size:1.1em;padding:.5em 1.2em;cursor:pointer}"
    "code{font-size:.95em}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _page(status: int, title: str, *paragraphs: str, form_token: str | None = None) -> HTMLResponse:
    """A self-contained page; ``paragraphs`` are HTML already escaped by the caller."""
    body = "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    if form_token is not None:
        # A relative action keeps a PUBLIC_URL path prefix; the token travels in the body.
        body += (
            '<form method="post" action="cancel">'
            f'<input type="hidden" name="token" value="{html.escape(form_token)}">'
            '<button type="submit">Cancel this recovery</button></form>'
        )
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{html.escape(title)} - Hushchat</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_HEADERS)


def _when(moment: datetime) -> str:
    return html.escape(f"{moment:%Y-%m-%d %H:%M} UTC")


def _unknown() -> HTMLResponse:
    return _page(
        404,
        "Link not valid",
        "This cancel link is not valid: it may be incomplete (copy the whole address from "
        "the mail) or belong to a recovery that no longer exists.",
        "To see recoveries in progress, open Hushchat on a signed-in device.",
    )


def _over(row: Recovery, moment: datetime) -> HTMLResponse:
    if row.status in OPEN_STATUSES and moment > row.expires_at:
        text = "This recovery expired; nothing needs to be cancelled."
    elif row.status == "cancelled":
        text = "This recovery was already cancelled; the link cannot be used again."
    elif row.status == "completed":
        text = (
            "This recovery already completed: the device that started it has the key of your "
            "Standard synced chats. If that was not you, change your password at your sign-in "
            "provider and revoke the device in Hushchat."
        )
    else:
        text = "This recovery is over; nothing needs to be cancelled."
    return _page(410, "Link already used", html.escape(text))


async def _find(state: ServerState, token: str) -> Recovery | None:
    if not _TOKEN.fullmatch(token):
        return None
    async with state.db.read() as session:
        return (
            await session.execute(
                select(Recovery).where(Recovery.cancel_token_hash == hash_token(token))
            )
        ).scalar_one_or_none()


@router.get(CANCEL_PATH, dependencies=[SignInLimits])
async def cancel_page(
    state: StateDep, token: Annotated[str, Query(max_length=256)] = ""
) -> HTMLResponse:
    """Shows the recovery and a button; does not cancel anything by itself."""
    row = await _find(state, token)
    moment = now()
    if row is None:
        return _unknown()
    if row.status not in OPEN_STATUSES or moment > row.expires_at:
        return _over(row, moment)
    return _page(
        200,
        "Cancel this recovery?",
        f"A device (<code>{html.escape(row.device_id)}</code>) started recovering the key of "
        f"your Standard synced chats at {_when(row.created_at)}. It can complete after "
        f"{_when(row.not_before)}.",
        "If you did not start it, cancel it now and change your password at your sign-in provider.",
        form_token=token,
    )


@router.post(CANCEL_PATH, dependencies=[SignInLimits])
async def cancel_by_link(request: Request, state: StateDep) -> HTMLResponse:
    """Cancels the recovery of the token in the form body (once)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    tokens = parse_qs(body, max_num_fields=4).get("token", [])
    token = tokens[0] if len(tokens) == 1 else ""
    if not _TOKEN.fullmatch(token):
        return _unknown()
    notices = RecoveryNotices(state.mailer, state.settings)
    mails = PendingMails()
    moment = now()
    async with state.db.write() as session:
        row = (
            await session.execute(
                select(Recovery).where(Recovery.cancel_token_hash == hash_token(token))
            )
        ).scalar_one_or_none()
        if row is None:
            return _unknown()
        if row.status not in OPEN_STATUSES or moment > row.expires_at:
            return _over(row, moment)
        row.status = "cancelled"
        row.finished_at = moment
        row.cancel_reason = "link"
        row.sealed_answer = None
        await audit(session, row.account_id, "recovery.cancelled", None, row.id)
        subject, text = simple_mail("cancelled", row, moment)
        mails.add(await known_addresses(session, row.account_id), subject, text)
        account_id = row.account_id
    notices.send(mails)
    state.notifier.changed(account_id)
    return _page(
        200,
        "Recovery cancelled",
        "The recovery was cancelled; the device that started it cannot complete it.",
        "If you did not start it, change your password at your sign-in provider now: "
        "whoever did could sign in as you.",
    )
