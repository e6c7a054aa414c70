"""The periodic clean-up removes expired tokens, codes, challenges and stale sign-ups."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from sync_server.accounts import now
from sync_server.cleanup import cleanup_once
from sync_server.db import Database
from sync_server.models import (
    Account,
    EmailToken,
    LocalToken,
    LocalUser,
    TokenBinding,
    UsedChallenge,
)
from tests.integration.sync_server.support import make_settings


async def test_cleanup_removes_only_expired_rows(tmp_path: Path, database_url: str | None) -> None:
    db = Database(make_settings(tmp_path, database_url))
    await db.migrate()
    moment = now()
    past, future = moment - timedelta(hours=1), moment + timedelta(hours=1)
    try:
        async with db.write() as session:
            session.add(
                Account(
                    id="a" * 32,
                    issuer="local",
                    subject="s",
                    email=None,
                    email_verified=False,
                    last_seq=0,
                    created_at=moment,
                )
            )
            session.add_all(
                [
                    LocalUser(
                        id="u1",
                        email="old@example.org",
                        password_hash="x",
                        created_at=moment - timedelta(days=3),
                    ),
                    LocalUser(
                        id="u2", email="new@example.org", password_hash="x", created_at=moment
                    ),
                ]
            )
            await session.flush()
            for n, expires in enumerate((past, future)):
                session.add(
                    TokenBinding(
                        token_hash=f"b{n}", account_id="a" * 32, device_id="d", expires_at=expires
                    )
                )
                session.add(
                    LocalToken(
                        token_hash=f"t{n}",
                        account_id="a" * 32,
                        device_id="d",
                        kind="access",
                        family_id="f",
                        auth_time=moment,
                        expires_at=expires,
                    )
                )
                session.add(
                    EmailToken(
                        token_hash=f"e{n}", local_user_id="u2", purpose="verify", expires_at=expires
                    )
                )
                session.add(UsedChallenge(challenge=f"c{n}", expires_at=expires))
        removed = await cleanup_once(db, unverified_ttl_seconds=86400)
        assert removed["token_bindings"] == removed["local_tokens"] == 1
        assert removed["email_tokens"] == removed["used_challenges"] == 1
        assert removed["unverified_users"] == 1
        async with db.read() as session:
            for model in (TokenBinding, LocalToken, EmailToken, UsedChallenge, LocalUser):
                count = (await session.execute(select(func.count()).select_from(model))).scalar()
                assert count == 1, model.__name__
    finally:
        await db.close()
