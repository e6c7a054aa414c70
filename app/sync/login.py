"""Signing in to a sync server: the flows that end in a :class:`SyncAccount`.

* :func:`sign_in_with_browser` — OpenID Connect authorization code + PKCE (S256) with a
  loopback redirect (RFC 8252 §7.3): a one-shot HTTP listener on ``127.0.0.1`` and a
  random port receives ``/callback``; ``state`` (and the RFC 9207 ``iss``, when sent) is
  checked. ``no_browser=True`` prints the authorization URL instead of opening it and
  still waits for the redirect.
* :func:`sign_in_with_device_code` — the device authorization grant (RFC 8628) for
  machines without a browser, when the issuer offers it.
* :func:`sign_in_local` — the server's own e-mail/password accounts; with
  :func:`sign_up_local` (the client solves the ALTCHA proof of work itself, see
  :func:`solve_altcha`), :func:`verify_local_email` and the password reset.

The issuer, client id, scopes and audience come from the server's ``GET /v1/meta``; the
endpoints from the issuer's ``/.well-known/openid-configuration``. OAuth is done by
authlib (``AsyncOAuth2Client``). The flows generate the device key
(:meth:`DeviceKey.generate`) unless one is passed in, and finish with ``GET /v1/me``,
which registers the device and names the account.

Codes, tokens and passwords are never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import platform
import secrets
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TextIO
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from app.sync.account import SignInKind, SyncAccount
from app.sync.client import (
    DEFAULT_TIMEOUT,
    LocalTokens,
    ServerConnection,
    SyncClient,
    authlib_client,
    check_server_url,
    device_name_header,
    oauth_client,
    parse_retry_after,
    problem_message,
)
from app.sync.dpop import DPOP_HEADER, DeviceKey
from app.sync.errors import (
    SyncError,
    SyncOfflineError,
    SyncProtocolError,
    SyncRetryLaterError,
)
from app.sync.protocol import Meta, OidcMeta

__all__ = [
    "DEVICE_CODE_GRANT",
    "IssuerEndpoints",
    "SignInError",
    "SignInMethods",
    "confirm_password_reset",
    "default_device_name",
    "discover_issuer",
    "fetch_meta",
    "request_password_reset",
    "sign_in_local",
    "sign_in_methods",
    "sign_in_with_browser",
    "sign_in_with_device_code",
    "sign_up_local",
    "solve_altcha",
    "verify_local_email",
]

log = logging.getLogger(__name__)

CALLBACK_PATH: Final = "/callback"
DEFAULT_BROWSER_TIMEOUT: Final = 300.0
DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
_MAX_REQUEST_HEAD: Final = 16 * 1024
_CONNECTION_TIMEOUT: Final = 10.0

OpenBrowser = Callable[[str], object]
Sleep = Callable[[float], Awaitable[None]]


class SignInError(SyncError):
    """Signing in did not work; the message says why and what to do."""


def default_device_name() -> str:
    """``Hushchat on <host name>`` as the device list shows it."""
    return device_name_header(f"Hushchat on {platform.node() or 'this computer'}") or "Hushchat"


# -- the server's parameters and the issuer's endpoints --------------------------------


async def fetch_meta(
    server_url: str,
    *,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Meta:
    """``GET /v1/meta`` of ``server_url``: how to sign in there."""
    async with ServerConnection(server_url, proxy=proxy, transport=transport) as server:
        return await server.meta()


@dataclass(frozen=True)
class IssuerEndpoints:
    """What sign-in needs from the issuer's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    device_authorization_endpoint: str | None
    revocation_endpoint: str | None = None


async def discover_issuer(oauth: Any, issuer: str) -> IssuerEndpoints:
    """Read ``{issuer}/.well-known/openid-configuration`` with authlib's client ``oauth``.

    The document must name the same issuer (OpenID Connect Discovery §4.3) and its
    endpoints must be https (or loopback http).
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    host = urlsplit(issuer).netloc
    try:
        response = await oauth.request("GET", url, withhold_token=True)
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
        raise SyncOfflineError(
            f"Cannot reach the identity provider {host} ({type(error).__name__})."
        ) from error
    if response.status_code != 200:
        raise SignInError(
            f"The identity provider {host} has no OpenID configuration "
            f"(HTTP {response.status_code} for {url})."
        )
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise SignInError(
            f"The identity provider's configuration at {url} does not name the issuer "
            f"{issuer}: the sync server's OIDC settings do not match the provider."
        )

    def endpoint(name: str, *, required: bool = True) -> str | None:
        value = document.get(name)
        if not isinstance(value, str) or not value:
            if required:
                raise SignInError(f"The identity provider {host} publishes no {name}.")
            return None
        return check_server_url(value, what="identity provider")

    authorization = endpoint("authorization_endpoint")
    token = endpoint("token_endpoint")
    assert authorization is not None and token is not None
    return IssuerEndpoints(
        issuer=issuer,
        authorization_endpoint=authorization,
        token_endpoint=token,
        device_authorization_endpoint=endpoint("device_authorization_endpoint", required=False),
        revocation_endpoint=endpoint("revocation_endpoint", required=False),
    )


async def revoke_refresh_token(
    account: SyncAccount,
    *,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> bool:
    """Ask the identity provider to revoke ``account``'s refresh token (RFC 7009), as
    signing out does: a copy of the token (a backup of the vault, a stolen laptop's disk)
    then renews nothing. True when the provider revoked it; False when there is nothing
    to revoke or the provider offers no revocation endpoint. Local accounts' tokens are
    the sync server's own and end when the device is revoked there."""
    if account.sign_in != "oidc" or not account.refresh_token or not account.issuer:
        return False
    host = urlsplit(account.issuer).netloc
    async with oauth_client(
        proxy=proxy, transport=transport, timeout=DEFAULT_TIMEOUT, client_id=account.client_id
    ) as oauth:
        endpoints = await discover_issuer(oauth, account.issuer)
        if endpoints.revocation_endpoint is None:
            log.info("the identity provider %s has no revocation endpoint", host)
            return False
        try:
            response = await oauth.revoke_token(
                endpoints.revocation_endpoint,
                token=account.refresh_token,
                token_type_hint="refresh_token",  # noqa: S106 (a hint, not a secret)
            )
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise SyncOfflineError(
                f"Cannot reach the identity provider {host} ({type(error).__name__})."
            ) from error
    if response.status_code != 200:  # RFC 7009 §2.2: 200 also for an unknown token
        raise SignInError(
            f"The identity provider {host} did not revoke the sign-in "
            f"({_oauth_answer_error(response)})."
        )
    return True


@dataclass(frozen=True)
class SignInMethods:
    """How one can sign in to a server: what the UI and the CLI offer.

    ``issuer`` is the identity provider (None: none configured; then ``browser`` and
    ``device_code`` are False); ``device_code`` is True when that provider offers the
    device authorization grant; ``local_accounts`` when the server has its own accounts.
    """

    server_url: str
    issuer: str | None
    browser: bool
    device_code: bool
    local_accounts: bool


async def sign_in_methods(
    server_url: str,
    *,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SignInMethods:
    """Ask the server (``/v1/meta``) and its identity provider (discovery) how to sign in."""
    url = check_server_url(server_url)
    async with ServerConnection(url, proxy=proxy, transport=transport) as server:
        meta = await server.meta()
    if meta.oidc is None:
        return SignInMethods(url, None, False, False, meta.local_accounts)
    check_server_url(meta.oidc.issuer, what="identity provider")
    async with oauth_client(proxy=proxy, transport=transport, timeout=DEFAULT_TIMEOUT) as oauth:
        endpoints = await discover_issuer(oauth, meta.oidc.issuer)
    return SignInMethods(
        url,
        meta.oidc.issuer,
        True,
        endpoints.device_authorization_endpoint is not None,
        meta.local_accounts,
    )


def _require_oidc(meta: Meta, server_url: str) -> OidcMeta:
    if meta.oidc is None:
        hint = (
            " It offers e-mail/password accounts: sign in with those."
            if meta.local_accounts
            else ""
        )
        raise SignInError(f"The sync server {server_url} has no identity provider set up.{hint}")
    check_server_url(meta.oidc.issuer, what="identity provider")
    return meta.oidc


def _token_fields(token: dict[str, Any], issuer: str) -> tuple[str, str | None, float | None]:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise SignInError(f"The identity provider {issuer} sent no access token.")
    token_type = str(token.get("token_type", "Bearer")).lower()
    if token_type != "bearer":  # noqa: S105 - a token type's name
        raise SignInError(
            f"The identity provider {issuer} issued a {token.get('token_type')!r} token; "
            "the sync server needs a Bearer token."
        )
    refresh = token.get("refresh_token")
    expires_at = token.get("expires_at")
    return (
        access,
        refresh if isinstance(refresh, str) and refresh else None,
        float(expires_at) if isinstance(expires_at, int | float) else None,
    )


async def _finish(
    server_url: str,
    kind: SignInKind,
    key: DeviceKey,
    device_name: str | None,
    tokens: tuple[str, str | None, float | None],
    *,
    oidc: OidcMeta | None,
    token_endpoint: str | None,
    proxy: str | None,
    transport: httpx.AsyncBaseTransport | None,
) -> SyncAccount:
    """The account, completed from ``GET /v1/me`` (which also registers the device)."""
    access, refresh, expires_at = tokens
    account = SyncAccount(
        server_url=server_url,
        account_id="",
        email=None,
        sign_in=kind,
        device_key=key,
        access_token=access,
        refresh_token=refresh,
        expires_at=expires_at,
        device_name=device_name,
        issuer=oidc.issuer if oidc else None,
        token_endpoint=token_endpoint,
        client_id=oidc.client_id if oidc else None,
        audience=oidc.audience if oidc else None,
    )
    async with SyncClient(account, proxy=proxy, transport=transport) as client:
        me = await client.me()
    account.account_id = me.id
    account.email = me.email
    if kind == "local":
        account.issuer = me.issuer
    log.info("sync: signed in to %s as account %s, device %s", server_url, me.id, key.device_id)
    return account


def _oauth_error_text(error: Any) -> str:
    code = getattr(error, "error", None) or type(error).__name__
    description = getattr(error, "description", None)
    text = f"{code}: {description}" if description else str(code)
    return " ".join(text.split())[:200]


async def _token_request(host: str, call: Awaitable[Any]) -> dict[str, Any]:
    """Await an authlib token call, mapping network and HTTP failures."""
    try:
        token = await call
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
        raise SyncOfflineError(
            f"Cannot reach the identity provider {host} ({type(error).__name__})."
        ) from error
    except httpx.HTTPStatusError as error:
        status = error.response.status_code
        if status in (429, 503):
            retry_after = parse_retry_after(error.response.headers.get("Retry-After"))
            raise SyncRetryLaterError(
                f"The identity provider {host} asks to wait {retry_after:.0f} s.", retry_after
            ) from None
        raise SignInError(f"The identity provider {host} failed (HTTP {status}).") from None
    except ValueError:
        raise SyncProtocolError(
            f"The identity provider {host} answered the token request with something that is "
            "not a token."
        ) from None
    if not isinstance(token, dict):
        raise SyncProtocolError(f"The identity provider {host} sent no token.")
    return token


def _write(output: TextIO | None, text: str) -> None:
    stream = output if output is not None else sys.stderr
    stream.write(text)
    stream.flush()


# -- authorization code + PKCE with a loopback redirect --------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Hushchat</title>
<style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:32em;color:#222}}</style>
</head><body><h1>{title}</h1><p>{text}</p></body></html>
"""


class _LoopbackRedirect:
    """A one-shot HTTP listener on 127.0.0.1 for the authorization response.

    Only ``GET /callback`` with the expected ``state`` ends the wait; other requests
    (a favicon, a stale tab, a page guessing the port) get an error page and the listener
    keeps waiting. Each connection must send its request head within 10 s and 16 KiB.
    """

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._state = ""
        self._result: asyncio.Future[dict[str, str]] | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self._result = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, limit=_MAX_REQUEST_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{CALLBACK_PATH}"

    def expect(self, state: str) -> None:
        """Accept only the redirect that carries ``state`` (set before the browser opens)."""
        self._state = state

    async def wait(self, seconds: float) -> dict[str, str]:
        """The query parameters of the redirect with the expected state."""
        assert self._result is not None
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(self._result)
        except TimeoutError:
            raise SignInError(
                f"No sign-in arrived from the browser within {seconds:.0f} s; try again."
            ) from None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_CONNECTION_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            await self._answer(writer, head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            log.debug("sync sign-in: dropped an incomplete request on the loopback listener")
        except ConnectionError as error:
            log.debug("sync sign-in: loopback connection failed: %s", type(error).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter, head: bytes) -> None:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.rpartition(" ")[0] or rest
        parts = urlsplit(target)
        if method != "GET" or parts.path != CALLBACK_PATH:
            await self._respond(writer, 404, "Not found", "This is Hushchat's sign-in listener.")
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        assert self._result is not None
        given = params.get("state", "")
        if (
            self._result.done()
            or not self._state
            or not secrets.compare_digest(given.encode(), self._state.encode())
        ):
            log.warning("sync sign-in: ignored a callback without the expected state")
            await self._respond(
                writer,
                400,
                "Sign-in link out of date",
                "This page does not belong to the sign-in Hushchat is waiting for. "
                "Start the sign-in again from Hushchat.",
            )
            return
        if "error" in params:
            await self._respond(
                writer,
                200,
                "Sign-in failed",
                "The identity provider did not sign you in. Return to Hushchat for details.",
            )
        else:
            await self._respond(
                writer, 200, "Signed in", "You can close this tab and return to Hushchat."
            )
        self._result.set_result(params)

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=title, text=text).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Referrer-Policy: no-referrer\r\n"
            "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode("ascii") + body)
        await writer.drain()


async def _open(open_browser: OpenBrowser, url: str) -> bool:
    try:
        opened = await asyncio.to_thread(open_browser, url)
    except webbrowser.Error as error:
        log.info("sync sign-in: no browser could be opened: %s", error)
        return False
    return opened is not False


def _authorization_extras(oidc: OidcMeta, login_hint: str | None) -> dict[str, str]:
    extras = {"resource": oidc.audience}
    if "offline_access" in oidc.scopes:
        # OpenID Connect Core §11: a refresh token for offline access needs consent.
        extras["prompt"] = "consent"
    if login_hint:
        extras["login_hint"] = login_hint
    return extras


async def sign_in_with_browser(
    server_url: str,
    *,
    device_key: DeviceKey | None = None,
    device_name: str | None = None,
    open_browser: OpenBrowser = webbrowser.open,
    no_browser: bool = False,
    output: TextIO | None = None,
    wait_seconds: float = DEFAULT_BROWSER_TIMEOUT,
    login_hint: str | None = None,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SyncAccount:
    """Sign in through the identity provider in a browser (code + PKCE, loopback).

    Opens the authorization URL with ``open_browser`` (or, with ``no_browser`` or when
    no browser opens, writes it to ``output``, default stderr) and waits up to
    ``wait_seconds`` for the redirect to ``http://127.0.0.1:<port>/callback``.
    ``login_hint`` pre-fills the user at the provider. ``device_name`` defaults to
    :func:`default_device_name`.
    """
    url = check_server_url(server_url)
    key = device_key or DeviceKey.generate()
    name = device_name if device_name is not None else default_device_name()
    async with ServerConnection(url, proxy=proxy, transport=transport) as server:
        oidc = _require_oidc(await server.meta(), url)
    host = urlsplit(oidc.issuer).netloc
    _, oauth_error = authlib_client()
    async with oauth_client(
        proxy=proxy,
        transport=transport,
        timeout=DEFAULT_TIMEOUT,
        client_id=oidc.client_id,
        code_challenge_method="S256",
    ) as oauth:
        endpoints = await discover_issuer(oauth, oidc.issuer)
        verifier = secrets.token_urlsafe(48)
        async with _LoopbackRedirect() as loopback:
            authorization_url, state = oauth.create_authorization_url(
                endpoints.authorization_endpoint,
                code_verifier=verifier,
                redirect_uri=loopback.redirect_uri,
                scope=" ".join(oidc.scopes),
                **_authorization_extras(oidc, login_hint),
            )
            loopback.expect(state)
            minutes = max(1, round(wait_seconds / 60))
            if no_browser or not await _open(open_browser, authorization_url):
                _write(
                    output,
                    f"To sign in to {url}, open this address in a browser on this computer:\n\n"
                    f"  {authorization_url}\n\nWaiting for the sign-in (up to {minutes} min)…\n",
                )
            else:
                _write(
                    output,
                    f"Continue in the browser to sign in to {url} (waiting up to {minutes} min)…\n",
                )
            params = await loopback.wait(wait_seconds)
        if "error" in params:
            error = params["error"]
            description = params.get("error_description", "")
            raise SignInError(
                f"The identity provider {host} did not sign you in ({error}"
                f"{': ' + description[:200] if description else ''})."
            )
        if "iss" in params and params["iss"] != oidc.issuer:
            raise SignInError(
                "The sign-in answer came from another identity provider than the sync "
                "server's; nothing was signed in."
            )
        if not params.get("code"):
            raise SignInError(f"The identity provider {host} sent no authorization code.")
        try:
            token = await _token_request(
                host,
                oauth.fetch_token(
                    endpoints.token_endpoint,
                    grant_type="authorization_code",
                    code=params["code"],
                    code_verifier=verifier,
                    redirect_uri=loopback.redirect_uri,
                    resource=oidc.audience,
                ),
            )
        except oauth_error as error:
            raise SignInError(
                f"The identity provider {host} refused the sign-in ({_oauth_error_text(error)})."
            ) from None
    return await _finish(
        url,
        "oidc",
        key,
        name,
        _token_fields(token, host),
        oidc=oidc,
        token_endpoint=endpoints.token_endpoint,
        proxy=proxy,
        transport=transport,
    )


# -- device authorization grant (RFC 8628) ---------------------------------------------


class _DeviceAuthorization(BaseModel):
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    expires_in: int
    interval: int = 5


async def sign_in_with_device_code(
    server_url: str,
    *,
    device_key: DeviceKey | None = None,
    device_name: str | None = None,
    output: TextIO | None = None,
    login_hint: str | None = None,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
) -> SyncAccount:
    """Sign in with a code entered on another device (RFC 8628).

    Writes the verification address and the user code to ``output`` (default stderr),
    then polls the token endpoint at the issuer's interval (slower after ``slow_down``)
    until the user approves, refuses, or the code expires.
    """
    url = check_server_url(server_url)
    key = device_key or DeviceKey.generate()
    name = device_name if device_name is not None else default_device_name()
    async with ServerConnection(url, proxy=proxy, transport=transport) as server:
        oidc = _require_oidc(await server.meta(), url)
    host = urlsplit(oidc.issuer).netloc
    _, oauth_error = authlib_client()
    async with oauth_client(
        proxy=proxy, transport=transport, timeout=DEFAULT_TIMEOUT, client_id=oidc.client_id
    ) as oauth:
        endpoints = await discover_issuer(oauth, oidc.issuer)
        if endpoints.device_authorization_endpoint is None:
            raise SignInError(
                f"The identity provider {host} does not offer sign-in with a code "
                "(device authorization grant); sign in with the browser instead."
            )
        form = {
            "client_id": oidc.client_id,
            "scope": " ".join(oidc.scopes),
            "resource": oidc.audience,
        }
        if login_hint:
            form["login_hint"] = login_hint
        try:
            response = await oauth.request(
                "POST", endpoints.device_authorization_endpoint, data=form, withhold_token=True
            )
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise SyncOfflineError(
                f"Cannot reach the identity provider {host} ({type(error).__name__})."
            ) from error
        if response.status_code != 200:
            raise SignInError(
                f"The identity provider {host} refused to start a sign-in with a code "
                f"({_oauth_answer_error(response)})."
            )
        try:
            grant = _DeviceAuthorization.model_validate_json(response.content)
        except ValidationError:
            raise SyncProtocolError(
                f"The identity provider {host} answered the device authorization request "
                "with something this Hushchat does not understand."
            ) from None
        verification = check_server_url(grant.verification_uri, what="verification")
        text = (
            f"To sign in to {url}, open {verification} on any device and enter the code\n\n"
            f"  {grant.user_code}\n\n"
        )
        if grant.verification_uri_complete:
            text += f"(or open {grant.verification_uri_complete})\n"
        _write(output, text + f"Waiting (the code expires in {grant.expires_in // 60} min)…\n")
        interval = max(1, grant.interval)
        deadline = time.monotonic() + grant.expires_in
        while True:
            await sleep(interval)
            if time.monotonic() >= deadline:
                raise SignInError("The sign-in code expired before it was used; try again.")
            try:
                token = await _token_request(
                    host,
                    oauth.fetch_token(
                        endpoints.token_endpoint,
                        grant_type=DEVICE_CODE_GRANT,
                        device_code=grant.device_code,
                        resource=oidc.audience,
                    ),
                )
            except oauth_error as error:
                code = getattr(error, "error", None)
                if code == "authorization_pending":
                    continue
                if code == "slow_down":
                    interval += 5  # RFC 8628 §3.5
                    continue
                if code == "expired_token":
                    raise SignInError(
                        "The sign-in code expired before it was used; try again."
                    ) from None
                if code == "access_denied":
                    raise SignInError("The sign-in was refused at the identity provider.") from None
                raise SignInError(
                    f"The identity provider {host} refused the sign-in "
                    f"({_oauth_error_text(error)})."
                ) from None
            break
    return await _finish(
        url,
        "oidc",
        key,
        name,
        _token_fields(token, host),
        oidc=oidc,
        token_endpoint=endpoints.token_endpoint,
        proxy=proxy,
        transport=transport,
    )


def _oauth_answer_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        text = body["error"] + (f": {description}" if isinstance(description, str) else "")
        return " ".join(text.split())[:200]
    return f"HTTP {response.status_code}"


# -- local accounts ----------------------------------------------------------------------


class _Challenge(BaseModel):
    algorithm: str
    challenge: str
    maxnumber: int
    salt: str
    signature: str


class _Accepted(BaseModel):
    detail: str = ""


def solve_altcha(challenge: dict[str, Any]) -> str:
    """Solve an ALTCHA (v1) challenge; the base64 payload the server's form field takes.

    The documented algorithm: find ``n`` in ``0 … maxnumber`` with
    ``sha256(salt + str(n)).hexdigest() == challenge``. ValueError for another algorithm
    or when no number matches.
    """
    parsed = _Challenge.model_validate(challenge)
    if parsed.algorithm.upper() != "SHA-256":
        raise ValueError(f"unsupported ALTCHA algorithm {parsed.algorithm!r}")
    target = parsed.challenge.lower()
    salt = parsed.salt.encode()
    for number in range(max(parsed.maxnumber, 0) + 1):
        if hashlib.sha256(salt + str(number).encode()).hexdigest() == target:
            payload = {
                "algorithm": parsed.algorithm,
                "challenge": parsed.challenge,
                "number": number,
                "salt": parsed.salt,
                "signature": parsed.signature,
            }
            return base64.b64encode(json.dumps(payload).encode()).decode("ascii")
    raise ValueError("the ALTCHA challenge has no solution up to its maxnumber")


async def _local_call(
    server: ServerConnection,
    path: str,
    body: dict[str, str],
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    response = await server.send("POST", path, headers=headers, content=json.dumps(body).encode())
    if response.status_code == 404:
        raise SignInError(
            f"The sync server {server.server_url} has no e-mail/password accounts "
            f"({problem_message(response)})."
        )
    if response.status_code in (400, 401, 403, 409, 422):
        # Wrong password, unverified address, used code, weak password, revoked device:
        # the server's problem says which, in words meant for the user.
        raise SignInError(problem_message(response, body.values()))
    server.raise_for_status(response)
    return response


async def _altcha(server: ServerConnection) -> str:
    response = await server.send("GET", "/v1/captcha/challenge")
    if response.status_code == 404:
        raise SignInError(f"The sync server {server.server_url} has no e-mail/password accounts.")
    server.raise_for_status(response)
    try:
        challenge = response.json()
        return await asyncio.to_thread(solve_altcha, challenge)
    except (ValueError, ValidationError) as error:
        raise SyncProtocolError(
            f"The sync server {server.server_url} sent a CAPTCHA this Hushchat cannot solve "
            f"({type(error).__name__})."
        ) from None


async def sign_up_local(
    server_url: str,
    email: str,
    password: str,
    *,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """Create a local account: solve the CAPTCHA, send the sign-up; a code is mailed.

    Returns the server's message (the same whether or not the address was known).
    """
    async with ServerConnection(server_url, proxy=proxy, transport=transport) as server:
        altcha = await _altcha(server)
        response = await _local_call(
            server,
            "/v1/account/signup",
            {"email": email, "password": password, "altcha": altcha},
        )
        return server.parse(response, _Accepted).detail


async def verify_local_email(
    server_url: str,
    code: str,
    *,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """Redeem the mailed verification code; the account can sign in afterwards."""
    async with ServerConnection(server_url, proxy=proxy, transport=transport) as server:
        response = await _local_call(server, "/v1/account/verify-email", {"token": code.strip()})
        return server.parse(response, _Accepted).detail


async def request_password_reset(
    server_url: str,
    email: str,
    *,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """Ask for a reset code by mail (solves the CAPTCHA); same answer for any address."""
    async with ServerConnection(server_url, proxy=proxy, transport=transport) as server:
        altcha = await _altcha(server)
        response = await _local_call(
            server, "/v1/account/password-reset", {"email": email, "altcha": altcha}
        )
        return server.parse(response, _Accepted).detail


async def confirm_password_reset(
    server_url: str,
    code: str,
    new_password: str,
    *,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """Set a new password with the mailed code; every device must sign in again."""
    async with ServerConnection(server_url, proxy=proxy, transport=transport) as server:
        response = await _local_call(
            server,
            "/v1/account/password-reset/confirm",
            {"token": code.strip(), "password": new_password},
        )
        return server.parse(response, _Accepted).detail


async def sign_in_local(
    server_url: str,
    email: str,
    password: str,
    *,
    device_key: DeviceKey | None = None,
    device_name: str | None = None,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SyncAccount:
    """Sign in with a local account's e-mail and password (for this device's key).

    Wrong password, unknown or unverified address: :class:`SignInError` (the server does
    not say which). While the address backs off: :class:`SyncRetryLaterError`.
    """
    url = check_server_url(server_url)
    key = device_key or DeviceKey.generate()
    name = device_name if device_name is not None else default_device_name()
    path = "/v1/account/token"
    async with ServerConnection(url, proxy=proxy, transport=transport) as server:
        response = await _local_call(
            server,
            path,
            {"email": email, "password": password, "device_id": key.device_id},
            headers={DPOP_HEADER: key.proof("POST", server.url(path))},
        )
        tokens = server.parse(response, LocalTokens)
    expires_at = None if tokens.expires_in is None else time.time() + tokens.expires_in
    return await _finish(
        url,
        "local",
        key,
        name,
        (tokens.access_token, tokens.refresh_token, expires_at),
        oidc=None,
        token_endpoint=None,
        proxy=proxy,
        transport=transport,
    )
