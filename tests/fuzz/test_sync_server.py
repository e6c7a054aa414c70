"""Fuzzing the sync server's request models and its HTTP surface.

* The pydantic request models of ``sync_server.protocol`` take any JSON (parsed by Python
  or by pydantic's own JSON reader) to a model or a ``ValidationError``; a model they
  accept survives dumping and validating again.
* Random bodies, headers and query strings sent to an app built by ``create_app`` and
  run in-process (``httpx.ASGITransport``, SQLite in a temporary directory), with a
  valid token, device id and DPoP proof that are sometimes dropped or mangled: push,
  changes, escrow and recovery always answer below 500; errors are problem+json with
  their own status in the body.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from sync_server import protocol
from sync_server.app import create_app
from sync_server.errors import PROBLEM_MEDIA_TYPE
from sync_server.protocol import ChangesResponse, PushResponse
from tests.fuzz._profiles import FUZZ
from tests.fuzz._stats import tried
from tests.fuzz._strategies import dumps, json_values, mutated
from tests.integration.sync_server.support import (
    FakeIssuer,
    auth_headers,
    make_settings,
    record,
    running,
)

pytestmark = pytest.mark.fuzz

#: Seconds one request may take; a handler that hangs fails the test.
REQUEST_TIMEOUT = 30.0
DEVICE = "fuzz-device-1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


#: A valid body of each request model: the seeds of the mutations.
VALID_BODIES: dict[type[BaseModel], dict[str, Any]] = {
    protocol.RecordIn: record("r1"),
    protocol.PushRequest: {"records": [record("r1"), record("r2", 2, 1)], "atomic": True},
    protocol.EscrowPut: {
        "tier": "standard",
        "key_id": "k1",
        "server_key_id": "s1",
        "sealed_key": _b64(bytes(80)),
    },
    protocol.RecoveryStart: {"device_public_key": _b64(bytes(32))},
    protocol.RecoveryCancel: {"recovery_id": "0123456789abcdef"},
    protocol.RecoveryComplete: {"recovery_id": "0123456789abcdef"},
    protocol.SignUp: {"email": "a@example.org", "password": "correct horse", "altcha": "e30="},
    protocol.VerifyEmail: {"token": "t0k3n"},
    protocol.PasswordResetRequest: {"email": "a@example.org", "altcha": "e30="},
    protocol.PasswordResetConfirm: {"token": "t0k3n", "password": "correct horse"},
    protocol.TokenRequest: {
        "email": "a@example.org",
        "password": "correct horse",
        "device_id": "device-0001",
    },
    protocol.RefreshRequest: {"refresh_token": "r3fr3sh"},
}
MODELS = list(VALID_BODIES)
KEYS = sorted(
    {key for body in VALID_BODIES.values() for key in body}
    | set(record("x"))
    | {"message", "chat", "standard", "private", "null"}
)


# --- the models --------------------------------------------------------------------------------


def _bodies(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    near_valid = mutated(VALID_BODIES[model], KEYS, max_mutations=2)
    return st.one_of(json_values(KEYS), near_valid, near_valid)


@st.composite
def _valid_pushes(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed pushes over a few record ids: new records, updates, conflicts, rejects."""
    revisions = st.one_of(st.integers(1, 5), st.sampled_from([protocol.MAX_SAFE_INTEGER]))
    records = []
    for _ in range(draw(st.integers(1, 5))):
        revision = draw(revisions)
        parent = draw(st.none() | revisions)
        records.append(
            record(
                draw(st.sampled_from(["a", "b", "c.d", "e:f"])),
                revision,
                parent,
                kind=draw(st.sampled_from(["message", "chat"])),
                deleted=draw(st.booleans()),
                payload=draw(st.binary(max_size=32)),
                key_id=draw(st.sampled_from(["k1", "k2"])),
            )
        )
    return {"records": records, "atomic": draw(st.booleans())}


BODIES = {model: _bodies(model) for model in MODELS}


@FUZZ
@given(data=st.data(), model=st.sampled_from(MODELS), via_json=st.booleans())
def test_request_models_validate_or_refuse(
    data: st.DataObject, model: type[BaseModel], via_json: bool
) -> None:
    tried("sync protocol: request models")
    body = data.draw(BODIES[model], label="body")
    try:
        if via_json:
            parsed = model.model_validate_json(json.dumps(body).encode("utf-8", "surrogatepass"))
        else:
            parsed = model.model_validate(body)
    except ValidationError:
        return
    assert model.model_validate(parsed.model_dump(mode="json")) == parsed


# --- the HTTP surface --------------------------------------------------------------------------


@dataclass
class _Server:
    """The running app, its client, and the event loop both live on across examples."""

    runner: asyncio.Runner
    client: httpx.AsyncClient
    token: str

    def credentials(self, method: str, url: str) -> dict[str, str]:
        """Token, device id and a fresh DPoP proof for one request."""
        return auth_headers(self.token, method, url, DEVICE)

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request = self.client.request(method, url, **kwargs)
        return self.runner.run(asyncio.wait_for(request, REQUEST_TIMEOUT))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    issuer = FakeIssuer()
    issuer.add_key("key-1")
    # Mangled credentials are 401s, which would soon use up the failed-authentication
    # limit (tested in tests/integration) and leave only 429s to fuzz.
    settings = make_settings(
        Path(tmp_path_factory.mktemp("sync")),
        rate_limit_global="1000000/minute",
        rate_limit_auth_failures="1000000/minute",
    )
    app = create_app(settings, http_transport=issuer.transport())
    token = issuer.mint("fuzz", lifetime=3600)
    runner = asyncio.Runner()
    context = running(app)
    client = runner.run(context.__aenter__())
    try:
        yield _Server(runner, client, token)
    finally:
        runner.run(context.__aexit__(None, None, None))
        runner.close()


def _check(response: httpx.Response, success: type[BaseModel] | None = None) -> None:
    """Below 500; an error is problem+json naming its status; a success parses."""
    event(f"status {response.status_code}")  # see --hypothesis-show-statistics
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers
        assert response.json()["status"] == response.status_code
    elif success is not None:
        success.model_validate_json(response.content)


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=latin-1",
    "text/plain",
    "",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]
#: Mostly JSON, so that most bodies reach the models and the handlers.
_CONTENT_TYPES = st.one_of(st.just("application/json"), st.sampled_from(CONTENT_TYPES))
_HEADER_VALUES = st.binary(max_size=60).filter(lambda v: not set(v) & {0, 10, 13})


@st.composite
def _headers(draw: st.DrawFn, valid: dict[str, str]) -> dict[str, Any]:
    """Mostly the valid credentials; sometimes a header dropped or replaced by junk."""
    headers: dict[str, Any] = dict(valid)
    for name in (*valid, "X-Hushchat-Device-Name"):
        choice = draw(st.sampled_from(["keep"] * 8 + ["drop", "junk"]))
        if choice == "drop":
            headers.pop(name, None)
        elif choice == "junk":
            junk = draw(_HEADER_VALUES | st.sampled_from([b"Bearer ", b"Bearer hc_", b"x" * 9000]))
            headers[name] = junk
    return headers


def _raw_bodies(model: type[BaseModel]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        BODIES[model].map(dumps),
        BODIES[model].map(lambda body: json.dumps(body).encode("utf-8", "surrogatepass")),
    )


RAW_BODIES: dict[type[BaseModel], st.SearchStrategy[bytes]] = {
    model: _raw_bodies(model)
    for model in (
        protocol.PushRequest,
        protocol.EscrowPut,
        protocol.RecoveryStart,
        protocol.RecoveryCancel,
        protocol.RecoveryComplete,
    )
}
PUSH_BODIES = st.one_of(RAW_BODIES[protocol.PushRequest], *[_valid_pushes().map(dumps)] * 2)
BODY_ENDPOINTS = [
    ("PUT", "/v1/escrow", protocol.EscrowPut),
    ("POST", "/v1/recovery/start", protocol.RecoveryStart),
    ("POST", "/v1/recovery/cancel", protocol.RecoveryCancel),
    ("POST", "/v1/recovery/complete", protocol.RecoveryComplete),
]


@FUZZ
@given(data=st.data())
def test_push_answers_below_500(server: _Server, data: st.DataObject) -> None:
    tried("sync HTTP: POST /v1/sync/push")
    body = data.draw(PUSH_BODIES, label="body")
    headers = data.draw(_headers(server.credentials("POST", "/v1/sync/push")), label="headers")
    headers["Content-Type"] = data.draw(_CONTENT_TYPES, label="content type")
    _check(server.send("POST", "/v1/sync/push", content=body, headers=headers), PushResponse)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["cursor", "limit", "since", ""]),
        st.one_of(st.integers(), st.text(max_size=12), st.sampled_from(["0", "1e3", "-1", ""])),
    ),
    data=st.data(),
)
def test_changes_answers_below_500(
    server: _Server, params: dict[str, Any], data: st.DataObject
) -> None:
    tried("sync HTTP: GET /v1/sync/changes")
    headers = data.draw(_headers(server.credentials("GET", "/v1/sync/changes")), label="headers")
    response = server.send("GET", "/v1/sync/changes", params=params, headers=headers)
    _check(response, ChangesResponse)


@FUZZ
@given(endpoint=st.sampled_from(BODY_ENDPOINTS), data=st.data())
def test_escrow_and_recovery_answer_below_500(
    server: _Server, endpoint: tuple[str, str, type[BaseModel]], data: st.DataObject
) -> None:
    tried("sync HTTP: escrow and recovery")
    method, url, model = endpoint
    body = data.draw(RAW_BODIES[model], label="body")
    headers = data.draw(_headers(server.credentials(method, url)), label="headers")
    headers["Content-Type"] = data.draw(_CONTENT_TYPES, label="content type")
    _check(server.send(method, url, content=body, headers=headers))
