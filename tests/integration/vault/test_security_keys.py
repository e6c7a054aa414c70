"""FIDO2 security-key slots against the software CTAP2 authenticator, via the real client."""

from __future__ import annotations

from pathlib import Path

import pytest
from fido2.client import Fido2Client
from fido2.ctap2 import Ctap2

from app.vault import NoSecretAvailableError, SecurityKey, Vault, WrongSecretError
from app.vault.security_key import RP_ID, _ClientData, _Interaction
from tests.peers.fido2_authenticator import SoftwareAuthenticator
from tests.peers.vault_fixtures import TemplateVault, snapshot


class Prompts:
    """Records what the UI would have shown."""

    def __init__(self, pin: str | None = None) -> None:
        self.pin = pin
        self.touch_prompts = 0
        self.pin_requests = 0

    def prompt_touch(self) -> None:
        self.touch_prompts += 1

    def request_pin(self) -> str | None:
        self.pin_requests += 1
        return self.pin


def _key(device: SoftwareAuthenticator, prompts: Prompts | None = None) -> SecurityKey:
    return SecurityKey.from_device(device, prompts or Prompts())


def test_enrol_two_keys_unlock_with_each_remove_one(unlocked: Vault, profile: Path) -> None:
    first, second = SoftwareAuthenticator(), SoftwareAuthenticator()
    prompts = Prompts()
    slot_one = unlocked.add_security_key(_key(first, prompts), label="Blue key")
    slot_two = unlocked.add_security_key(_key(second), label="Backup key")
    assert prompts.touch_prompts == 2  # make credential + first PRF evaluation
    assert slot_one.id != slot_two.id
    assert [s.kind for s in unlocked.slots()].count("security-key") == 2
    unlocked.lock()

    for device in (first, second):
        touches = device.touches
        unlocked.unlock_with_security_key(_key(device))
        assert not unlocked.is_locked
        assert device.touches == touches + 1
        unlocked.lock()

    unlocked.unlock_with_passphrase("correct horse battery staple")
    unlocked.remove_slot(slot_one.id)
    unlocked.lock()
    before = snapshot(profile)
    with pytest.raises(WrongSecretError, match="not enrolled"):
        unlocked.unlock_with_security_key(_key(first))
    assert snapshot(profile) == before
    unlocked.unlock_with_security_key(_key(second))
    assert not unlocked.is_locked


def test_unknown_key_fails_and_changes_nothing(unlocked: Vault, profile: Path) -> None:
    unlocked.add_security_key(_key(SoftwareAuthenticator()))
    unlocked.lock()
    before = snapshot(profile)
    with pytest.raises(WrongSecretError, match="not enrolled"):
        unlocked.unlock_with_security_key(_key(SoftwareAuthenticator()))
    assert unlocked.is_locked
    assert snapshot(profile) == before


def test_no_security_key_slot(unlocked: Vault) -> None:
    unlocked.lock()
    with pytest.raises(NoSecretAvailableError, match="no security-key slot"):
        unlocked.unlock_with_security_key(_key(SoftwareAuthenticator()))


def test_touch_refused(unlocked: Vault, profile: Path) -> None:
    device = SoftwareAuthenticator()
    unlocked.add_security_key(_key(device))
    unlocked.lock()
    device.touch = lambda: False
    before = snapshot(profile)
    with pytest.raises(NoSecretAvailableError, match="refused or timed out"):
        unlocked.unlock_with_security_key(_key(device))
    assert snapshot(profile) == before


def test_pin_protected_key_uses_uv_secret(unlocked: Vault, profile: Path) -> None:
    device = SoftwareAuthenticator(pin="4711")
    prompts = Prompts(pin="4711")
    info = unlocked.add_security_key(_key(device, prompts))
    assert "with PIN" in info.detail
    assert prompts.pin_requests >= 1
    unlocked.lock()

    unlocked.unlock_with_security_key(_key(device, Prompts(pin="4711")))
    assert not unlocked.is_locked
    unlocked.lock()

    before = snapshot(profile)
    with pytest.raises(WrongSecretError, match="PIN is wrong"):
        unlocked.unlock_with_security_key(_key(device, Prompts(pin="0000")))
    with pytest.raises(NoSecretAvailableError, match="needs its PIN"):
        unlocked.unlock_with_security_key(_key(device, Prompts(pin=None)))
    assert unlocked.is_locked
    assert snapshot(profile) == before


def test_hmac_secret_differs_with_and_without_user_verification() -> None:
    device = SoftwareAuthenticator(pin="4711")
    key = _key(device, Prompts(pin="4711"))
    credential = key.enrol(user_id=b"u" * 16, user_name="test")
    salt = b"\x07" * 32
    verified = key.evaluate({credential: salt}, user_verification=True)
    unverified = key.evaluate({credential: salt}, user_verification=False)
    assert verified.user_verified and not unverified.user_verified
    assert verified.output != unverified.output
    assert key.evaluate({credential: salt}, user_verification=True).output == verified.output
    assert key.evaluate({credential: b"\x08" * 32}, user_verification=True).output != (
        verified.output
    )


def test_all_zero_prf_output_is_refused(unlocked: Vault) -> None:
    with pytest.raises(WrongSecretError, match="all-zero"):
        unlocked.add_security_key(_key(SoftwareAuthenticator(zero_prf=True)))
    assert [s.kind for s in unlocked.slots()] == ["passphrase", "recovery"]


def test_key_without_hmac_secret_is_refused(unlocked: Vault) -> None:
    with pytest.raises(WrongSecretError, match="PRF"):
        unlocked.add_security_key(_key(SoftwareAuthenticator(hmac_secret=False)))


def test_each_slot_has_its_own_salt_and_credential(unlocked: Vault) -> None:
    device = SoftwareAuthenticator()
    unlocked.add_security_key(_key(device))
    unlocked.add_security_key(_key(device))
    slots = unlocked._slot_file.slots_of("security-key")
    assert len({s.salt for s in slots}) == 2
    assert len({s.credential_id for s in slots}) == 2
    assert all(len(s.salt) == 32 and s.params["rp_id"] == RP_ID for s in slots)


def test_authenticator_speaks_ctap2_to_the_real_client() -> None:
    device = SoftwareAuthenticator(pin="1234")
    info = Ctap2(device).get_info()
    assert "hmac-secret" in info.extensions
    assert info.options["clientPin"] is True
    client = Fido2Client(device, _ClientData(), _Interaction(Prompts(pin="1234")))
    assert client.info.aaguid == info.aaguid


def test_template_fixture_is_reusable(template_vault: TemplateVault) -> None:
    assert (template_vault.path / "vault.json").exists()


def test_discover_uses_the_first_hid_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.vault import security_key

    device = SoftwareAuthenticator()
    monkeypatch.setattr(security_key.sys, "platform", "linux")
    monkeypatch.setattr(security_key, "_hid_devices", lambda: iter([device]))
    key = SecurityKey.discover(Prompts())
    assert key.enrol(user_id=b"u" * 16, user_name="t")
    assert device.touches == 1


def test_discover_without_any_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.vault import security_key

    monkeypatch.setattr(security_key.sys, "platform", "linux")
    monkeypatch.setattr(security_key, "_hid_devices", lambda: iter(()))
    with pytest.raises(NoSecretAvailableError, match="No FIDO2 security key was found"):
        SecurityKey.discover(Prompts())


def test_discover_prefers_windows_hello_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from app.vault import security_key

    created: list[object] = []

    class FakeWindowsClient:
        def __init__(self, collector: object) -> None:
            created.append(collector)

        @staticmethod
        def is_available() -> bool:
            return True

    fake_module = types.ModuleType("fido2.client.windows")
    fake_module.WindowsClient = FakeWindowsClient  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fido2.client.windows", fake_module)
    monkeypatch.setattr(security_key.sys, "platform", "win32")
    key = SecurityKey.discover(Prompts())
    assert key.description == "Windows Hello"
    assert isinstance(created[0], _ClientData)
