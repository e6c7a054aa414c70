"""The application factory: :func:`create_app` assembles settings, routers and handlers.

``create_app`` refuses to build an app from incomplete settings (:class:`ConfigError`
naming the variables) or a malformed escrow public key. The app holds the escrow *public*
key only; ``hushchat-sync escrow process`` opens escrows. The lifespan opens the
database, applies migrations (``AUTO_MIGRATE``, the default) or refuses an out-of-date
schema, and runs the periodic clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from sync_server import __version__
from sync_server.auth.captcha import CaptchaService
from sync_server.auth.dpop import DpopVerifier, MemoryReplayCache, ReplayCache, StorageReplayCache
from sync_server.auth.local import LocalAccounts
from sync_server.auth.oidc import JwksCache, OidcVerifier
from sync_server.cleanup import run_periodically
from sync_server.db import Database
from sync_server.errors import PROBLEM_MEDIA_TYPE, Problem, ProblemError, problem_response
from sync_server.escrow_worker import load_escrow_keys, run_in_server, serve_escrow_key
from sync_server.fastlane import FastLane
from sync_server.mailer import Mailer
from sync_server.notifier import ChangeNotifier
from sync_server.observability import RequestContextMiddleware, request_id_var
from sync_server.ratelimit import RateLimiter, SignInBackoff
from sync_server.recoveries import RecoveryNotices
from sync_server.routers import (
    account,
    devices,
    docs,
    escrow,
    health,
    recovery,
    recovery_page,
    sync,
)
from sync_server.routing import BodySizeLimitMiddleware, RequestTooLargeError
from sync_server.sealing import EscrowKeyPair
from sync_server.settings import Settings
from sync_server.state import ServerState

log = logging.getLogger(__name__)

DESCRIPTION = """\
Hushchat's self-hosted sync server. It stores client-encrypted records it cannot read,
escrows the Standard-tier key for recovery, and authenticates users with OIDC (or local
accounts). Authenticated calls send `Authorization: Bearer <token>`, the device id in
`X-Hushchat-Device` (the RFC 7638 thumbprint of the device's EC P-256 key) and a fresh
DPoP proof (RFC 9449) signed with that key in `DPoP`. Every error is an RFC 9457 problem
document.
"""


def _problem(
    request: Request | None, status: int, title: str, detail: str | None, **kw: Any
) -> Response:
    return problem_response(
        status,
        title,
        detail,
        request_id=request_id_var.get(),
        instance=request.url.path if request is not None else None,
        **kw,
    )


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return _problem(
        request,
        exc.status,
        exc.title,
        exc.detail,
        slug=exc.slug,
        extra=exc.extra,
        headers=exc.headers,
    )


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, RequestTooLargeError):
        return _problem(
            request,
            413,
            "Request too large",
            exc.detail,
            slug="request-too-large",
            headers={"Connection": "close"},
        )
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return _problem(request, exc.status_code, title, detail, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Never echo input values back: they may be passwords or tokens.
    errors = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in exc.errors()
    ]
    return _problem(
        request,
        422,
        "Invalid request",
        "The request does not match the API schema.",
        slug="invalid-request",
        extra={"errors": errors},
    )


_PROBLEM_CODES = ("400", "401", "403", "404", "409", "413", "422", "429", "500", "503")


def _custom_openapi(app: FastAPI, routes: list[BaseRoute]) -> dict[str, Any]:
    """OpenAPI with every error documented as ``application/problem+json``.

    ``routes`` in documentation order (see :func:`_sync_first`).
    """
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem_content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            codes = ("500", "503") if path in ("/healthz", "/readyz") else _PROBLEM_CODES
            for code in codes:
                responses[code] = {
                    "description": HTTPStatus(int(code)).phrase + " (problem details)",
                    "content": problem_content,
                }
    app.openapi_schema = schema
    return schema


def _replay_cache(settings: Settings, limiter: RateLimiter) -> ReplayCache:
    """DPoP jtis in the rate-limit storage when it is shared (Redis), else in memory."""
    ttl = settings.dpop_max_age_seconds + settings.dpop_clock_skew_seconds + 1
    if settings.rate_limit_storage_url.startswith(("memory", "async+memory")):
        return MemoryReplayCache(settings.dpop_replay_cache_size, ttl)
    return StorageReplayCache(limiter.storage, ttl)


def create_app(
    settings: Settings,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    handle_signals: bool = False,
    fast_lane: bool = True,
    freeze_gc: bool = False,
) -> FastAPI:
    """Build the FastAPI app; raises ``ConfigError`` when settings are incomplete.

    ``http_transport`` replaces the network for calls to the OIDC issuer (tests).
    ``handle_signals`` (``serve``) makes SIGINT/SIGTERM end waiting long-polls at once,
    so a graceful shutdown does not wait for them. ``fast_lane=False`` sends every
    request through FastAPI (:mod:`sync_server.fastlane` answers the ordinary sync
    requests otherwise; the tests compare both). ``freeze_gc`` (``serve``): once started,
    the objects alive then (modules, the app, SQLAlchemy's and pydantic's caches) move to
    the collector's permanent generation (``gc.freeze``), so a full collection no longer
    walks them: unfrozen, each one stopped every request for ~170 ms under load, the whole
    p99 tail of ``tests/benchmarks/bench_sync.py`` at 100 devices.
    """
    settings.ensure_startable()
    escrow_keys = serve_escrow_key(settings)
    legacy_keys: EscrowKeyPair | None = None
    if settings.escrow_private_key is not None and settings.escrow_kek is not None:
        # An older set-up: keep its recoveries working with escrow passes in a background
        # task (never on the request path), and say that the key belongs elsewhere.
        legacy_keys = load_escrow_keys(settings)
        log.warning(
            "escrow_private_key_configured_for_server",
            extra={
                "detail": "serve runs the escrow passes itself because it was given "
                "ESCROW_PRIVATE_KEY and ESCROW_KEK; give it only ESCROW_PUBLIC_KEY and run "
                "`hushchat-sync escrow process` where those two are kept"
            },
        )
    limiter = RateLimiter(settings)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings)
        http = httpx.AsyncClient(transport=http_transport, follow_redirects=False)
        cleanup: asyncio.Task[None] | None = None
        checkpoints: asyncio.Task[None] | None = None
        escrow_task: asyncio.Task[None] | None = None
        state: ServerState | None = None
        mailer = Mailer(settings)
        notifier = ChangeNotifier(
            max_per_device=settings.long_poll_max_waiters_per_device,
            max_per_account=settings.long_poll_max_waiters_per_account,
        )
        restore_signals = notifier.install_signal_hooks() if handle_signals else None
        try:
            if settings.auto_migrate:
                await db.migrate()
            else:
                await db.ensure_migrated()
            state = ServerState(
                settings=settings,
                db=db,
                escrow=escrow_keys,
                http=http,
                limiter=limiter,
                mailer=mailer,
                captcha=CaptchaService(
                    secret, settings.altcha_max_number, settings.altcha_ttl_seconds
                ),
                dpop=DpopVerifier(
                    _replay_cache(settings, limiter),
                    max_age=settings.dpop_max_age_seconds,
                    clock_skew=settings.dpop_clock_skew_seconds,
                    public_url=settings.public_url,
                ),
                notifier=notifier,
            )
            if settings.oidc_issuer and settings.oidc_audience:
                state.verifier = OidcVerifier(
                    JwksCache(
                        http,
                        settings.oidc_issuer,
                        settings.oidc_jwks_url,
                        ttl=settings.oidc_jwks_cache_seconds,
                        min_refresh=settings.oidc_jwks_min_refresh_seconds,
                        grace=settings.oidc_jwks_grace_seconds,
                        retry_max=settings.oidc_jwks_retry_max_seconds,
                    ),
                    issuer=settings.oidc_issuer,
                    audience=settings.oidc_audience,
                    algorithms=settings.oidc_algorithms,
                    leeway=settings.oidc_leeway_seconds,
                    required_type=settings.oidc_require_token_type,
                    max_lifetime=settings.oidc_max_token_lifetime_seconds,
                )
            if settings.local_accounts_enabled:
                backoff = SignInBackoff(
                    limiter.storage,
                    secret,
                    free_attempts=settings.sign_in_backoff_free_attempts,
                    max_seconds=settings.sign_in_backoff_max_seconds,
                    enabled=settings.rate_limits_enabled,
                )
                state.local = LocalAccounts(settings, db, mailer, backoff)
            app.state.server = state
            cleanup = asyncio.create_task(
                run_periodically(
                    db, settings.cleanup_interval_seconds, settings.email_token_ttl_seconds
                )
            )
            checkpoints = asyncio.create_task(db.checkpoint_periodically())
            if legacy_keys is not None:
                escrow_task = asyncio.create_task(
                    run_in_server(
                        db,
                        legacy_keys,
                        RecoveryNotices(mailer, settings),
                        settings.escrow_process_interval_seconds,
                    )
                )
            if freeze_gc:
                gc.collect()
                gc.freeze()
            log.info("server_started", extra={"version": __version__, "sqlite": db.is_sqlite})
            yield
        finally:
            notifier.close()
            if restore_signals is not None:
                restore_signals()
            for task in (cleanup, checkpoints, escrow_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if state is not None and state.verifier is not None:
                await state.verifier.aclose()
            if state is not None and state.local is not None:
                state.local.close()
            await mailer.drain()
            await http.aclose()
            await db.close()

    app = SyncServerApp(
        title="Hushchat sync server",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs and /redoc come from sync_server.routers.docs, with assets in the package.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url="/openapi.json",
    )
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for module in (health, account, devices, sync, escrow, recovery, recovery_page, docs):
        app.include_router(module.router)
    docs.mount_assets(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware)
    documented = list(app.routes)
    _sync_first(app)
    app.openapi = lambda: _custom_openapi(app, documented)  # type: ignore[method-assign]
    if fast_lane:
        app.fast_lane = FastLane(super(SyncServerApp, app).__call__, app.server_state)
    return app


class SyncServerApp(FastAPI):
    """The FastAPI app, with :mod:`sync_server.fastlane` in front for the sync requests."""

    #: ``None``: every request goes through FastAPI (``create_app(fast_lane=False)``).
    fast_lane: FastLane | None = None

    def server_state(self) -> ServerState | None:
        """The running server's state; ``None`` before the lifespan started."""
        state: ServerState | None = getattr(self.state, "server", None)
        return state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: the fast lane's requests to it, the rest to FastAPI."""
        lane = self.fast_lane
        if lane is not None and scope["type"] == "http" and lane.takes(scope):
            await lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _sync_first(app: FastAPI) -> None:
    """Match the sync endpoints first: they are nearly every request.

    The router tries its routes in order; the sync paths overlap no other route, so only
    the cost of finding them changes. The API documentation keeps the order in which the
    routers were included.
    """
    routes = app.router.routes
    for index, route in enumerate(routes):
        if getattr(route, "original_router", None) is sync.router:
            routes.insert(0, routes.pop(index))
            break
    # A FastAPI that flattens included routers has no such entry; the order stays.


def create_app_from_environment() -> FastAPI:
    """App factory for the processes of ``serve --workers N``: settings from the environment.

    Reads ``HUSHCHAT_SYNC_*`` (and ``HUSHCHAT_SYNC_ENV_FILE``) like the command does.
    """
    from sync_server.observability import configure_logging
    from sync_server.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, handle_signals=True, freeze_gc=True)
