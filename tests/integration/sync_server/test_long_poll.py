"""Long-poll on ``GET /v1/sync/changes?wait=…``: a waiting pull answers when another device
pushes (same process at once, another process sharing the database within about a
second), otherwise with an empty page after ``wait``; waiters are bounded and let go at
client disconnect and server shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from sync_server.app import create_app
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    auth_headers,
    device_key,
    make_settings,
    record,
    running,
    seed_local_token,
)

UserFactory = Callable[..., ApiUser]
# Generous: the answer is expected within about a second; this only catches "never".
PROMPT = 5.0


async def _until_waiting(notifier: Any, count: int) -> None:
    """Until ``count`` pulls wait on the server (bounded: at most PROMPT seconds)."""
    for _ in range(int(PROMPT / 0.02)):
        if notifier.waiting >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{notifier.waiting} pulls waiting, expected {count}")


async def _wait(user: ApiUser, cursor: int, wait: int) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await user.get("/v1/sync/changes", params={"cursor": cursor, "wait": wait})
    return response, time.monotonic() - started


async def test_a_waiting_pull_answers_when_another_device_pushes(user: UserFactory) -> None:
    laptop, phone = user("alice", "alice-laptop"), user("alice", "alice-phone")
    cursor = (await laptop.push(record("m1")))["cursor"]
    waiting = asyncio.create_task(_wait(phone, cursor, 20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await laptop.push(record("m2"))
    response, elapsed = await asyncio.wait_for(waiting, PROMPT)
    assert response.status_code == 200, response.text
    page = response.json()
    assert [c["id"] for c in page["changes"]] == ["m2"]
    assert page["cursor"] == cursor + 1
    assert elapsed < PROMPT


async def test_without_a_push_the_answer_is_an_empty_page_after_wait(user: UserFactory) -> None:
    alice = user("alice")
    cursor = (await alice.push(record("m1")))["cursor"]
    response, elapsed = await _wait(alice, cursor, 1)
    assert response.status_code == 200
    assert response.json() == {"changes": [], "cursor": cursor, "has_more": False, "recoveries": []}
    assert elapsed >= 0.9
    # Another account's push does not wake alice.
    bob = user("bob")
    waiting = asyncio.create_task(_wait(alice, cursor, 1))
    await bob.push(record("b1"))
    response, elapsed = await waiting
    assert response.json()["changes"] == [] and elapsed >= 0.9


async def test_changes_already_there_and_wait_zero_answer_at_once(user: UserFactory) -> None:
    alice = user("alice")
    await alice.push(record("m1"))
    response, elapsed = await _wait(alice, 0, 30)
    assert [c["id"] for c in response.json()["changes"]] == ["m1"]
    assert elapsed < 1
    response, elapsed = await _wait(alice, 1, 0)
    assert response.json()["changes"] == [] and elapsed < 1
    # A push that changes nothing (a duplicate) does not wake anyone.
    waiting = asyncio.create_task(_wait(alice, 1, 1))
    await asyncio.sleep(0.2)
    assert (await alice.push(record("m1")))["results"][0]["duplicate"]
    response, elapsed = await waiting
    assert response.json()["changes"] == [] and elapsed >= 0.9


async def test_bad_wait_values_are_422(user: UserFactory) -> None:
    alice = user("alice")
    for wait in ("31", "-1", "1.5", "soon"):
        response = await alice.get("/v1/sync/changes", params={"wait": wait})
        assert response.status_code == 422, wait
        assert response.json()["errors"][0]["loc"] == ["query", "wait"]


async def test_waiters_are_bounded_per_device_and_account(
    tmp_path: Path, issuer: FakeIssuer
) -> None:
    settings = make_settings(
        tmp_path, long_poll_max_waiters_per_device=2, long_poll_max_waiters_per_account=3
    )
    app = create_app(settings, http_transport=issuer.transport())
    async with running(app) as api:
        token = issuer.mint("alice")
        laptop, phone, tablet = (
            ApiUser(api, token, "alice-laptop"),
            ApiUser(api, issuer.mint("alice"), "alice-phone"),
            ApiUser(api, issuer.mint("alice"), "alice-tablet"),
        )
        notifier = app.state.server.notifier
        first = [asyncio.create_task(_wait(laptop, 0, 20)) for _ in range(2)]
        await _until_waiting(notifier, 2)
        refused, _ = await _wait(laptop, 0, 20)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["type"].endswith("too-many-waiters")
        assert (await _wait(laptop, 0, 0))[0].status_code == 200  # no wait, no limit
        third = asyncio.create_task(_wait(phone, 0, 20))
        await _until_waiting(notifier, 3)
        assert (await _wait(tablet, 0, 20))[0].status_code == 429
        await tablet.push(record("t1"))
        answers = await asyncio.wait_for(asyncio.gather(*first, third), PROMPT)
        assert all(r.json()["changes"][0]["id"] == "t1" for r, _ in answers)
        assert notifier.waiting == 0


async def test_another_process_on_the_same_database_is_seen_by_polling(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    # Two apps = two processes: a push to one does not notify the other's waiters.
    settings = make_settings(tmp_path, database_url, long_poll_interval_seconds=0.5)
    first, second = (create_app(settings, http_transport=issuer.transport()) for _ in "ab")
    token = issuer.mint("alice")
    async with running(first) as one, running(second) as two:
        laptop = ApiUser(one, token, "alice-laptop")
        phone = ApiUser(two, issuer.mint("alice"), "alice-phone")
        cursor = (await laptop.push(record("m1")))["cursor"]
        waiting = asyncio.create_task(_wait(phone, cursor, 20))
        await asyncio.sleep(0.2)
        pushed = time.monotonic()
        await laptop.push(record("m2"))
        response, _ = await asyncio.wait_for(waiting, PROMPT)
        assert [c["id"] for c in response.json()["changes"]] == ["m2"]
        assert time.monotonic() - pushed < PROMPT


async def test_shutdown_ends_waiting_pulls(tmp_path: Path, issuer: FakeIssuer) -> None:
    app = create_app(make_settings(tmp_path), http_transport=issuer.transport())
    async with running(app) as api:
        alice = ApiUser(api, issuer.mint("alice"), "alice-laptop")
        waiting = asyncio.create_task(_wait(alice, 0, 30))
        notifier = app.state.server.notifier
        await _until_waiting(notifier, 1)
        notifier.close()
        response, elapsed = await asyncio.wait_for(waiting, PROMPT)
        assert response.json()["changes"] == [] and elapsed < PROMPT
        # Once closing, pulls no longer wait at all.
        assert (await _wait(alice, 0, 30))[1] < 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _ThreadedServer:
    """uvicorn in a background thread (its own event loop), on loopback."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    def __enter__(self) -> _ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def test_a_client_that_goes_away_stops_waiting(tmp_path: Path, issuer: FakeIssuer) -> None:
    settings = make_settings(tmp_path, long_poll_interval_seconds=0.2)
    app = create_app(settings, http_transport=issuer.transport())
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    token = issuer.mint("alice")
    with _ThreadedServer(app, port), httpx.Client(base_url=base_url) as http:
        headers = auth_headers(token, "GET", "/v1/sync/changes", "alice-laptop", base_url=base_url)
        with pytest.raises(httpx.ReadTimeout):
            http.get("/v1/sync/changes", params={"wait": 30}, headers=headers, timeout=0.5)
        notifier = app.state.server.notifier
        deadline = time.monotonic() + PROMPT
        while notifier.waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notifier.waiting == 0


@pytest.mark.slow
def test_serve_shuts_down_without_waiting_for_long_polls(tmp_path: Path) -> None:
    values = generate_secrets()
    settings = Settings(**{k.lower(): v for k, v in values.items()}, data_dir=tmp_path / "data")
    token, key = "hcl_" + "s" * 40, device_key("shutdown-device")
    asyncio.run(seed_local_token(settings, token, key.device_id))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    env.update(
        {f"HUSHCHAT_SYNC_{k}": v for k, v in values.items()},
        HUSHCHAT_SYNC_DATA_DIR=str(settings.data_dir),
        HUSHCHAT_SYNC_LOCAL_ACCOUNTS_ENABLED="true",
        HUSHCHAT_SYNC_SMTP_HOST="127.0.0.1",
    )
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_server", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=base_url, timeout=40) as http:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            answers: list[httpx.Response] = []

            def pull() -> None:
                headers = auth_headers(token, "GET", "/v1/sync/changes", key, base_url=base_url)
                answers.append(http.get("/v1/sync/changes", params={"wait": 30}, headers=headers))

            puller = threading.Thread(target=pull)
            puller.start()
            time.sleep(1.0)  # the pull is waiting now
            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            took = time.monotonic() - stopped
            puller.join(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert process.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
    assert took < 10, log.read_text()
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json()["changes"] == []
    assert "Traceback" not in log.read_text()
