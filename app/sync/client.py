"""The sync server's HTTP API as the desktop app calls it: one account, one device.

:class:`ServerConnection` makes the unauthenticated calls (``GET /v1/meta``, the
local-account endpoints sign-in needs); :class:`SyncClient` adds the account and is the
engine's transport (:meth:`SyncClient.push`, :meth:`SyncClient.changes`) besides
:meth:`~SyncClient.me`, :meth:`~SyncClient.devices` and :meth:`~SyncClient.revoke`.

Every authenticated request carries ``Authorization: Bearer <access token>``,
``X-Hushchat-Device: <device id>`` (the device key's thumbprint), the device name when
there is one, and a fresh DPoP proof (``app/sync/dpop.py``) for exactly that method, URL
and token — retries included. Access tokens are refreshed shortly before they expire and
once after a 401; rotated tokens are handed to ``on_tokens_changed`` for the caller to save
(in the vault).

Where requests go: exactly to the server URL the user configured (``https://``; plain
``http://`` only to a loopback address). No environment or system proxy is used — chats
must not reach a proxy the user did not choose for them — only a ``proxy`` passed in;
private CAs named in ``SSL_CERT_FILE``/``SSL_CERT_DIR`` are still honoured. Redirects
are not followed.

What the caller sees (``app/sync/errors.py``)::

    SyncOfflineError      connect/read/write errors, resets, timeouts; 502/504 from a proxy
    SyncRetryLaterError   429 and 503, ``retry_after`` from Retry-After (seconds or date)
    SyncAuthError         401 after one refresh (or without a refresh token), 403
    SyncProtocolError     an answer this client does not understand, 500
    └── SyncRefusedError  another 4xx: ``status`` and the problem ``slug``; also a 401
                          refusing the DPoP proof itself (clock, URL): no refresh helps

Messages come from the server's problem details (RFC 9457); tokens never appear in a
message or a log record.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import ipaddress
import json
import logging
import math
import time
import unicodedata
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ValidationError

from app import __version__
from app.sync.account import SyncAccount
from app.sync.dpop import DPOP_HEADER
from app.sync.errors import (
    SyncAuthError,
    SyncError,
    SyncOfflineError,
    SyncProtocolError,
    SyncRetryLaterError,
)
from app.sync.protocol import (
    DEVICE_HEADER,
    DEVICE_NAME_HEADER,
    ChangesResponse,
    DeviceList,
    DeviceOut,
    EscrowPut,
    EscrowStatus,
    Me,
    Meta,
    PushRequest,
    PushResponse,
    RecordIn,
    RecoveryAction,
    RecoveryOut,
    RecoveryResult,
    RecoveryStart,
)

if TYPE_CHECKING:
    # authlib ships no type hints (no py.typed); its client is Any to mypy.
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_WAIT",
    "REFRESH_MARGIN",
    "InsecureServerError",
    "LocalTokens",
    "RecoveryWaitError",
    "ServerConnection",
    "SyncClient",
    "SyncRefusedError",
    "TokensChanged",
    "authlib_client",
    "check_server_url",
    "device_name_header",
    "http_options",
    "is_loopback_host",
    "oauth_client",
    "parse_retry_after",
    "problem_message",
    "problem_slug",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_RETRY_AFTER: Final = 5.0
MAX_RETRY_AFTER: Final = 3600.0
REFRESH_MARGIN: Final = 60.0
#: Longest long-poll ``wait`` the server accepts (seconds).
MAX_WAIT: Final = 30
USER_AGENT: Final = f"Hushchat/{__version__}"
_MAX_MESSAGE: Final = 300

TokensChanged = Callable[[SyncAccount], Awaitable[None] | None]
_M = TypeVar("_M", bound=BaseModel)


class InsecureServerError(SyncError):
    """The server URL is not ``https://`` (or ``http://`` to a loopback address)."""


class SyncRefusedError(SyncProtocolError):
    """The server refused a request with a 4xx problem other than 401/403/429.

    ``status`` is the HTTP status, ``slug`` the last part of the problem ``type``
    (``not-found``, ``payload-too-large``, ``invalid-code``, …) or None.
    """

    def __init__(self, message: str, status: int, slug: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.slug = slug


class RecoveryWaitError(SyncRefusedError):
    """``POST /v1/recovery/complete`` came too early: ``slug`` is ``recovery-delay`` (the
    delay runs) or ``recovery-waiting`` (the server's escrow step has not answered yet);
    ``retry_after`` seconds from the server's Retry-After."""

    def __init__(self, message: str, slug: str, retry_after: float) -> None:
        super().__init__(message, 409, slug)
        self.retry_after = retry_after


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1, mapped IPv4)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_server_url(url: str, *, what: str = "sync server") -> str:
    """``url`` normalised (no trailing slash), or :class:`InsecureServerError` saying why.

    ``https://`` is required; ``http://`` is accepted only for a loopback address, where
    nothing leaves the machine. No user name, query or fragment.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise InsecureServerError(f"The {what} address {text!r} is not a valid URL.") from error
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise InsecureServerError(
            f"The {what} address {text!r} is not a web address: use https://host[:port][/path]."
        )
    if parts.username is not None or parts.query or parts.fragment:
        raise InsecureServerError(
            f"The {what} address must not contain a user name, a query or a fragment: {text!r}."
        )
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise InsecureServerError(
            f"The {what} address {text!r} must use https:// (plain http:// is only allowed "
            "for this computer: 127.0.0.1, ::1 or localhost)."
        )
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` value (delay seconds or an HTTP date).

    Missing or unreadable: :data:`DEFAULT_RETRY_AFTER`; clamped to 0 … 1 hour.
    """
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        current = time.time() if now is None else now
        seconds = moment.timestamp() - current
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def device_name_header(name: str | None) -> str | None:
    """The device name as the header allows it: printable ASCII, at most 100 characters."""
    if not name:
        return None
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = "".join(ch for ch in folded if " " <= ch <= "~").strip()[:100]
    return cleaned or None


def _redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        # Short values (a too-short password the server refused) would blank out words.
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text


def problem_message(response: httpx.Response, secrets: Iterable[str | None] = ()) -> str:
    """A one-line message from a problem+json answer (title: detail), else the status."""
    message = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title, detail = body.get("title"), body.get("detail")
        parts = [part for part in (title, detail) if isinstance(part, str) and part.strip()]
        if parts:
            message = ": ".join(parts)
    message = " ".join(_redact(message, secrets).split())
    return message[:_MAX_MESSAGE]


def problem_slug(response: httpx.Response) -> str | None:
    """The last path part of a problem's ``type`` (``device-revoked``), if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        slug = body["type"].rstrip("/").rsplit("/", 1)[-1]
        return slug or None
    return None


def http_options(
    *, proxy: str | None, transport: httpx.AsyncBaseTransport | None, timeout: float
) -> dict[str, Any]:
    """``httpx.AsyncClient`` arguments for talking to the sync server or its issuer.

    No environment or system proxy (``trust_env=False``), the explicit ``proxy`` only;
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` still apply. ``transport`` replaces the network
    (tests), the proxy included.
    """
    verify: Any = True
    if transport is None:
        verify = httpx.create_ssl_context(trust_env=True)
    return {
        "transport": transport,
        "proxy": proxy if transport is None else None,
        "trust_env": False,
        "verify": verify,
        "timeout": httpx.Timeout(timeout),
        "follow_redirects": False,
        "headers": {"User-Agent": USER_AGENT},
    }


def authlib_client() -> tuple[Any, Any]:
    """authlib's ``AsyncOAuth2Client`` and ``OAuthError``, imported on first use."""
    with warnings.catch_warnings():
        # authlib prefers the "httpx2" fork and warns when it falls back to httpx, which is
        # what this app ships; the fallback is authlib's documented httpx integration.
        # Its warning module adds an "always" filter when first imported: import it
        # first so the "ignore" below comes before that filter.
        import authlib.deprecate  # type: ignore[import-untyped]

        warnings.filterwarnings(
            "ignore", category=authlib.deprecate.AuthlibDeprecationWarning, message=".*httpx2"
        )
        from authlib.integrations.base_client import (  # type: ignore[import-untyped]
            OAuthError,
        )
        from authlib.integrations.httpx_client import AsyncOAuth2Client

    return AsyncOAuth2Client, OAuthError


def oauth_client(
    *, proxy: str | None, transport: httpx.AsyncBaseTransport | None, timeout: float, **kw: Any
) -> AsyncOAuth2Client:
    """authlib's OAuth 2 client on the same network route as the sync server."""
    client_class, _ = authlib_client()
    return client_class(**kw, **http_options(proxy=proxy, transport=transport, timeout=timeout))


class ServerConnection:
    """Unauthenticated calls to one sync server; the base of :class:`SyncClient`."""

    def __init__(
        self,
        server_url: str,
        *,
        proxy: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server_url = check_server_url(server_url)
        self._host = urlsplit(self.server_url).netloc
        self._proxy = proxy
        self._transport = transport
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            **http_options(proxy=proxy, transport=transport, timeout=timeout)
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        """The absolute URL of an API path (``/v1/…``)."""
        return self.server_url + path

    async def meta(self) -> Meta:
        """``GET /v1/meta``: sign-in parameters, escrow key, limits (no account needed)."""
        response = await self.send("GET", "/v1/meta")
        self.raise_for_status(response)
        return self.parse(response, Meta)

    def _secrets(self) -> tuple[str | None, ...]:
        return ()

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        request_timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One request; network failures become :class:`SyncOfflineError`."""
        started = time.monotonic()
        request_headers = dict(headers or {})
        if content is not None:
            request_headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method,
                self.url(path),
                headers=request_headers,
                params=params,
                content=content,
                timeout=request_timeout
                if request_timeout is not None
                else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as error:
            raise SyncOfflineError(
                f"The sync server {self._host} did not answer in time; syncing will retry."
            ) from error
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as error:
            raise SyncOfflineError(
                f"Cannot reach the sync server {self._host} ({type(error).__name__}); "
                "syncing will retry when it can."
            ) from error
        except httpx.HTTPError as error:
            raise SyncProtocolError(
                f"Cannot talk to the sync server {self._host}: {type(error).__name__}."
            ) from error
        log.debug(
            "sync %s %s -> %d in %.0f ms",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def raise_for_status(self, response: httpx.Response) -> None:
        """Map an unsuccessful answer to the error the caller acts on (see the module)."""
        status = response.status_code
        if status < 300:
            return
        message = problem_message(response, self._secrets())
        where = f"The sync server {self._host}"
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise SyncRetryLaterError(
                f"{where} asks to wait {retry_after:.0f} s ({message}).", retry_after
            )
        if status == 401:
            raise SyncAuthError(f"{where} did not accept the sign-in ({message}). Sign in again.")
        if status == 403:
            if problem_slug(response) == "device-revoked":
                raise SyncAuthError(
                    f"{where} says this device was revoked ({message}). Sign in again to "
                    "sync from it."
                )
            raise SyncAuthError(f"{where} refused this device ({message}).")
        if status in (502, 504):
            raise SyncOfflineError(f"{where} cannot be reached behind its proxy ({message}).")
        if 300 <= status < 400:
            raise SyncProtocolError(
                f"{where} answered with a redirect ({status}); check the server address."
            )
        if 400 <= status < 500:
            raise SyncRefusedError(
                f"{where} refused the request ({message}).", status, problem_slug(response)
            )
        raise SyncProtocolError(f"{where} failed ({message}).")

    def parse(self, response: httpx.Response, model: type[_M]) -> _M:
        """The JSON body as ``model``; :class:`SyncProtocolError` when it is not one."""
        try:
            return model.model_validate_json(response.content)
        except ValidationError as error:
            # The pydantic message quotes the input: name the fields only.
            fields = sorted({".".join(map(str, e["loc"])) or "body" for e in error.errors()})
            raise SyncProtocolError(
                f"The sync server {self._host} answered {response.request.method} "
                f"{response.request.url.path} with something this Hushchat does not understand "
                f"(fields: {', '.join(fields)[:200]}); is it a newer server?"
            ) from None


class SyncClient(ServerConnection):
    """Authenticated calls for one :class:`SyncAccount` (the engine's transport).

    ``on_tokens_changed(account)`` (sync or async) is called after every refresh, with
    the account already holding the new tokens; save it (in the vault). A failure to
    save is logged and the new tokens are kept in memory. ``refresh_margin``: refresh an
    access token that expires within this many seconds before using it.
    """

    def __init__(
        self,
        account: SyncAccount,
        *,
        on_tokens_changed: TokensChanged | None = None,
        proxy: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        super().__init__(account.server_url, proxy=proxy, transport=transport, timeout=timeout)
        self.account = account
        self._on_tokens_changed = on_tokens_changed
        self._refresh_margin = refresh_margin
        self._token_lifetime: float | None = None
        self._refresh_lock = asyncio.Lock()
        self._oauth: AsyncOAuth2Client | None = None

    async def aclose(self) -> None:
        if self._oauth is not None:
            await self._oauth.aclose()
        await super().aclose()

    def _secrets(self) -> tuple[str | None, ...]:
        return (self.account.access_token, self.account.refresh_token)

    # -- the API ------------------------------------------------------------------------

    async def me(self) -> Me:
        """``GET /v1/me``: the account, its newest cursor, this device's id."""
        return self.parse(await self.request("GET", "/v1/me"), Me)

    async def devices(self) -> list[DeviceOut]:
        """``GET /v1/devices``: every device of the account, revoked ones included."""
        return self.parse(await self.request("GET", "/v1/devices"), DeviceList).devices

    async def revoke(self, device_id: str) -> None:
        """``DELETE /v1/devices/{id}``: that device's tokens stop working.

        An unknown id raises :class:`SyncRefusedError` with status 404.
        """
        await self.request("DELETE", f"/v1/devices/{device_id}", expect=204)

    # -- escrow and recovery (``app/sync/escrow.py``, ``app/sync/recovery.py``) ------------

    async def escrow_status(self) -> EscrowStatus:
        """``GET /v1/escrow``: whether the server holds an escrowed Standard key."""
        return self.parse(await self.request("GET", "/v1/escrow"), EscrowStatus)

    async def put_escrow(self, key_id: str, server_key_id: str, sealed_key: bytes) -> None:
        """``PUT /v1/escrow``: store the sealed Standard sync key (replacing the last one).

        :class:`SyncRefusedError` with slug ``escrow-key-changed`` when the server's
        escrow key is no longer ``server_key_id`` (fetch ``/v1/meta`` and seal again).
        """
        body = EscrowPut(
            tier="standard", key_id=key_id, server_key_id=server_key_id, sealed_key=sealed_key
        )
        await self.request("PUT", "/v1/escrow", content=body.model_dump_json().encode())

    async def delete_escrow(self) -> None:
        """``DELETE /v1/escrow``: forget the escrowed key (pending recoveries end too)."""
        await self.request("DELETE", "/v1/escrow", expect=204)

    async def start_recovery(self, device_public_key: bytes) -> RecoveryOut:
        """``POST /v1/recovery/start`` with this device's ephemeral X25519 public key."""
        body = RecoveryStart(device_public_key=device_public_key).model_dump_json().encode()
        response = await self.request("POST", "/v1/recovery/start", content=body, expect=202)
        return self.parse(response, RecoveryOut)

    async def approve_recovery(self, recovery_id: str) -> RecoveryOut:
        """``POST /v1/recovery/approve`` (from another device): it may complete at once."""
        return await self._recovery_action("approve", recovery_id)

    async def cancel_recovery(self, recovery_id: str) -> RecoveryOut:
        """``POST /v1/recovery/cancel`` (any device of the account)."""
        return await self._recovery_action("cancel", recovery_id)

    async def _recovery_action(self, action: str, recovery_id: str) -> RecoveryOut:
        body = RecoveryAction(recovery_id=recovery_id).model_dump_json().encode()
        response = await self.request("POST", f"/v1/recovery/{action}", content=body, check=False)
        self._raise_wrong_device(response)
        self.raise_for_status(response)
        return self.parse(response, RecoveryOut)

    def _raise_wrong_device(self, response: httpx.Response) -> None:
        """A recovery call from the wrong device is refused (403 ``wrong-device``): a
        usage error, not a sign-out like other 403 answers."""
        if response.status_code == 403 and problem_slug(response) == "wrong-device":
            raise SyncRefusedError(
                f"The sync server {self._host} refused: "
                f"{problem_message(response, self._secrets())}",
                403,
                "wrong-device",
            )

    async def complete_recovery(self, recovery_id: str) -> RecoveryResult:
        """``POST /v1/recovery/complete`` from the device that started it.

        :class:`RecoveryWaitError` while it cannot complete yet (delay running, or the
        server's escrow step not done); :class:`SyncRefusedError` (``not-pending``,
        ``recovery-expired``, …) when it never will.
        """
        body = RecoveryAction(recovery_id=recovery_id).model_dump_json().encode()
        path = "/v1/recovery/complete"
        response = await self.request("POST", path, content=body, check=False)
        slug = problem_slug(response)
        if response.status_code == 409 and slug in ("recovery-delay", "recovery-waiting"):
            raise RecoveryWaitError(
                problem_message(response, self._secrets()),
                slug,
                parse_retry_after(response.headers.get("Retry-After")),
            )
        self._raise_wrong_device(response)
        self.raise_for_status(response)
        return self.parse(response, RecoveryResult)

    async def push(self, records: list[RecordIn], *, atomic: bool = False) -> PushResponse:
        """``POST /v1/sync/push``: each record is saved, conflicts or is rejected."""
        if not records:
            raise ValueError("push needs at least one record")
        body = PushRequest(records=records, atomic=atomic).model_dump_json().encode()
        response = await self.request("POST", "/v1/sync/push", content=body)
        return self.parse(response, PushResponse)

    async def changes(
        self, cursor: int, *, limit: int | None = None, wait: float = 0.0
    ) -> ChangesResponse:
        """``GET /v1/sync/changes``: records after ``cursor``, oldest first.

        ``wait > 0`` asks the server to hold the request up to that many seconds (rounded
        up, at most :data:`MAX_WAIT`) until a change arrives (long-poll); the read timeout
        is extended by as much.
        """
        params: dict[str, str | int] = {"cursor": cursor}
        if limit is not None:
            params["limit"] = limit
        timeout = None
        if wait > 0:
            seconds = min(math.ceil(wait), MAX_WAIT)  # the server takes whole seconds
            params["wait"] = seconds
            timeout = httpx.Timeout(self._timeout, read=seconds + self._timeout)
        response = await self.request(
            "GET", "/v1/sync/changes", params=params, request_timeout=timeout
        )
        return self.parse(response, ChangesResponse)

    async def refresh(self) -> None:
        """Refresh the access token now (``SyncAuthError`` when there is no refresh token)."""
        if not await self._refresh(self.account.access_token):
            raise SyncAuthError("This sign-in cannot be renewed; sign in again.")

    # -- requests -----------------------------------------------------------------------

    def _auth_headers(self, method: str, path: str) -> dict[str, str]:
        account = self.account
        headers = {
            "Authorization": f"Bearer {account.access_token}",
            DEVICE_HEADER: account.device_id,
            DPOP_HEADER: account.device_key.proof(method, self.url(path), account.access_token),
        }
        name = device_name_header(account.device_name)
        if name is not None:
            headers[DEVICE_NAME_HEADER] = name
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        request_timeout: httpx.Timeout | None = None,
        expect: int = 200,
        check: bool = True,
    ) -> httpx.Response:
        """An authenticated request: refresh first if due; after a 401, refresh once and
        send it again (with a new proof); errors mapped as the module says (``check``
        False: any answer after that is returned as it is)."""
        account = self.account
        if account.refresh_token and account.expires_within(self._margin()):
            await self._refresh(account.access_token)
        used = account.access_token
        response = await self.send(
            method,
            path,
            headers=self._auth_headers(method, path),
            params=params,
            content=content,
            request_timeout=request_timeout,
        )
        if response.status_code == 401 and problem_slug(response) == "invalid-dpop-proof":
            # A new token would not help: the proof itself was refused (most often a
            # wrong clock on this computer, or a proxy that rewrites the URL).
            raise SyncRefusedError(
                f"The sync server {self._host} refused this device's proof of its key "
                f"({problem_message(response, self._secrets())}).",
                401,
                "invalid-dpop-proof",
            )
        if response.status_code == 401 and await self._refresh(used):
            response = await self.send(
                method,
                path,
                headers=self._auth_headers(method, path),
                params=params,
                content=content,
                request_timeout=request_timeout,
            )
        if not check:
            return response
        self.raise_for_status(response)
        if response.status_code != expect:
            raise SyncProtocolError(
                f"The sync server {self._host} answered {method} {path} with "
                f"{response.status_code}, expected {expect}."
            )
        return response

    # -- tokens -------------------------------------------------------------------------

    def _margin(self) -> float:
        """How early to refresh: ``refresh_margin``, but at most half the lifetime of the
        token this client last received, so short-lived tokens are not refreshed before
        every request."""
        if self._token_lifetime is None:
            return self._refresh_margin
        return min(self._refresh_margin, self._token_lifetime / 2)

    async def _refresh(self, stale_access_token: str) -> bool:
        """Replace ``stale_access_token`` unless another task already did; False when
        there is no refresh token."""
        async with self._refresh_lock:
            if self.account.access_token != stale_access_token:
                return True
            if not self.account.refresh_token:
                return False
            if self.account.sign_in == "local":
                await self._refresh_local()
            else:
                await self._refresh_oidc()
            if self.account.expires_at is not None:
                self._token_lifetime = max(self.account.expires_at - time.time(), 0.0)
            log.info("sync: access token refreshed for device %s", self.account.device_id)
        await self._notify_tokens_changed()
        return True

    async def _refresh_local(self) -> None:
        account = self.account
        path = "/v1/account/refresh"
        response = await self.send(
            "POST",
            path,
            headers={DPOP_HEADER: account.device_key.proof("POST", self.url(path))},
            content=LocalTokens.refresh_body(account.refresh_token or ""),
        )
        if response.status_code in (400, 401, 403):
            raise SyncAuthError(
                f"The sync server {self._host} no longer accepts this sign-in "
                f"({problem_message(response, self._secrets())}). Sign in again."
            )
        self.raise_for_status(response)
        tokens = self.parse(response, LocalTokens)
        account.update_tokens(tokens.access_token, tokens.refresh_token, tokens.expires_in)

    async def _refresh_oidc(self) -> None:
        _, OAuthError = authlib_client()
        account = self.account
        if not account.token_endpoint or not account.client_id:
            raise SyncAuthError(
                "This sign-in cannot be renewed (no token endpoint); sign in again."
            )
        endpoint = check_server_url(account.token_endpoint, what="identity provider")
        if self._oauth is None:
            self._oauth = oauth_client(
                proxy=self._proxy,
                transport=self._transport,
                timeout=self._timeout,
                client_id=account.client_id,
            )
        extra = {"resource": account.audience} if account.audience else {}
        issuer = urlsplit(endpoint).netloc
        try:
            token = await self._oauth.refresh_token(
                endpoint, refresh_token=account.refresh_token, **extra
            )
        except OAuthError as error:
            raise SyncAuthError(
                f"The identity provider {issuer} no longer accepts this sign-in "
                f"({error.error}). Sign in again."
            ) from None
        except httpx.HTTPStatusError as error:
            status = error.response.status_code
            if status in (429, 503):
                retry_after = parse_retry_after(error.response.headers.get("Retry-After"))
                raise SyncRetryLaterError(
                    f"The identity provider {issuer} asks to wait {retry_after:.0f} s.",
                    retry_after,
                ) from None
            raise SyncOfflineError(
                f"The identity provider {issuer} failed (HTTP {status}); syncing will retry."
            ) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise SyncOfflineError(
                f"Cannot reach the identity provider {issuer} ({type(error).__name__})."
            ) from error
        except ValueError:
            raise SyncProtocolError(
                f"The identity provider {issuer} answered the refresh with something that "
                "is not a token."
            ) from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise SyncProtocolError(f"The identity provider {issuer} sent no access token.")
        refresh = token.get("refresh_token")
        expires_at = token.get("expires_at")
        account.access_token = access
        if isinstance(refresh, str) and refresh:
            account.refresh_token = refresh
        account.expires_at = float(expires_at) if isinstance(expires_at, int | float) else None

    async def _notify_tokens_changed(self) -> None:
        if self._on_tokens_changed is None:
            return
        try:
            result = self._on_tokens_changed(self.account)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # Keep syncing with the new tokens in memory; the next refresh saves again.
            log.exception("sync: saving the refreshed sign-in failed")


class LocalTokens(BaseModel):
    """The local-account token answer (``POST /v1/account/token`` and ``…/refresh``)."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type's name
    expires_in: int | None = None
    refresh_token: str | None = None

    @staticmethod
    def refresh_body(refresh_token: str) -> bytes:
        """The JSON body of ``POST /v1/account/refresh``."""
        return json.dumps({"refresh_token": refresh_token}).encode()
