"""The caller's account (``/v1/me``) and local e-mail/password accounts."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import select

from sync_server.accounts import audit, unauthorized
from sync_server.auth.local import LocalAccounts
from sync_server.deps import AnonymousLimits, CurrentPrincipal, SignInLimits, StateDep
from sync_server.errors import ProblemError
from sync_server.models import Account
from sync_server.protocol import (
    Accepted,
    Captcha,
    Me,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    SignUp,
    TokenRequest,
    TokenResponse,
    VerifyEmail,
)
from sync_server.routing import ApiRoute
from sync_server.state import ServerState

router = APIRouter(tags=["account"], route_class=ApiRoute)


@router.get("/v1/me", summary="The signed-in account")
async def get_me(principal: CurrentPrincipal, state: StateDep) -> Me:
    """Account id, identity, e-mail (and whether it is verified) and the newest cursor."""
    async with state.db.read() as session:
        cursor = (
            await session.execute(
                select(Account.last_seq).where(Account.id == principal.account_id)
            )
        ).scalar_one_or_none()
    if cursor is None:
        raise unauthorized("Account no longer exists.")
    return Me(
        id=principal.account_id,
        issuer=principal.issuer,
        subject=principal.subject,
        email=principal.email,
        email_verified=principal.email_verified,
        cursor=cursor,
        device_id=principal.device_id,
        created_at=principal.created_at,
    )


@router.delete(
    "/v1/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete the account and all its data",
)
async def delete_me(principal: CurrentPrincipal, state: StateDep) -> Response:
    """Deletes records, devices, escrow and recoveries; the audit trail is kept."""
    async with state.db.write() as session:
        account = await session.get(Account, principal.account_id)
        if account is not None:
            await session.delete(account)
            await audit(session, principal.account_id, "account.deleted", principal.device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _local(state: ServerState) -> LocalAccounts:
    if state.local is None:
        raise ProblemError(
            404,
            "Local accounts disabled",
            "This server only accepts sign-in through its identity provider.",
            slug="local-accounts-disabled",
        )
    return state.local


@router.get(
    "/v1/captcha/challenge",
    summary="ALTCHA proof-of-work challenge",
    dependencies=[AnonymousLimits],
)
async def captcha_challenge(state: StateDep) -> Captcha:
    """A signed challenge to solve before sign-up or password reset."""
    _local(state)
    return state.captcha.challenge()


@router.post(
    "/v1/account/signup",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Create a local account",
    dependencies=[SignInLimits],
)
async def signup(body: SignUp, state: StateDep) -> Accepted:
    """Mails a verification code; answers the same whether or not the address is known."""
    local = _local(state)
    await state.captcha.redeem(state.db, body.altcha)
    return await local.signup(body.email, body.password)


@router.post(
    "/v1/account/verify-email", summary="Redeem a verification code", dependencies=[SignInLimits]
)
async def verify_email(body: VerifyEmail, state: StateDep) -> Accepted:
    """Confirms the address; the account can sign in afterwards."""
    return await _local(state).verify_email(body.token)


@router.post(
    "/v1/account/token", summary="Sign in with e-mail and password", dependencies=[SignInLimits]
)
async def token(body: TokenRequest, state: StateDep) -> TokenResponse:
    """Access and refresh tokens for one device."""
    return await _local(state).sign_in(body.email, body.password, body.device_id)


@router.post("/v1/account/refresh", summary="Rotate a refresh token", dependencies=[SignInLimits])
async def refresh(body: RefreshRequest, state: StateDep) -> TokenResponse:
    """New access and refresh tokens; the old refresh token stops working."""
    return await _local(state).refresh(body.refresh_token)


@router.post(
    "/v1/account/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask for a password-reset code",
    dependencies=[SignInLimits],
)
async def password_reset(body: PasswordResetRequest, state: StateDep) -> Accepted:
    """Mails a reset code if the address has an account; same answer either way."""
    local = _local(state)
    await state.captcha.redeem(state.db, body.altcha)
    return await local.request_reset(body.email)


@router.post(
    "/v1/account/password-reset/confirm",
    summary="Set a new password with a reset code",
    dependencies=[SignInLimits],
)
async def password_reset_confirm(body: PasswordResetConfirm, state: StateDep) -> Accepted:
    """Changes the password and signs out all local sessions."""
    return await _local(state).confirm_reset(body.token, body.password)
