"""Signed-in sync round trip against `docker compose -f packaging/compose.yaml up`.

Run by .github/workflows/server-image.yml once the stack is up (no Docker engine here):

    python tests/deploy/compose_round_trip.py [--server http://localhost:8080]
        [--keycloak http://localhost:8081/realms/hushchat]

1. waits for /healthz and /readyz of the server and for Keycloak's discovery document;
2. gets an access token for the realm's test user alice with the password grant of the
   CI-only client ``hushchat-compose-check`` (packaging/keycloak/hushchat-realm.json);
3. pushes one record from a device with a DPoP-proofed request (the desktop client's own
   :class:`app.sync.dpop.DeviceKey`), pulls it from a second device (signed in on its
   own: the server binds a token to the first device that uses it) and compares;
4. checks that a request without a proof is refused.

Exits 0 when everything matched; otherwise prints what failed and exits 1.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import time
from typing import Any

import httpx

from app.sync.dpop import DPOP_HEADER, DeviceKey

CLIENT_ID = "hushchat-compose-check"
USER = "alice"
PASSWORD = "alice-password"  # the realm's published test user (dev only)


class RoundTripError(Exception):
    """A step of the round trip failed."""


def wait_for(http: httpx.Client, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200 (connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = http.get(url)
            if response.status_code == 200:
                print(f"ok: {url} answers 200")
                return
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = type(exc).__name__
        time.sleep(2)
    raise RoundTripError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last})")


def password_grant(http: httpx.Client, realm_url: str) -> str:
    """An access token of the test user (never printed)."""
    response = http.post(
        f"{realm_url}/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "username": USER,
            "password": PASSWORD,
            "scope": "openid email profile",
        },
    )
    if response.status_code != 200:
        raise RoundTripError(
            f"Keycloak refused the password grant: HTTP {response.status_code} "
            f"{response.text[:300]} (is {CLIENT_ID} in the imported realm?)"
        )
    token = response.json().get("access_token")
    if not isinstance(token, str):
        raise RoundTripError("Keycloak's token answer has no access_token")
    return token


def signed(
    http: httpx.Client, key: DeviceKey, token: str, method: str, path: str, **kw: Any
) -> httpx.Response:
    """One request with bearer token, device id and a fresh DPoP proof."""
    url = str(http.base_url).rstrip("/") + path
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Hushchat-Device": key.device_id,
        DPOP_HEADER: key.proof(method, url, token),
    }
    return http.request(method, path, headers=headers, **kw)


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    """The JSON body when the status matches; a RoundTripError naming ``what`` otherwise."""
    if response.status_code != status:
        raise RoundTripError(
            f"{what}: HTTP {response.status_code}, expected {status}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def round_trip(server: str, realm_url: str, timeout: float) -> None:
    """The whole check; raises RoundTripError at the first step that fails."""
    with httpx.Client(base_url=server, timeout=30) as http:
        wait_for(http, f"{server}/healthz", timeout)
        wait_for(http, f"{server}/readyz", timeout)
        wait_for(http, f"{realm_url}/.well-known/openid-configuration", timeout)
        # A token is bound to the first device that uses it: one sign-in per device.
        token, phone_token = password_grant(http, realm_url), password_grant(http, realm_url)
        print("ok: two access tokens from Keycloak (password grant of the test user)")
        laptop, phone = DeviceKey.generate(), DeviceKey.generate()
        me = expect(signed(http, laptop, token, "GET", "/v1/me"), 200, "GET /v1/me")
        print(f"ok: signed in as account {me.get('id')}")
        record_id = f"compose-{secrets.token_hex(8)}"
        payload = secrets.token_bytes(64)
        body = {
            "records": [
                {
                    "id": record_id,
                    "kind": "message",
                    "revision": 1,
                    "parent_revision": None,
                    "deleted": False,
                    "key_id": "k1",
                    "payload": base64.b64encode(payload).decode(),
                }
            ],
            "atomic": False,
        }
        pushed = expect(
            signed(http, laptop, token, "POST", "/v1/sync/push", json=body), 200, "push"
        )
        print(f"ok: pushed {record_id} from device 1 ({pushed})")
        cursor, found = 0, None
        while True:
            page = expect(
                signed(
                    http, phone, phone_token, "GET", "/v1/sync/changes", params={"cursor": cursor}
                ),
                200,
                "pull",
            )
            for change in page["changes"]:
                if change.get("id") == record_id:
                    found = change
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        if found is None:
            raise RoundTripError(f"device 2 did not get {record_id} (cursor {cursor})")
        if base64.b64decode(found["payload"]) != payload or found["revision"] != 1:
            raise RoundTripError(f"device 2 got {record_id} with another payload or revision")
        print(f"ok: device 2 pulled {record_id} with the same payload")
        bare = http.get(
            "/v1/me",
            headers={"Authorization": f"Bearer {token}", "X-Hushchat-Device": laptop.device_id},
        )
        if bare.status_code != 401:
            raise RoundTripError(f"a request without a DPoP proof got HTTP {bare.status_code}")
        print("ok: a request without a DPoP proof is refused (401)")


def main(argv: list[str] | None = None) -> int:
    """Run the round trip; 0 when it passed."""
    parser = argparse.ArgumentParser(description="Sync round trip against the compose stack.")
    parser.add_argument("--server", default="http://localhost:8080")
    parser.add_argument("--keycloak", default="http://localhost:8081/realms/hushchat")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for up")
    args = parser.parse_args(argv)
    try:
        round_trip(args.server.rstrip("/"), args.keycloak.rstrip("/"), args.timeout)
    except (RoundTripError, httpx.HTTPError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("compose round trip passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
