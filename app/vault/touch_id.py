"""Touch ID on macOS: the slot secret lives in a keychain item bound to biometry.

The item is created with ``SecAccessControlCreateWithFlags(..., BiometryCurrentSet)`` in
the data-protection keychain, so reading it back needs a fingerprint enrolled *now*
(re-enrolling fingers invalidates it). macOS only grants the data-protection keychain to
code-signed apps with a keychain-access-groups entitlement: an unsigned build gets
``errSecMissingEntitlement`` and Hushchat says so and falls back to the passphrase.
The OS calls go through an injectable ``Security`` module object so that the logic
around them (queries, status handling) is tested on every platform with a fake.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Final

from app.vault.errors import NoSecretAvailableError, UnlockMethodUnavailableError

__all__ = ["TOUCH_ID_SERVICE", "TouchIdStore", "is_touch_id_platform"]

TOUCH_ID_SERVICE: Final = "Hushchat vault (Touch ID)"
ERR_SEC_SUCCESS: Final = 0
ERR_SEC_ITEM_NOT_FOUND: Final = -25300
ERR_SEC_DUPLICATE_ITEM: Final = -25299
ERR_SEC_USER_CANCELED: Final = -128
ERR_SEC_AUTH_FAILED: Final = -25293
ERR_SEC_MISSING_ENTITLEMENT: Final = -34018


def is_touch_id_platform() -> bool:
    """Whether this is macOS, the only platform with a Touch ID slot."""
    return sys.platform == "darwin"


class TouchIdStore:
    """A :class:`~app.vault.keychain.SecretStore` whose items need Touch ID to read."""

    def __init__(self, security: Any = None, foundation: Any = None, reason: str = "") -> None:
        if security is None:
            if not is_touch_id_platform():
                raise UnlockMethodUnavailableError("Touch ID is only available on macOS.")
            try:
                security = importlib.import_module("Security")
                foundation = importlib.import_module("Foundation")
            except ImportError:
                raise UnlockMethodUnavailableError(
                    "Touch ID needs the pyobjc Security framework, which this build lacks; "
                    "unlock with your passphrase."
                ) from None
        self._security = security
        self._foundation = foundation
        self._reason = reason or "unlock your Hushchat vault"

    def _query(self, service: str, account: str) -> dict[Any, Any]:
        sec = self._security
        return {
            sec.kSecClass: sec.kSecClassGenericPassword,
            sec.kSecAttrService: service,
            sec.kSecAttrAccount: account,
            sec.kSecUseDataProtectionKeychain: True,
        }

    def _data(self, secret: bytes) -> Any:
        if self._foundation is None:
            return secret
        return self._foundation.NSData.dataWithBytes_length_(secret, len(secret))

    def _check(self, status: int, action: str) -> None:
        if status == ERR_SEC_SUCCESS:
            return
        if status == ERR_SEC_MISSING_ENTITLEMENT:
            raise UnlockMethodUnavailableError(
                "Touch ID needs a signed Hushchat build (keychain entitlement missing); "
                "unlock with your passphrase."
            )
        if status == ERR_SEC_ITEM_NOT_FOUND:
            raise NoSecretAvailableError(
                "There is no Touch ID item for this vault on this Mac; unlock with your "
                "passphrase and enrol Touch ID again."
            )
        if status in (ERR_SEC_USER_CANCELED, ERR_SEC_AUTH_FAILED):
            raise NoSecretAvailableError("Touch ID was cancelled or not recognised; try again.")
        raise UnlockMethodUnavailableError(
            f"The macOS keychain refused to {action} the Touch ID item (status {status})."
        )

    def store(self, service: str, account: str, secret: bytes) -> None:
        """Create the biometry-bound item, replacing an old one with the same name."""
        sec = self._security
        access, _error = sec.SecAccessControlCreateWithFlags(
            None,
            sec.kSecAttrAccessibleWhenPasscodeSetThisDeviceOnly,
            sec.kSecAccessControlBiometryCurrentSet,
            None,
        )
        if access is None:
            raise UnlockMethodUnavailableError(
                "This Mac cannot create a Touch ID protected item (no passcode or no "
                "biometry enrolled)."
            )
        self.delete(service, account)
        attributes = self._query(service, account)
        attributes[sec.kSecValueData] = self._data(secret)
        attributes[sec.kSecAttrAccessControl] = access
        status, _ = sec.SecItemAdd(attributes, None)
        self._check(int(status), "store")

    def load(self, service: str, account: str) -> bytes:
        """Read the item; macOS shows the Touch ID sheet with the configured reason."""
        sec = self._security
        query = self._query(service, account)
        query[sec.kSecReturnData] = True
        query[sec.kSecMatchLimit] = sec.kSecMatchLimitOne
        query[sec.kSecUseOperationPrompt] = self._reason
        status, data = sec.SecItemCopyMatching(query, None)
        self._check(int(status), "read")
        if data is None:
            raise NoSecretAvailableError("The Touch ID item is empty; enrol Touch ID again.")
        return bytes(data)

    def delete(self, service: str, account: str) -> None:
        """Delete the item; a missing item is fine."""
        status = int(self._security.SecItemDelete(self._query(service, account)))
        if status not in (ERR_SEC_SUCCESS, ERR_SEC_ITEM_NOT_FOUND):
            self._check(status, "delete")
