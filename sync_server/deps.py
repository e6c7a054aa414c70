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
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem

from sync_server.accounts import (
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


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _missing_credentials()
    return token


def _header_error(name: str, message: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("header", name), "msg": message, "type": kind}])


def _device_headers(request: Request) -> tuple[str, str | None]:
    device = request.headers.get(DEVICE_HEADER)
    if device is None:
        raise _header_error(DEVICE_HEADER, "Field required", "missing")
    if not _DEVICE_ID.match(device):
        raise _header_error(
            DEVICE_HEADER,
            f"String should match pattern '{DEVICE_ID_PATTERN}'",
            "string_pattern_mismatch",
        )
    name = request.headers.get(DEVICE_NAME_HEADER)
    if name is not None and not _DEVICE_NAME.match(name):
        raise _header_error(
            DEVICE_NAME_HEADER,
            "String should be at most 100 printable ASCII characters",
            "string_pattern_mismatch",
        )
    return device, name


async def _check_proof(request: Request, state: ServerState, token: str, device_id: str) -> str:
    """The device key's thumbprint, once the request's DPoP proof checks out."""
    try:
        return await state.dpop.verify(
            request.headers.get(DPOP_HEADER),
            method=request.method,
            expected_uri=state.dpop.expected_uri(str(request.url), request.url.path),
            access_token=token,
            device_id=device_id,
        )
    except DpopError as exc:
        raise invalid_proof(str(exc)) from exc


async def _resolve(
    state: ServerState, token: str, device_id: str, jkt: str, name: str | None
) -> Principal:
    if len(token) > MAX_TOKEN_LENGTH:
        raise unauthorized("Token too long.")
    settings = state.settings
    if token.startswith(LOCAL_TOKEN_PREFIX):
        if not settings.local_accounts_enabled:
            raise unauthorized("Local accounts are disabled.")
        return await resolve_local(state.db, token_hash(token), device_id, jkt, name)
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
    notices = RecoveryNotices(state.mailer, settings)
    return await resolve_oidc(state.db, verified, device_id, jkt, name, notices)


async def authenticate(request: Request, state: ServerState) -> Principal:
    """Who is calling, checked in the order of the module docstring; raises problems.

    The result is remembered on the request, so the dependency does not check twice.
    """
    remembered = request.scope.get(_PRINCIPAL_KEY)
    if isinstance(remembered, Principal):
        return remembered
    limiter = state.limiter
    address = limiter.address(client_address(request))
    await limiter.refuse_if_failing(address)
    try:
        token = _bearer_token(request)
        device_id, name = _device_headers(request)
        jkt = await _check_proof(request, state, token, device_id)
        principal = await _resolve(state, token, device_id, jkt, name)
    except ProblemError as exc:
        if exc.status == 401:
            await limiter.count_failure(address)
        raise
    request.scope[_PRINCIPAL_KEY] = principal
    return principal


async def current_principal(
    request: Request,
    response: Response,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    device_header: Annotated[
        str,
        Header(
            alias=DEVICE_HEADER,
            pattern=DEVICE_ID_PATTERN,
            description="The calling device's id: the RFC 7638 thumbprint of its DPoP key.",
        ),
    ],
    dpop_header: Annotated[
        str,
        Header(
            alias=DPOP_HEADER,
            description="DPoP proof (RFC 9449): a compact JWS, header typ dpop+jwt, alg "
            "ES256 and the device's public jwk; claims jti, htm, htu, iat and ath (base64url "
            "SHA-256 of the access token). A fresh proof per request.",
        ),
    ],
    device_name_header: Annotated[
        str | None,
        Header(
            alias=DEVICE_NAME_HEADER,
            max_length=100,
            pattern=r"^[ -~]*$",
            description="Human-readable device name (ASCII), shown in the device list.",
        ),
    ] = None,
) -> Principal:
    """The authenticated caller (see :func:`authenticate`); applies the per-user limit.

    The credential and header parameters document the API; :func:`authenticate` has
    already checked them (before the body was read) when FastAPI validates them here.
    """
    del credentials, device_header, device_name_header, dpop_header
    principal = await authenticate(request, state)
    await _count(state, response, state.limiter.user, "user:" + principal.account_id)
    return principal


def needs_principal(dependant: Any) -> bool:
    """True when an endpoint's dependency tree includes :func:`current_principal`."""
    stack = [dependant]
    while stack:
        item = stack.pop()
        if getattr(item, "call", None) is current_principal:
            return True
        stack.extend(getattr(item, "dependencies", ()))
    return False


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AnonymousLimits = Depends(anonymous_limits)
SignInLimits = Depends(sign_in_limits)
