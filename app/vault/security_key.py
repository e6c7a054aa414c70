"""FIDO2 security keys (and Windows Hello) as unlock methods, through the ``fido2`` client.

A security-key slot is a non-discoverable credential created for the RP id
``hushchat.local``; unlocking asks the key for its PRF (``hmac-secret``) output over the
slot's own 32-byte random salt, refuses an all-zero output, and HKDFs it into the slot
key. PIN and touch prompts reach the caller through :class:`KeyPrompts`, so the UI can
show a dialog and the CLI a line on stderr. USB HID keys are found with
``fido2.hid.CtapHidDevice``; on Windows, Windows Hello's platform client is used when
the WebAuthn API is present.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from threading import Event
from typing import Any, Final, Protocol

from fido2.client import (
    ClientDataCollector,
    ClientError,
    Fido2Client,
    PinRequiredError,
    UserInteraction,
    WebAuthnClient,
)
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2.extensions import AuthenticatorExtensionsPRFOutputs
from fido2.ctap2.pin import ClientPin
from fido2.utils import websafe_encode
from fido2.webauthn import (
    AuthenticatorSelectionCriteria,
    CollectedClientData,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRequestOptions,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.vault.errors import NoSecretAvailableError, VaultError, WrongSecretError

__all__ = [
    "ORIGIN",
    "RP_ID",
    "KeyPrompts",
    "PrfResult",
    "SecurityKey",
    "check_prf_output",
]

RP_ID: Final = "hushchat.local"
ORIGIN: Final = "https://hushchat.local"
_TIMEOUT_MS: Final = 60_000
_ES256: Final = -7
_EDDSA: Final = -8


class KeyPrompts(Protocol):
    """What the UI (or CLI) shows while a security key works."""

    def prompt_touch(self) -> None:
        """The key waits for a touch: tell the user to touch it."""

    def request_pin(self) -> str | None:
        """The key needs its PIN: ask for it; ``None`` cancels."""


class _Interaction(UserInteraction):
    """Adapter from ``fido2``'s callback object to :class:`KeyPrompts`."""

    def __init__(self, prompts: KeyPrompts) -> None:
        self._prompts = prompts

    def prompt_up(self) -> None:
        self._prompts.prompt_touch()

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        return self._prompts.request_pin()

    def request_uv(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> bool:
        return True


class _ClientData(ClientDataCollector):
    """Fixed origin and RP id: Hushchat is an app, not a web page, so no origin check."""

    def collect_client_data(
        self,
        options: PublicKeyCredentialCreationOptions | PublicKeyCredentialRequestOptions,
    ) -> tuple[CollectedClientData, str]:
        if isinstance(options, PublicKeyCredentialCreationOptions):
            kind = CollectedClientData.TYPE.CREATE
            rp_id = options.rp.id or RP_ID
        else:
            kind = CollectedClientData.TYPE.GET
            rp_id = options.rp_id or RP_ID
        data = CollectedClientData.create(type=kind, origin=ORIGIN, challenge=options.challenge)
        return data, rp_id


@dataclass(frozen=True, repr=False)
class PrfResult:
    """Which credential answered, its PRF output, and whether the user was verified."""

    credential_id: bytes
    output: bytes
    user_verified: bool

    def __repr__(self) -> str:
        return f"PrfResult(credential_id=<{len(self.credential_id)} bytes>, output=<hidden>)"


def check_prf_output(output: bytes | None) -> bytes:
    """Return a usable 32-byte PRF output or raise; an all-zero output is refused."""
    if output is None or len(output) != 32:
        raise WrongSecretError(
            "The security key did not return a PRF (hmac-secret) result; it may not support "
            "the extension. Use a FIDO2 key with hmac-secret."
        )
    if not any(output):
        raise WrongSecretError(
            "The security key returned an all-zero secret, which Hushchat refuses; the key "
            "is faulty or not genuine."
        )
    return output


def _translate(error: Exception) -> VaultError:
    """Map fido2 failures to vault errors with actionable messages."""
    if isinstance(error, PinRequiredError):
        return NoSecretAvailableError("The security key needs its PIN; none was entered.")
    cause = error.cause if isinstance(error, ClientError) else error
    code = getattr(cause, "code", None)
    if isinstance(error, ClientError) and error.code == ClientError.ERR.TIMEOUT:
        return NoSecretAvailableError("The security key was not touched in time; try again.")
    if code in (CtapError.ERR.NO_CREDENTIALS, ClientError.ERR.DEVICE_INELIGIBLE):
        return WrongSecretError(
            "This security key is not enrolled in this vault; use an enrolled key or "
            "another unlock method."
        )
    if code in (CtapError.ERR.PIN_INVALID, CtapError.ERR.PIN_AUTH_INVALID):
        return WrongSecretError("The security key's PIN is wrong; try again.")
    if code in (CtapError.ERR.PIN_BLOCKED, CtapError.ERR.PIN_AUTH_BLOCKED):
        return WrongSecretError(
            "The security key's PIN is blocked; unplug and replug it, or reset the key."
        )
    if code in (CtapError.ERR.OPERATION_DENIED, CtapError.ERR.USER_ACTION_TIMEOUT):
        return NoSecretAvailableError("The security key refused or timed out; try again.")
    if isinstance(error, ClientError) and error.code == ClientError.ERR.CONFIGURATION_UNSUPPORTED:
        return WrongSecretError(
            "The security key cannot do what Hushchat needs (hmac-secret with this "
            "user-verification setting)."
        )
    return VaultError(f"The security key failed ({type(error).__name__}); unplug it and retry.")


class SecurityKey:
    """One FIDO2 authenticator, reached through a WebAuthn client."""

    def __init__(self, client: WebAuthnClient, description: str) -> None:
        self._client = client
        self.description = description

    @classmethod
    def from_device(cls, device: CtapDevice, prompts: KeyPrompts) -> SecurityKey:
        """Wrap a CTAP device (USB HID, NFC, or a test authenticator)."""
        client = Fido2Client(device, _ClientData(), _Interaction(prompts))
        return cls(client, f"security key {type(device).__name__}")

    @classmethod
    def discover(cls, prompts: KeyPrompts) -> SecurityKey:
        """Return Windows Hello where available, else the first USB security key.

        Raises :class:`NoSecretAvailableError` when there is none.
        """
        if sys.platform == "win32":
            from fido2.client.windows import WindowsClient

            if WindowsClient.is_available():
                return cls(WindowsClient(_ClientData()), "Windows Hello")
        for device in _hid_devices():
            return cls.from_device(device, prompts)
        raise NoSecretAvailableError(
            "No FIDO2 security key was found. Plug one in (on Linux, check that your user "
            "may open /dev/hidraw*) and try again."
        )

    def _default_user_verification(self) -> UserVerificationRequirement:
        """Use the PIN/biometric when the key has one set up, touch alone otherwise.

        ``fido2`` refuses "preferred" on a key that supports a PIN but has none set, so
        the choice is made here from the key's getInfo options.
        """
        info = getattr(self._client, "info", None)
        if info is None:  # a platform authenticator (Windows Hello) decides itself
            return UserVerificationRequirement.PREFERRED
        options = info.options
        if any(options.get(name) for name in ("uv", "clientPin", "bioEnroll")):
            return UserVerificationRequirement.REQUIRED
        return UserVerificationRequirement.DISCOURAGED

    def enrol(self, *, user_id: bytes, user_name: str, rp_id: str = RP_ID) -> bytes:
        """Create a non-discoverable credential with hmac-secret; return its id."""
        options = PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(name="Hushchat", id=rp_id),
            user=PublicKeyCredentialUserEntity(name=user_name, id=user_id),
            challenge=secrets.token_bytes(32),
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=_ES256),
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=_EDDSA),
            ],
            timeout=_TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=self._default_user_verification(),
            ),
            extensions={"prf": {}},
        )
        try:
            response = self._client.make_credential(options, Event())
        except (ClientError, CtapError) as error:
            raise _translate(error) from None
        prf = _prf_outputs(response.client_extension_results)
        if prf is not None and prf.enabled is False:
            raise WrongSecretError(
                "This security key does not support hmac-secret (PRF), so it cannot unlock "
                "a vault. Use a FIDO2 key with hmac-secret."
            )
        return response.raw_id

    def evaluate(
        self,
        salts: Mapping[bytes, bytes],
        *,
        user_verification: bool | None,
        rp_id: str = RP_ID,
    ) -> PrfResult:
        """Ask the key for the PRF output of whichever listed credential it holds.

        ``salts`` maps credential id to that slot's salt. ``user_verification`` True asks
        for a PIN/biometric, False forbids it, None lets the key decide.
        """
        if user_verification is None:
            requirement = self._default_user_verification()
        elif user_verification:
            requirement = UserVerificationRequirement.REQUIRED
        else:
            requirement = UserVerificationRequirement.DISCOURAGED
        options = PublicKeyCredentialRequestOptions(
            challenge=secrets.token_bytes(32),
            timeout=_TIMEOUT_MS,
            rp_id=rp_id,
            allow_credentials=[
                PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=cred)
                for cred in salts
            ],
            user_verification=requirement,
            extensions={
                "prf": {
                    "evalByCredential": {
                        websafe_encode(cred): {"first": websafe_encode(salt)}
                        for cred, salt in salts.items()
                    }
                }
            },
        )
        try:
            selection = self._client.get_assertion(options, Event())
            response = selection.get_response(0)
        except (ClientError, CtapError) as error:
            raise _translate(error) from None
        prf = _prf_outputs(response.client_extension_results)
        output = prf.results.first if prf is not None and prf.results is not None else None
        return PrfResult(
            credential_id=response.raw_id,
            output=check_prf_output(output),
            user_verified=response.response.authenticator_data.is_user_verified(),
        )


def _prf_outputs(results: Any) -> AuthenticatorExtensionsPRFOutputs | None:
    value = getattr(results, "prf", None)
    if value is None or isinstance(value, AuthenticatorExtensionsPRFOutputs):
        return value
    if isinstance(value, Mapping):
        return AuthenticatorExtensionsPRFOutputs.from_dict(value)
    return None


def _hid_devices() -> Iterator[CtapDevice]:
    from fido2.hid import CtapHidDevice

    try:
        yield from CtapHidDevice.list_devices()
    except OSError:
        return
