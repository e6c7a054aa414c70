"""ALTCHA challenges: what a malformed or forged solution gets (a 400, never a 500)."""

from __future__ import annotations

import base64
import json
from typing import Any, Literal, cast

import pytest
from altcha.v1 import Challenge, solve_challenge

from sync_server.auth.captcha import CaptchaService
from sync_server.db import Database
from sync_server.errors import ProblemError


class NoDatabase:
    """Stands in for the database: a refused solution must never reach it."""

    def write(self) -> Any:
        raise AssertionError("the database was used for a refused solution")


def service(secret: str = "s" * 32) -> CaptchaService:
    return CaptchaService(secret, max_number=1000, ttl_seconds=300)


def encode(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def solved(captcha: CaptchaService) -> dict[str, Any]:
    challenge = captcha.challenge()
    solution = solve_challenge(
        Challenge(
            algorithm=cast(Literal["SHA-1", "SHA-256", "SHA-512"], challenge.algorithm),
            challenge=challenge.challenge,
            max_number=challenge.maxnumber,
            salt=challenge.salt,
            signature=challenge.signature,
        )
    )
    assert solution is not None
    return {
        "algorithm": challenge.algorithm,
        "challenge": challenge.challenge,
        "number": solution.number,
        "salt": challenge.salt,
        "signature": challenge.signature,
    }


async def refused(captcha: CaptchaService, payload: str) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        await captcha.redeem(cast(Database, NoDatabase()), payload)
    assert caught.value.status == 400
    assert caught.value.slug == "captcha-failed"
    return caught.value


@pytest.mark.parametrize(
    "payload",
    [
        "%%% not base64 %%%",
        base64.b64encode(b"not json").decode(),
        encode(["a", "list"]),
        encode({"challenge": 42}),
        encode({"challenge": "abc"}),  # the other fields are missing
    ],
    ids=["base64", "json", "list", "challenge-type", "fields-missing"],
)
async def test_malformed_payloads_are_refused(payload: str) -> None:
    await refused(service(), payload)


async def test_wrongly_typed_fields_are_refused_not_crashed() -> None:
    captcha = service()
    payload = solved(captcha)
    await refused(captcha, encode({**payload, "salt": ["not", "a", "string"]}))


async def test_a_wrong_number_is_refused() -> None:
    captcha = service()
    payload = solved(captcha)
    await refused(captcha, encode({**payload, "number": payload["number"] + 1}))


async def test_a_challenge_signed_by_another_server_is_refused() -> None:
    payload = solved(service("a" * 32))
    await refused(service("b" * 32), encode(payload))
