"""Health, readiness, OpenAPI, problem details for every error, rate limits, logs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from sync_server.app import create_app
from tests.integration.sync_server.support import FakeIssuer, auth_headers, make_settings, running

PROBLEM = "application/problem+json"


async def test_health_ready_and_docs(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json()["status"] == "ok"
    assert (await api.get("/readyz")).json()["status"] == "ok"
    for path in ("/docs", "/redoc"):
        assert (await api.get(path)).status_code == 200
    schema = (await api.get("/openapi.json")).json()
    expected = {
        "/healthz",
        "/readyz",
        "/v1/meta",
        "/v1/me",
        "/v1/devices",
        "/v1/devices/{device_id}",
        "/v1/sync/changes",
        "/v1/sync/push",
        "/v1/escrow",
        "/v1/recovery/start",
        "/v1/recovery/cancel",
        "/v1/recovery/complete",
        "/v1/captcha/challenge",
        "/v1/account/signup",
        "/v1/account/verify-email",
        "/v1/account/token",
        "/v1/account/refresh",
    }
    assert expected <= set(schema["paths"])
    assert set(schema["paths"]["/v1/escrow"]) == {"get", "put", "delete"}
    assert set(schema["paths"]["/v1/me"]) == {"get", "delete"}
    push = schema["paths"]["/v1/sync/push"]["post"]
    assert PROBLEM in push["responses"]["422"]["content"]
    assert push["security"] == [{"HTTPBearer": []}]
    headers = {p["name"]: p for p in push["parameters"] if p["in"] == "header"}
    assert headers["DPoP"]["required"] and "RFC 9449" in headers["DPoP"]["description"]
    assert headers["X-Hushchat-Device"]["required"]
    changes = schema["paths"]["/v1/sync/changes"]["get"]
    wait = next(p for p in changes["parameters"] if p["name"] == "wait")
    assert wait["schema"]["maximum"] == 30 and wait["schema"]["minimum"] == 0


async def test_framework_errors_are_problem_details(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.mint("alice")
    auth = auth_headers(token, "POST", "/v1/sync/push", "abcdefgh")
    cases = [
        (api.get("/nowhere"), 404),
        (api.post("/healthz"), 405),
        (api.get("/v1/sync/changes", headers={**auth, "X-Hushchat-Device": "bad id!"}), 422),
        # A token without a DPoP proof, or with a proof for another request: 401.
        (api.get("/v1/me", headers={**auth, "DPoP": "not.a.proof"}), 401),
        (api.get("/v1/me", headers={**auth, "DPoP": ""}), 401),
        (api.get("/v1/me", headers=auth), 401),
        # Without credentials: 401 whatever else is wrong (here the device id too).
        (api.get("/v1/sync/changes", headers={"X-Hushchat-Device": "bad id!"}), 401),
        (api.post("/v1/sync/push", content=b"{not json"), 401),
        (api.post("/v1/sync/push", content=b"{not json", headers=auth), 422),
        (api.get("/v1/me", headers={"X-Hushchat-Device": "abcdefgh"}), 401),
    ]
    for call, status in cases:
        response = await call
        assert response.status_code == status
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["status"] == status and body["title"]
        assert body["request_id"] == response.headers["x-request-id"]


async def test_request_id_is_echoed_when_safe(api: httpx.AsyncClient) -> None:
    ok = await api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert ok.headers["x-request-id"] == "abc-123"
    unsafe = await api.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert unsafe.headers["x-request-id"] != "a b\tc"
    # Made by the server: 16 hex digits, a new one each time.
    made = {(await api.get("/healthz")).headers["x-request-id"] for _ in range(50)}
    made.add(unsafe.headers["x-request-id"])
    assert len(made) == 51
    assert all(re.fullmatch("[0-9a-f]{16}", request_id) for request_id in made)


async def test_unexpected_errors_are_500_problems(
    tmp_path: Path, issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path), http_transport=issuer.transport())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    async with running(app, raise_app_exceptions=False) as api:
        with caplog.at_level(logging.ERROR, logger="sync_server"):
            response = await api.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "kaboom" not in response.text
    assert any(r.message == "unhandled_error" for r in caplog.records)


async def test_rate_limits_answer_429_with_headers(tmp_path: Path, issuer: FakeIssuer) -> None:
    settings = make_settings(tmp_path, rate_limit_user="3/minute", rate_limit_anonymous="2/minute")
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        alice = issuer.mint("alice")
        statuses = [
            (await api.get("/v1/me", headers=auth_headers(alice, "GET", "/v1/me", "dev-12345")))
            for _ in range(4)
        ]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert statuses[0].headers["RateLimit-Limit"] == "3"
        assert statuses[1].headers["RateLimit-Remaining"] == "1"
        limited = statuses[3]
        assert limited.headers["content-type"] == PROBLEM
        assert int(limited.headers["Retry-After"]) >= 1
        # Another user is not affected by alice's limit.
        bob = auth_headers(issuer.mint("bob"), "GET", "/v1/me", "dev-67890")
        assert (await api.get("/v1/me", headers=bob)).status_code == 200
        anonymous = [(await api.get("/v1/meta")).status_code for _ in range(3)]
        assert anonymous == [200, 200, 429]


async def test_logs_carry_no_tokens_or_payloads(
    api: httpx.AsyncClient, issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = issuer.mint("alice")
    headers = auth_headers(token, "POST", "/v1/sync/push", "dev-12345")
    with caplog.at_level(logging.DEBUG):
        await api.post(
            "/v1/sync/push",
            headers=headers,
            json={
                "records": [
                    {
                        "id": "r",
                        "kind": "message",
                        "revision": 1,
                        "key_id": "k",
                        "payload": "U0VDUkVUUEFZTE9BRA==",
                    }
                ]
            },
        )
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "request" in text
    assert token not in text and token[-20:] not in text
    assert headers["DPoP"][-20:] not in text
    assert "U0VDUkVUUEFZTE9BRA" not in text and "SECRETPAYLOAD" not in text
