"""Touch ID slot logic around the macOS Security calls, with a fake Security module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.vault import NoSecretAvailableError, UnlockMethodUnavailableError, Vault
from app.vault.touch_id import (
    ERR_SEC_AUTH_FAILED,
    ERR_SEC_ITEM_NOT_FOUND,
    ERR_SEC_MISSING_ENTITLEMENT,
    ERR_SEC_USER_CANCELED,
    TouchIdStore,
    is_touch_id_platform,
)
from tests.peers.vault_fixtures import PASSPHRASE


class FakeSecurity:
    """Just enough of pyobjc's ``Security`` module: constants and four functions."""

    kSecClass = "class"
    kSecClassGenericPassword = "genp"
    kSecAttrService = "svce"
    kSecAttrAccount = "acct"
    kSecUseDataProtectionKeychain = "dpk"
    kSecValueData = "v_Data"
    kSecAttrAccessControl = "accc"
    kSecReturnData = "r_Data"
    kSecMatchLimit = "m_Limit"
    kSecMatchLimitOne = "m_LimitOne"
    kSecUseOperationPrompt = "u_OpPrompt"
    kSecAttrAccessibleWhenPasscodeSetThisDeviceOnly = "akpu"
    kSecAccessControlBiometryCurrentSet = 8

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.read_status = 0
        self.add_status = 0
        self.prompts: list[str] = []
        self.biometry_available = True

    def SecAccessControlCreateWithFlags(
        self, allocator: Any, protection: str, flags: int, error: Any
    ) -> tuple[Any, Any]:
        assert protection == self.kSecAttrAccessibleWhenPasscodeSetThisDeviceOnly
        assert flags == self.kSecAccessControlBiometryCurrentSet
        return ("acl", None) if self.biometry_available else (None, "no biometry")

    def SecItemAdd(self, attributes: dict[str, Any], result: Any) -> tuple[int, Any]:
        assert attributes[self.kSecAttrAccessControl] == "acl"
        assert attributes[self.kSecUseDataProtectionKeychain] is True
        if self.add_status:
            return self.add_status, None
        key = (attributes[self.kSecAttrService], attributes[self.kSecAttrAccount])
        self.items[key] = attributes
        return 0, None

    def SecItemCopyMatching(self, query: dict[str, Any], result: Any) -> tuple[int, Any]:
        self.prompts.append(query[self.kSecUseOperationPrompt])
        if self.read_status:
            return self.read_status, None
        item = self.items.get((query[self.kSecAttrService], query[self.kSecAttrAccount]))
        if item is None:
            return ERR_SEC_ITEM_NOT_FOUND, None
        return 0, item[self.kSecValueData]

    def SecItemDelete(self, query: dict[str, Any]) -> int:
        key = (query[self.kSecAttrService], query[self.kSecAttrAccount])
        return 0 if self.items.pop(key, None) is not None else ERR_SEC_ITEM_NOT_FOUND


@pytest.fixture
def security() -> FakeSecurity:
    return FakeSecurity()


def test_enrol_unlock_remove(unlocked: Vault, security: FakeSecurity) -> None:
    unlocked._touch_id_store = TouchIdStore(security, reason="unlock Hushchat")
    info = unlocked.add_touch_id()
    assert len(security.items) == 1
    unlocked.lock()
    unlocked.unlock_with_touch_id()
    assert not unlocked.is_locked
    assert unlocked.open_tiers == ("standard",)  # Touch ID opens Standard only
    assert security.prompts == ["unlock Hushchat"]
    unlocked.unlock_with_passphrase(PASSPHRASE)  # removing a slot needs a full unlock
    unlocked.remove_slot(info.id)
    assert security.items == {}


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (ERR_SEC_USER_CANCELED, NoSecretAvailableError, "cancelled"),
        (ERR_SEC_AUTH_FAILED, NoSecretAvailableError, "not recognised"),
        (ERR_SEC_MISSING_ENTITLEMENT, UnlockMethodUnavailableError, "signed Hushchat build"),
        (-50, UnlockMethodUnavailableError, "status -50"),
    ],
)
def test_read_failures_are_explained(
    unlocked: Vault,
    profile: Path,
    security: FakeSecurity,
    status: int,
    error: type[Exception],
    message: str,
) -> None:
    unlocked._touch_id_store = TouchIdStore(security)
    unlocked.add_touch_id()
    unlocked.lock()
    security.read_status = status
    with pytest.raises(error, match=message):
        unlocked.unlock_with_touch_id()
    assert unlocked.is_locked


def test_unsigned_build_cannot_enrol(unlocked: Vault, security: FakeSecurity) -> None:
    security.add_status = ERR_SEC_MISSING_ENTITLEMENT
    unlocked._touch_id_store = TouchIdStore(security)
    with pytest.raises(UnlockMethodUnavailableError, match="signed"):
        unlocked.add_touch_id()
    assert [slot.kind for slot in unlocked.slots()] == ["passphrase", "recovery"]


def test_no_biometry_cannot_enrol(unlocked: Vault, security: FakeSecurity) -> None:
    security.biometry_available = False
    unlocked._touch_id_store = TouchIdStore(security)
    with pytest.raises(UnlockMethodUnavailableError, match="biometry"):
        unlocked.add_touch_id()


@pytest.mark.skipif(is_touch_id_platform(), reason="checks the non-macOS refusal")
def test_real_store_refused_off_macos() -> None:
    with pytest.raises(UnlockMethodUnavailableError, match="only available on macOS"):
        TouchIdStore()
