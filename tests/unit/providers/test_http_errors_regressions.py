"""Error answers the fuzzer (tests/fuzz/test_streams.py) found to crash the providers.

An HTTP-date ``Retry-After`` with a huge zone offset or time field made
``email.utils.parsedate_to_datetime`` raise OverflowError, which escaped
``parse_retry_after`` and the provider as itself instead of a ``ProviderError``.
"""

from __future__ import annotations

import httpx
import pytest

from providers import RateLimitedError
from providers.http_errors import parse_retry_after
from providers.openai import OpenAIProvider
from tests.unit.providers.fakes import chat, collect, make_spec

HOSTILE_DATES = [
    "Mon, 01 Jan 2024 00:00:00 +99999999999999999999",  # timedelta: int too large for C
    "Mon, 01 Jan 2024 00:00:00 -2399999997561",  # timedelta: days out of range
    "Mon, 01 Jan 2024 0:2150000000 GMT",  # datetime: minute overflows a C int
]


@pytest.mark.parametrize("value", HOSTILE_DATES)
def test_a_date_that_overflows_is_no_retry_after(value: str) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("value", HOSTILE_DATES)
async def test_a_429_with_such_a_date_is_a_rate_limited_error(value: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": value}, json={"error": "slow down"})

    spec = make_spec("openai", max_retries=0)
    async with OpenAIProvider(spec, transport=httpx.MockTransport(answer)) as provider:
        with pytest.raises(RateLimitedError) as caught:
            await collect(provider, chat())
    assert caught.value.retry_after is None
