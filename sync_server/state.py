"""Everything a running app holds: settings, database, keys, verifiers, limiter, mailer,
and the change notifier of long-polling pulls."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from sync_server.accounts import AccountCache
from sync_server.auth.captcha import CaptchaService
from sync_server.auth.dpop import DpopVerifier
from sync_server.auth.local import LocalAccounts
from sync_server.auth.oidc import OidcVerifier
from sync_server.db import Database
from sync_server.mailer import Mailer
from sync_server.notifier import ChangeNotifier
from sync_server.ratelimit import RateLimiter
from sync_server.sealing import EscrowPublicKey
from sync_server.settings import Settings


@dataclass
class ServerState:
    """Per-app state, stored on ``app.state.server`` and reached through ``StateDep``."""

    settings: Settings
    db: Database
    escrow: EscrowPublicKey  # the public key only: the server never opens an escrow
    http: httpx.AsyncClient
    limiter: RateLimiter
    mailer: Mailer
    captcha: CaptchaService
    dpop: DpopVerifier
    notifier: ChangeNotifier
    verifier: OidcVerifier | None = None
    local: LocalAccounts | None = None
    ready: bool = field(default=False)
    #: Which account a credential named when last resolved (a hint; see AccountCache).
    accounts: AccountCache = field(default_factory=AccountCache)
