"""Self-hosted proof-of-work CAPTCHA (ALTCHA, classic v1 widget protocol).

Challenges are HMAC-signed with a key derived from ``SECRET_KEY`` and expire after
``ALTCHA_TTL_SECONDS``; a solved challenge is recorded until it expires, so each can be
redeemed once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import timedelta

from altcha.v1 import ChallengeOptions, create_challenge, verify_solution
from sqlalchemy import select

from sync_server.accounts import now
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.models import UsedChallenge
from sync_server.protocol import Captcha


class CaptchaService:
    """Issues and verifies ALTCHA challenges."""

    def __init__(self, secret_key: str, max_number: int, ttl_seconds: int) -> None:
        self._hmac_key = hmac.new(
            secret_key.encode(), b"hushchat-sync altcha v1", hashlib.sha256
        ).hexdigest()
        self._max_number = max_number
        self._ttl = timedelta(seconds=ttl_seconds)

    def challenge(self) -> Captcha:
        """A fresh signed challenge."""
        created = create_challenge(
            ChallengeOptions(
                hmac_key=self._hmac_key, max_number=self._max_number, expires=now() + self._ttl
            )
        )
        return Captcha(
            algorithm=created.algorithm,
            challenge=created.challenge,
            maxnumber=created.max_number,
            salt=created.salt,
            signature=created.signature,
        )

    async def redeem(self, db: Database, payload: str) -> None:
        """Verify a solution once; raises a 400 problem when invalid, expired or reused."""
        invalid = ProblemError(
            400, "CAPTCHA failed", "Solve a new CAPTCHA challenge.", slug="captcha-failed"
        )
        try:
            decoded = json.loads(base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise invalid from exc
        if not isinstance(decoded, dict) or not isinstance(decoded.get("challenge"), str):
            raise invalid
        try:
            ok, _error = verify_solution(payload, self._hmac_key, check_expires=True)
        # altcha trusts the payload's field types: a non-string salt raises AttributeError.
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise invalid from exc
        if not ok:
            raise invalid
        challenge = decoded["challenge"][:128]
        async with db.write() as session:
            seen = (
                await session.execute(
                    select(UsedChallenge.challenge).where(UsedChallenge.challenge == challenge)
                )
            ).scalar_one_or_none()
            if seen is not None:
                raise invalid
            session.add(UsedChallenge(challenge=challenge, expires_at=now() + self._ttl))
