"""FastAPI dependencies as ``Annotated`` aliases: ``StateDep``, ``CurrentPrincipal``, …

Authentication itself is :func:`authenticate`. :class:`sync_server.routing.ApiRoute`
calls it before FastAPI reads the request body, and :func:`current_principal` (the
dependency the endpoints declare, which also documents the bearer scheme and the device
headers in OpenAPI) picks up its result. The order of the checks:

1. the address has not used up its failed authentications (else 429, before any work);
2. ``Authorization: Bearer …`` is present (else 401 with ``WWW-Authenticate: Bearer``,
   whatever else the request lacks);
3. ``X-Hushchat-Device`` (and ``X-Hushchat-Device-Name``) are well formed (else 422);
4. the ``DPoP`` proof (RFC 9449, :mod:`sync_server.auth.dpop`) is present, signed by the
   key whose thumbprint is the device id, made for this method, URL and token, fresh and
   not replayed (else 401 with ``WWW-Authenticate: DPoP error="invalid_dpop_proof"``) —
   no database work before this;
5. the token is valid and bound to this device and its key (else 401/403; 503 when the
   issuer's keys cannot be had). Every 401 counts as a failed authentication of the
   address.

``GET /v1/sync/changes`` and ``POST /v1/sync/push`` declare :data:`SyncCaller` instead of
:data:`CurrentPrincipal`: when the credential was resolved before (:class:`AccountCache`)
and the body is no larger than an unauthenticated one may be, step 5's database lookup
runs inside the endpoint's own transaction (:func:`settle`), so the request is one
transaction instead of two. :mod:`sync_server.fastlane` answers ordinary sync requests
before FastAPI: it runs the same checks (:func:`authenticate_view` on a
:class:`RequestView` read from the ASGI scope) and, when they fail, leaves the error for
:func:`authenticate` to raise on the FastAPI path (:class:`Refused`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem

from sync_server.accounts import (
    Credential,
    Principal,
    invalid_proof,
    resolve_local,
    resolve_oidc,
    unauthorized,
)
from sync_server.auth.dpop import DPOP_HEADER, DpopError
from sync_server.auth.local import LOCAL_TOKEN_PREFIX
from sync_server.auth.oidc import IssuerUnavailableError, TokenError, token_hash
from sync_server.errors import ProblemError
from sync_server.protocol import DEVICE_HEADER, DEVICE_ID_PATTERN, DEVICE_NAME_HEADER
from sync_server.recoveries import RecoveryNotices
from sync_server.state import ServerState

MAX_TOKEN_LENGTH = 8192
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_DEVICE_NAME = re.compile(r"^[ -~]{0,100}$")
_PRINCIPAL_KEY = "hushchat_principal"
T = TypeVar("T")
#: Who is calling: resolved (:class:`Principal`) or checked up to the database lookup.
Caller = Principal | Credential

bearer = HTTPBearer(
    auto_error=False,
    description="OIDC access token from the configured issuer, or a local access token.",
)


async def get_state(request: Request) -> ServerState:
    """The app's :class:`ServerState` (async: a plain function would run in a thread)."""
    state: ServerState = request.app.state.server
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def client_address(request: Request) -> str:
    """The peer address (uvicorn applies trusted X-Forwarded-For)."""
    return request.client.host if request.client else "unknown"


@dataclasses.dataclass(frozen=True, slots=True)
class RequestView:
    """What authentication reads of a request.

    Made from a Starlette ``Request`` (:meth:`of`) or, by :mod:`sync_server.fastlane`,
    straight from the ASGI scope; both give the same values.
    """

    #: The ASGI scope (the outcome of authentication is remembered in it).
    scope: MutableMapping[str, Any]
    #: Header values by lower-case name (the first of repeated headers).
    headers: Mapping[str, str]
    method: str
    #: The request URL as the server sees it (``str(request.url)``) and its path.
    url: str
    path: str
    #: The peer address (:func:`client_address`).
    client: str

    @classmethod
    def of(cls, request: Request) -> RequestView:
        """The view of a Starlette request."""
        url = request.url
        return cls(
            request.scope,
            request.headers,
            request.method,
            str(url),
            url.path,
            client_address(request),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """Authentication already failed with ``error`` (remembered in the scope).

    :mod:`sync_server.fastlane` authenticates before it hands an unusual request to
    FastAPI; FastAPI then raises the same error at the same point (the proof was used
    and the failure counted once).
    """

    error: Exception


async def _count(state: ServerState, response: Response, limit: RateLimitItem, key: str) -> None:
    """Count the request against ``limit`` for ``key`` and the global limit; set the headers."""
    limiter = state.limiter
    response.headers.update(await limiter.hit([(limit, key), (limiter.global_, "global")]))


async def anonymous_limits(request: Request, response: Response, state: StateDep) -> None:
    """Per-address and global limits for unauthenticated endpoints."""
    address = state.limiter.address(client_address(request))
    await _count(state, response, state.limiter.anonymous, "addr:" + address)


async def sign_in_limits(request: Request, response: Response, state: StateDep) -> None:
    """Stricter per-address limit for sign-up, sign-in, reset and recovery."""
    address = state.limiter.address(client_address(request))
    await _count(state, response, state.limiter.sign_in, "signin:" + address)


def _missing_credentials() -> ProblemError:
    """401 for a request without a bearer token (RFC 6750 §3.1: no error code)."""
    return ProblemError(
        401,
        "Unauthorized",
        "A bearer token is required.",
        slug="unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _bearer_token(headers: Mapping[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _missing_credentials()
    return token


def _header_error(name: str, message: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("header", name), "msg": message, "type": kind}])


_DEVICE_KEY = DEVICE_HEADER.lower()
_DEVICE_NAME_KEY = DEVICE_NAME_HEADER.lower()
_DPOP_KEY = DPOP_HEADER.lower()


def _device_headers(headers: Mapping[str, str]) -> tuple[str, str | None]:
    device = headers.get(_DEVICE_KEY)
    if device is None:
        raise _header_error(DEVICE_HEADER, "Field required", "missing")
    if not _DEVICE_ID.match(device):
        raise _header_error(
            DEVICE_HEADER,
            f"String should match pattern '{DEVICE_ID_PATTERN}'",
            "string_pattern_mismatch",
        )
    name = headers.get(_DEVICE_NAME_KEY)
    if name is not None and not _DEVICE_NAME.match(name):
        raise _header_error(
            DEVICE_NAME_HEADER,
            "String should be at most 100 printable ASCII characters",
            "string_pattern_mismatch",
        )
    return device, name


async def _check_proof(view: RequestView, state: ServerState, token: str, device_id: str) -> str:
    """The device key's thumbprint, once the request's DPoP proof checks out."""
    try:
        return await state.dpop.verify(
            view.headers.get(_DPOP_KEY),
            method=view.method,
            expected_uri=state.dpop.expected_uri(view.url, view.path),
            access_token=token,
            device_id=device_id,
        )
    except DpopError as exc:
        raise invalid_proof(str(exc)) from exc


async def _credential(
    state: ServerState, token: str, device_id: str, jkt: str, name: str | None
) -> Credential:
    """Step 5 up to the database: the token's form, and an OIDC token's signature and claims."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise unauthorized("Token too long.")
    settings = state.settings
    if token.startswith(LOCAL_TOKEN_PREFIX):
        if not settings.local_accounts_enabled:
            raise unauthorized("Local accounts are disabled.")
        return Credential("local", token_hash(token), device_id, jkt, name)
    if state.verifier is None:
        raise unauthorized("No OIDC issuer is configured.")
    try:
        verified = await state.verifier.verify(token)
    except TokenError as exc:
        raise unauthorized(str(exc)) from exc
    except IssuerUnavailableError as exc:
        raise ProblemError(
            503,
            "Identity provider unavailable",
            "Cannot fetch the issuer's signing keys; try again later.",
            slug="issuer-unavailable",
            headers={"Retry-After": str(exc.retry_after or 30)},
        ) from exc
    if settings.oidc_require_verified_email and not verified.email_verified:
        raise ProblemError(
            403,
            "E-mail not verified",
            "Verify your e-mail address with your identity provider first.",
            slug="email-not-verified",
        )
    return Credential("oidc", verified.token_hash, device_id, jkt, name, verified)


async def _resolve(state: ServerState, credential: Credential) -> Principal:
    """Step 5's database part: find (or register) the account, token binding and device."""
    if credential.token is None:
        principal = await resolve_local(
            state.db,
            credential.token_hash,
            credential.device_id,
            credential.jkt,
            credential.device_name,
        )
    else:
        notices = RecoveryNotices(state.mailer, state.settings)
        principal = await resolve_oidc(
            state.db,
            credential.token,
            credential.device_id,
            credential.jkt,
            credential.device_name,
            notices,
        )
    state.accounts.put(credential.cache_key, principal.account_id)
    return principal


@contextlib.asynccontextmanager
async def _failures_counted(
    client: str, state: ServerState, forget: str | None = None
) -> AsyncIterator[None]:
    """Count a 401 raised inside as a failed authentication of the address ``client``.

    ``forget``: the :class:`~sync_server.accounts.AccountCache` key to drop on a 401.
    """
    try:
        yield
    except ProblemError as exc:
        if exc.status == 401:
            if forget is not None:
                state.accounts.drop(forget)
            limiter = state.limiter
            await limiter.count_failure(limiter.address(client))
        raise


async def authenticate(request: Request, state: ServerState, *, defer: bool = False) -> Caller:
    """Who is calling, checked in the order of the module docstring; raises problems.

    With ``defer``, a credential whose account is known (:class:`AccountCache`) is
    returned as a :class:`Credential` without the database lookup; the endpoint does it
    in its own transaction (:func:`settle`). The result is remembered on the request, so
    the dependency does not check twice.
    """
    remembered = request.scope.get(_PRINCIPAL_KEY)
    if isinstance(remembered, Principal | Credential):
        return remembered
    if isinstance(remembered, Refused):
        raise remembered.error
    return await authenticate_view(RequestView.of(request), state, defer=defer)


async def authenticate_view(
    view: RequestView, state: ServerState, *, defer: bool = False
) -> Caller:
    """:func:`authenticate` on a :class:`RequestView` (the caller is remembered in its scope)."""
    limiter = state.limiter
    await limiter.refuse_if_failing(limiter.address(view.client))
    caller: Caller
    async with _failures_counted(view.client, state):
        token = _bearer_token(view.headers)
        device_id, name = _device_headers(view.headers)
        jkt = await _check_proof(view, state, token, device_id)
        credential = await _credential(state, token, device_id, jkt, name)
        account_id = state.accounts.get(credential.cache_key) if defer else None
        if account_id is not None:
            caller = dataclasses.replace(credential, account_id=account_id)
        else:
            caller = await _resolve(state, credential)
    view.scope[_PRINCIPAL_KEY] = caller
    return caller


def refuse(scope: MutableMapping[str, Any], error: Exception) -> None:
    """Make :func:`authenticate` raise ``error`` for this request (see :class:`Refused`)."""
    scope[_PRINCIPAL_KEY] = Refused(error)


async def settle(
    scope: MutableMapping[str, Any],
    client: str,
    state: ServerState,
    caller: Caller,
    attempt: Callable[[Caller], Awaitable[T | None]],
) -> T:
    """``attempt(caller)``: the endpoint's transaction, which checks a :class:`Credential`.

    ``attempt`` returns ``None`` when the credential needs a write to resolve (see
    :func:`sync_server.accounts.check_credential`); then it is resolved as on a first
    request and ``attempt`` runs once more with the :class:`Principal`. A 401 from the
    check counts as a failed authentication of the address ``client``, as in
    :func:`authenticate`; ``scope`` is the request's, where the caller is remembered.
    """
    if isinstance(caller, Credential):
        async with _failures_counted(client, state, forget=caller.cache_key):
            result = await attempt(caller)
            if result is not None:
                return result
            caller = await _resolve(state, caller)
        scope[_PRINCIPAL_KEY] = caller
    result = await attempt(caller)
    if result is None:
        raise RuntimeError("an endpoint's transaction refused a resolved principal")
    return result


#: The credential and header parameters of :func:`current_principal` and
#: :func:`sync_caller`: they document the API (bearer scheme and device headers);
#: :func:`authenticate` has already checked them when FastAPI validates them.
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
DeviceHeader = Annotated[
    str,
    Header(
        alias=DEVICE_HEADER,
        pattern=DEVICE_ID_PATTERN,
        description="The calling device's id: the RFC 7638 thumbprint of its DPoP key.",
    ),
]
DpopHeader = Annotated[
    str,
    Header(
        alias=DPOP_HEADER,
        description="DPoP proof (RFC 9449): a compact JWS, header typ dpop+jwt, alg "
        "ES256 and the device's public jwk; claims jti, htm, htu, iat and ath (base64url "
        "SHA-256 of the access token). A fresh proof per request.",
    ),
]
DeviceNameHeader = Annotated[
    str | None,
    Header(
        alias=DEVICE_NAME_HEADER,
        max_length=100,
        pattern=r"^[ -~]*$",
        description="Human-readable device name (ASCII), shown in the device list.",
    ),
]


async def current_principal(
    request: Request,
    response: Response,
    state: StateDep,
    credentials: BearerCredentials,
    device_header: DeviceHeader,
    dpop_header: DpopHeader,
    device_name_header: DeviceNameHeader = None,
) -> Principal:
    """The authenticated caller (see :func:`authenticate`); applies the per-user limit.

    The credential and header parameters document the API; :func:`authenticate` has
    already checked them (before the body was read) when FastAPI validates them here.
    """
    del credentials, device_header, device_name_header, dpop_header
    principal = await authenticate(request, state)
    if not isinstance(principal, Principal):
        raise RuntimeError("current_principal on a route that defers authentication")
    await _count(state, response, state.limiter.user, "user:" + principal.account_id)
    return principal


async def sync_caller(
    request: Request,
    response: Response,
    state: StateDep,
    credentials: BearerCredentials,
    device_header: DeviceHeader,
    dpop_header: DpopHeader,
    device_name_header: DeviceNameHeader = None,
) -> Caller:
    """:func:`current_principal` for the sync endpoints: the caller may be a :class:`Credential`.

    The per-user limit is counted against the account the credential named
    (:class:`~sync_server.accounts.AccountCache`); the endpoint checks it in its
    transaction with :func:`settle`.
    """
    del credentials, device_header, device_name_header, dpop_header
    caller = await authenticate(request, state, defer=True)
    await count_caller(state, response, caller)
    return caller


async def count_caller(state: ServerState, response: Response, caller: Caller) -> None:
    """Count a sync request against the per-user and global limits; set the headers."""
    response.headers.update(await caller_limits(state, caller))


async def caller_limits(state: ServerState, caller: Caller) -> dict[str, str]:
    """:func:`count_caller`: the ``RateLimit-*`` headers, or 429 when a limit is used up."""
    account_id = caller.account_id
    if account_id is None:
        raise RuntimeError("a deferred credential without its account")
    limiter = state.limiter
    return await limiter.hit([(limiter.user, "user:" + account_id), (limiter.global_, "global")])


def _depends_on(dependant: Any, function: Callable[..., Any]) -> bool:
    stack = [dependant]
    while stack:
        item = stack.pop()
        if getattr(item, "call", None) is function:
            return True
        stack.extend(getattr(item, "dependencies", ()))
    return False


def needs_principal(dependant: Any) -> bool:
    """True when an endpoint's dependency tree includes :func:`current_principal` (or
    :func:`sync_caller`)."""
    return _depends_on(dependant, current_principal) or defers_lookup(dependant)


def defers_lookup(dependant: Any) -> bool:
    """True when an endpoint checks its caller in its own transaction (:func:`sync_caller`)."""
    return _depends_on(dependant, sync_caller)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
SyncCaller = Annotated[Caller, Depends(sync_caller)]
AnonymousLimits = Depends(anonymous_limits)
SignInLimits = Depends(sign_in_limits)
