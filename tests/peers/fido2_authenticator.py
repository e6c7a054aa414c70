"""A software CTAP2 authenticator for tests, spoken to by the real ``fido2`` client.

It implements ``fido2.ctap.CtapDevice`` (CTAPHID_CBOR only) with spec-correct
authenticatorGetInfo, authenticatorMakeCredential, authenticatorGetAssertion and
authenticatorClientPIN (getPINRetries, getKeyAgreement, getPinToken) for PIN/UV auth
protocols 1 and 2, plus the ``hmac-secret`` extension (CTAP 2.1 §12.5): each credential
has two random CredRandom values, one used when the user was verified (PIN) and one
when not, so the two outputs differ for the same salt. Credentials are
non-discoverable and kept in memory; signatures are ES256 over authData || clientDataHash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from threading import Event
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.cose import ES256
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.ctap2.pin import PinProtocol, PinProtocolV1, PinProtocolV2
from fido2.hid import CAPABILITY, CTAPHID
from fido2.utils import bytes2int, int2bytes
from fido2.webauthn import AttestedCredentialData, AuthenticatorData

ERR = CtapError.ERR
FLAG = AuthenticatorData.FLAG

MAKE_CREDENTIAL = 0x01
GET_ASSERTION = 0x02
GET_INFO = 0x04
CLIENT_PIN = 0x06

AAGUID = bytes.fromhex("6875736863686174746573746b657930")  # "hushchattestkey0"


class _CtapFailure(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Credential:
    """One credential: its key pair and its two hmac-secret CredRandom values."""

    credential_id: bytes
    rp_id_hash: bytes
    private_key: ec.EllipticCurvePrivateKey
    cred_random_uv: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    cred_random_no_uv: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    hmac_secret: bool = False
    sign_count: int = 0


class SoftwareAuthenticator(CtapDevice):
    """An in-memory FIDO2 authenticator with optional PIN and the hmac-secret extension.

    ``touch`` decides each user-presence test (default: the user touches). Counters
    ``touches`` and ``pin_tokens_issued`` let tests check the prompts really happened.
    ``zero_prf`` makes hmac-secret return all zeros (a faulty key).
    """

    def __init__(
        self,
        *,
        pin: str | None = None,
        touch: Callable[[], bool] | None = None,
        zero_prf: bool = False,
        hmac_secret: bool = True,
    ) -> None:
        self.pin = pin
        self.pin_retries = 8
        self.touch = touch or (lambda: True)
        self.zero_prf = zero_prf
        self.supports_hmac_secret = hmac_secret
        self.credentials: dict[bytes, Credential] = {}
        self.touches = 0
        self.pin_tokens_issued = 0
        self._key_agreement = ec.generate_private_key(ec.SECP256R1())
        self._pin_token = secrets.token_bytes(32)

    # ------------------------------------------------------------ CtapDevice

    @property
    def capabilities(self) -> int:
        """CBOR (CTAP2) and no CTAP1/U2F messages."""
        return CAPABILITY.CBOR | CAPABILITY.NMSG

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        """Handle one CTAPHID_CBOR message; answer status byte + canonical CBOR."""
        if cmd != CTAPHID.CBOR:
            raise CtapError(ERR.INVALID_COMMAND)
        if not data:
            return bytes([ERR.INVALID_LENGTH])
        command, payload = data[0], data[1:]
        try:
            params = cbor.decode(payload) if payload else {}
            if not isinstance(params, Mapping):
                raise _CtapFailure(ERR.INVALID_CBOR)
            handler = {
                GET_INFO: self._get_info,
                MAKE_CREDENTIAL: self._make_credential,
                GET_ASSERTION: self._get_assertion,
                CLIENT_PIN: self._client_pin,
            }.get(command)
            if handler is None:
                raise _CtapFailure(ERR.INVALID_COMMAND)
            response = handler(params, on_keepalive)
        except _CtapFailure as failure:
            return bytes([failure.code])
        return b"\x00" + (cbor.encode(response) if response else b"")

    @classmethod
    def list_devices(cls) -> Iterator[SoftwareAuthenticator]:
        """Software authenticators are created by tests, never discovered."""
        return iter(())

    # ------------------------------------------------------------ helpers

    def _protocol(self, version: Any) -> PinProtocol:
        if version == 1:
            return PinProtocolV1()
        if version == 2:
            return PinProtocolV2()
        raise _CtapFailure(ERR.INVALID_PARAMETER)

    def _shared_secret(self, protocol: PinProtocol, peer: Mapping[int, Any]) -> bytes:
        try:
            x, y = bytes2int(peer[-2]), bytes2int(peer[-3])
            public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except (KeyError, ValueError, TypeError):
            raise _CtapFailure(ERR.INVALID_PARAMETER) from None
        z = self._key_agreement.exchange(ec.ECDH(), public)
        return protocol.kdf(z)  # type: ignore[attr-defined, no-any-return]

    def _user_present(self, on_keepalive: Callable[[STATUS], None] | None) -> None:
        if on_keepalive is not None:
            on_keepalive(STATUS.UPNEEDED)
        self.touches += 1
        if not self.touch():
            raise _CtapFailure(ERR.OPERATION_DENIED)

    def _check_pin_uv_auth(self, params: Mapping[int, Any], cdh: bytes, key: int) -> bool:
        """Return True when a valid pinUvAuthParam makes this request user-verified."""
        param = params.get(key)
        if param is None:
            if self.pin is not None and key == 8:  # makeCredential needs the PIN once set
                raise _CtapFailure(ERR.PUAT_REQUIRED)
            return False
        if self.pin is None:
            raise _CtapFailure(ERR.PIN_NOT_SET)
        if len(param) == 0:
            raise _CtapFailure(ERR.PIN_INVALID)
        protocol = self._protocol(params.get(key + 1))
        if not hmac.compare_digest(param, protocol.authenticate(self._pin_token, cdh)):
            raise _CtapFailure(ERR.PIN_AUTH_INVALID)
        return True

    # ------------------------------------------------------------ commands

    def _get_info(self, _params: Mapping[int, Any], _keepalive: Any) -> dict[int, Any]:
        return {
            1: ["FIDO_2_0"],
            2: ["hmac-secret"] if self.supports_hmac_secret else [],
            3: AAGUID,
            4: {"rk": False, "up": True, "plat": False, "clientPin": self.pin is not None},
            5: 2048,
            6: [2, 1],
            7: 8,
            8: 64,
        }

    def _make_credential(
        self, params: Mapping[int, Any], on_keepalive: Callable[[STATUS], None] | None
    ) -> dict[int, Any]:
        try:
            cdh, rp, _user, algorithms = params[1], params[2], params[3], params[4]
        except KeyError:
            raise _CtapFailure(ERR.MISSING_PARAMETER) from None
        if not any(item.get("alg") == ES256.ALGORITHM for item in algorithms):
            raise _CtapFailure(ERR.UNSUPPORTED_ALGORITHM)
        options = params.get(7) or {}
        if options.get("rk") or options.get("uv"):
            raise _CtapFailure(ERR.UNSUPPORTED_OPTION)
        verified = self._check_pin_uv_auth(params, cdh, 8)
        rp_id_hash = hashlib.sha256(rp["id"].encode()).digest()
        for descriptor in params.get(5) or []:
            known = self.credentials.get(descriptor["id"])
            if known is not None and known.rp_id_hash == rp_id_hash:
                self._user_present(on_keepalive)
                raise _CtapFailure(ERR.CREDENTIAL_EXCLUDED)
        extensions_in = params.get(6) or {}
        self._user_present(on_keepalive)

        credential = Credential(
            credential_id=secrets.token_bytes(48),
            rp_id_hash=rp_id_hash,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            hmac_secret=bool(extensions_in.get("hmac-secret")) and self.supports_hmac_secret,
        )
        self.credentials[credential.credential_id] = credential
        extensions_out = {"hmac-secret": True} if credential.hmac_secret else None
        flags = (
            FLAG.UP | FLAG.AT | (FLAG.UV if verified else 0) | (FLAG.ED if extensions_out else 0)
        )
        attested = AttestedCredentialData.create(
            AAGUID,
            credential.credential_id,
            ES256.from_cryptography_key(credential.private_key.public_key()),
        )
        auth_data = AuthenticatorData.create(rp_id_hash, flags, 0, attested, extensions_out)
        return {1: "none", 2: bytes(auth_data), 3: {}}

    def _hmac_secret(
        self, credential: Credential, request: Mapping[int, Any], verified: bool
    ) -> bytes:
        protocol = self._protocol(request.get(4, 1))
        shared = self._shared_secret(protocol, request[1])
        salt_enc, salt_auth = request[2], request[3]
        if not hmac.compare_digest(salt_auth, protocol.authenticate(shared, salt_enc)):
            raise _CtapFailure(ERR.EXTENSION_FIRST)
        salts = protocol.decrypt(shared, salt_enc)
        if len(salts) not in (32, 64):
            raise _CtapFailure(ERR.INVALID_LENGTH)
        cred_random = credential.cred_random_uv if verified else credential.cred_random_no_uv
        output = b"".join(
            hmac.digest(cred_random, salts[offset : offset + 32], "sha256")
            for offset in range(0, len(salts), 32)
        )
        if self.zero_prf:
            output = bytes(len(output))
        return protocol.encrypt(shared, output)

    def _get_assertion(
        self, params: Mapping[int, Any], on_keepalive: Callable[[STATUS], None] | None
    ) -> dict[int, Any]:
        try:
            rp_id, cdh = params[1], params[2]
        except KeyError:
            raise _CtapFailure(ERR.MISSING_PARAMETER) from None
        options = params.get(5) or {}
        if options.get("uv") or options.get("rk"):
            raise _CtapFailure(ERR.UNSUPPORTED_OPTION)
        verified = self._check_pin_uv_auth(params, cdh, 6)
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        matches = [
            self.credentials[item["id"]]
            for item in params.get(3) or []
            if item["id"] in self.credentials
            and self.credentials[item["id"]].rp_id_hash == rp_id_hash
        ]
        if not matches:
            raise _CtapFailure(ERR.NO_CREDENTIALS)
        credential = matches[0]
        user_present = options.get("up", True)
        if user_present:
            self._user_present(on_keepalive)
        extensions_out: dict[str, Any] = {}
        hmac_request = (params.get(4) or {}).get("hmac-secret")
        if hmac_request is not None:
            if not credential.hmac_secret or not user_present:
                raise _CtapFailure(ERR.UNSUPPORTED_EXTENSION)
            extensions_out["hmac-secret"] = self._hmac_secret(credential, hmac_request, verified)
        credential.sign_count += 1
        flags = (
            (FLAG.UP if user_present else 0)
            | (FLAG.UV if verified else 0)
            | (FLAG.ED if extensions_out else 0)
        )
        auth_data = AuthenticatorData.create(
            rp_id_hash, flags, credential.sign_count, extensions=extensions_out or None
        )
        signature = credential.private_key.sign(bytes(auth_data) + cdh, ec.ECDSA(hashes.SHA256()))
        return {
            1: {"type": "public-key", "id": credential.credential_id},
            2: bytes(auth_data),
            3: signature,
        }

    def _client_pin(self, params: Mapping[int, Any], _keepalive: Any) -> dict[int, Any]:
        protocol = self._protocol(params.get(1))
        sub_command = params.get(2)
        if sub_command == 0x01:  # getPINRetries
            return {3: self.pin_retries}
        if sub_command == 0x02:  # getKeyAgreement
            numbers = self._key_agreement.public_key().public_numbers()
            return {
                1: {1: 2, 3: -25, -1: 1, -2: int2bytes(numbers.x, 32), -3: int2bytes(numbers.y, 32)}
            }
        if sub_command == 0x05:  # getPinToken
            if self.pin is None:
                raise _CtapFailure(ERR.PIN_NOT_SET)
            if self.pin_retries == 0:
                raise _CtapFailure(ERR.PIN_BLOCKED)
            shared = self._shared_secret(protocol, params[3])
            pin_hash = protocol.decrypt(shared, params[6])
            expected = hashlib.sha256(self.pin.encode()).digest()[:16]
            if not hmac.compare_digest(pin_hash, expected):
                self.pin_retries -= 1
                self._key_agreement = ec.generate_private_key(ec.SECP256R1())
                raise _CtapFailure(ERR.PIN_BLOCKED if self.pin_retries == 0 else ERR.PIN_INVALID)
            self.pin_retries = 8
            self._pin_token = secrets.token_bytes(32)
            self.pin_tokens_issued += 1
            return {2: protocol.encrypt(shared, self._pin_token)}
        raise _CtapFailure(ERR.INVALID_SUBCOMMAND)
