"""Security-key failures as a person sees them: each fido2 error becomes a vault error
that says what to do, whether it happens while enrolling or while unlocking.

A scripted WebAuthn client stands in for fido2's; the CTAP conversation itself runs
against a virtual authenticator in tests/integration/vault/test_security_keys.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fido2.client import ClientError, PinRequiredError
from fido2.ctap import CtapError
from fido2.webauthn import UserVerificationRequirement

from app.vault import NoSecretAvailableError, VaultError, WrongSecretError
from app.vault.security_key import PrfResult, SecurityKey

CREDENTIAL = b"credential-1"
NOT_ENROLLED = "not enrolled in this vault"


class Response:
    """The parts of a fido2 registration or assertion response that the vault reads."""

    def __init__(self, prf: Any) -> None:
        self.raw_id = CREDENTIAL
        self.client_extension_results = SimpleNamespace(prf=prf)


class Client:
    """A WebAuthn client that raises ``error`` or answers with ``prf``."""

    def __init__(self, *, error: Exception | None = None, prf: Any = None) -> None:
        self.error = error
        self.prf = prf
        self.requests: list[Any] = []

    def make_credential(self, options: Any, event: Any) -> Response:
        self.requests.append(options)
        if self.error is not None:
            raise self.error
        return Response(self.prf)

    def get_assertion(self, options: Any, event: Any) -> Any:
        self.requests.append(options)
        if self.error is not None:
            raise self.error
        raise AssertionError("this client only fails assertions")


def security_key(client: Client) -> SecurityKey:
    return SecurityKey(client, "scripted key")  # type: ignore[arg-type]


def enrol(key: SecurityKey) -> bytes:
    return key.enrol(user_id=b"vault-id", user_name="Hushchat vault")


def unlock(key: SecurityKey) -> PrfResult:
    return key.evaluate({CREDENTIAL: b"\x01" * 32}, user_verification=True)


def ctap(code: CtapError.ERR) -> CtapError:
    return CtapError(code)


def client_error(code: ClientError.ERR, cause: Exception | None = None) -> ClientError:
    """A fido2 client error as fido2 raises it (a CTAP error, if any, as its cause)."""
    return ClientError(code, cause)  # type: ignore[no-untyped-call]


def pin_required() -> PinRequiredError:
    return PinRequiredError()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (pin_required(), NoSecretAvailableError, "needs its PIN; none was entered"),
        (client_error(ClientError.ERR.TIMEOUT), NoSecretAvailableError, "not touched in time"),
        (
            client_error(ClientError.ERR.DEVICE_INELIGIBLE, ctap(CtapError.ERR.NO_CREDENTIALS)),
            WrongSecretError,
            NOT_ENROLLED,
        ),
        (ctap(CtapError.ERR.NO_CREDENTIALS), WrongSecretError, NOT_ENROLLED),
        (
            client_error(ClientError.ERR.BAD_REQUEST, ctap(CtapError.ERR.PIN_INVALID)),
            WrongSecretError,
            "PIN is wrong",
        ),
        (ctap(CtapError.ERR.PIN_AUTH_BLOCKED), WrongSecretError, "PIN is blocked"),
        (
            client_error(ClientError.ERR.BAD_REQUEST, ctap(CtapError.ERR.PIN_BLOCKED)),
            WrongSecretError,
            "PIN is blocked",
        ),
        (
            client_error(ClientError.ERR.BAD_REQUEST, ctap(CtapError.ERR.OPERATION_DENIED)),
            NoSecretAvailableError,
            "refused or timed out",
        ),
        (ctap(CtapError.ERR.USER_ACTION_TIMEOUT), NoSecretAvailableError, "refused or timed out"),
        (
            client_error(ClientError.ERR.CONFIGURATION_UNSUPPORTED),
            WrongSecretError,
            "cannot do what Hushchat needs",
        ),
        (ctap(CtapError.ERR.KEEPALIVE_CANCEL), VaultError, r"failed \(CtapError\); unplug it"),
    ],
)
@pytest.mark.parametrize("operation", [enrol, unlock], ids=["enrol", "unlock"])
def test_fido2_errors_become_vault_errors_that_say_what_to_do(
    operation: Any, error: Exception, kind: type[VaultError], message: str
) -> None:
    with pytest.raises(kind, match=message) as caught:
        operation(security_key(Client(error=error)))
    assert caught.value.__cause__ is None  # the fido2 traceback is not part of the message


@pytest.mark.parametrize("prf", [{"enabled": False}, {"enabled": False, "results": None}])
def test_a_key_without_hmac_secret_cannot_be_enrolled(prf: Any) -> None:
    with pytest.raises(WrongSecretError, match="does not support hmac-secret"):
        enrol(security_key(Client(prf=prf)))


@pytest.mark.parametrize("prf", [None, {"enabled": True}, "not an extension output"])
def test_a_key_that_says_nothing_against_prf_is_enrolled(prf: Any) -> None:
    # Some keys only show hmac-secret support when evaluated; enrolment accepts them.
    assert enrol(security_key(Client(prf=prf))) == CREDENTIAL


def test_without_authenticator_info_the_platform_chooses_user_verification() -> None:
    client = Client(prf={"enabled": True})
    enrol(security_key(client))
    selection = client.requests[0].authenticator_selection
    assert selection.user_verification == UserVerificationRequirement.PREFERRED


def test_a_prf_result_never_shows_its_output() -> None:
    result = PrfResult(CREDENTIAL, b"\x42" * 32, user_verified=True)
    assert repr(result) == "PrfResult(credential_id=<12 bytes>, output=<hidden>)"
    assert "42" not in repr(result)


def test_no_usable_hid_access_means_no_key_found(monkeypatch: pytest.MonkeyPatch) -> None:
    from fido2.hid import CtapHidDevice

    def denied() -> Any:
        raise PermissionError(13, "Permission denied: '/dev/hidraw0'")

    monkeypatch.setattr(CtapHidDevice, "list_devices", staticmethod(denied))
    with pytest.raises(NoSecretAvailableError, match="No FIDO2 security key was found"):
        SecurityKey.discover(prompts=None)  # type: ignore[arg-type]
