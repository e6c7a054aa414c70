"""FastAPI dependencies as ``Annotated`` aliases: ``StateDep``, ``CurrentPrincipal``, …"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem

from sync_server.accounts import Principal, resolve_local, resolve_oidc, unauthorized
from sync_server.auth.local import LOCAL_TOKEN_PREFIX
from sync_server.auth.oidc import IssuerUnavailableError, TokenError, token_hash
from sync_server.errors import ProblemError
from sync_server.protocol import DEVICE_HEADER, DEVICE_ID_PATTERN, DEVICE_NAME_HEADER
from sync_server.state import ServerState

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
    await _count(state, response, state.limiter.anonymous, "addr:" + client_address(request))


async def sign_in_limits(request: Request, response: Response, state: StateDep) -> None:
    """Stricter per-address limit for sign-up, sign-in, reset and recovery."""
    await _count(state, response, state.limiter.sign_in, "signin:" + client_address(request))


async def current_principal(
    response: Response,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    device_header: Annotated[
        str,
        Header(
            alias=DEVICE_HEADER,
            pattern=DEVICE_ID_PATTERN,
            description="Stable random id of the calling device.",
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
    """Authenticate the bearer token, register the device, apply per-user limits."""
    if credentials is None:
        raise unauthorized("A bearer token is required.")
    token = credentials.credentials
    device_id, device_name = device_header, device_name_header
    if len(token) > 8192:
        raise unauthorized("Token too long.")
    settings = state.settings
    if token.startswith(LOCAL_TOKEN_PREFIX):
        if not settings.local_accounts_enabled:
            raise unauthorized("Local accounts are disabled.")
        principal = await resolve_local(state.db, token_hash(token), device_id, device_name)
    else:
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
                headers={"Retry-After": "30"},
            ) from exc
        if settings.oidc_require_verified_email and not verified.email_verified:
            raise ProblemError(
                403,
                "E-mail not verified",
                "Verify your e-mail address with your identity provider first.",
                slug="email-not-verified",
            )
        principal = await resolve_oidc(state.db, verified, device_id, device_name)
    await _count(state, response, state.limiter.user, "user:" + principal.account_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AnonymousLimits = Depends(anonymous_limits)
SignInLimits = Depends(sign_in_limits)
