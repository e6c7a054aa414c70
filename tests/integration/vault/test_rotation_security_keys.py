"""Key rotation with security keys (the software CTAP2 authenticator, the real client):
keys touched again are kept under a fresh salt, the others are dropped, and an old copy
of vault.json with an enrolled key opens nothing current."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.tiers import Tier
from app.vault import DatabaseDamagedError, SecurityKey, Vault, WrongSecretError
from tests.peers.fido2_authenticator import SoftwareAuthenticator
from tests.peers.vault_fixtures import PASSPHRASE


class Prompts:
    def prompt_touch(self) -> None:
        pass

    def request_pin(self) -> str | None:
        return None


def _key(device: SoftwareAuthenticator) -> SecurityKey:
    return SecurityKey.from_device(device, Prompts())


def test_touched_keys_are_kept_and_the_others_dropped(
    unlocked: Vault, profile: Path, tmp_path: Path
) -> None:
    blue, spare, stranger = (
        SoftwareAuthenticator(),
        SoftwareAuthenticator(),
        SoftwareAuthenticator(),
    )
    kept = unlocked.add_security_key(_key(blue), label="Blue key")
    gone = unlocked.add_security_key(_key(spare), label="Spare key")
    old_json = (profile / "vault.json").read_bytes()
    old_salt = next(s for s in unlocked._slot_file.slots if s.id == kept.id).salt

    with pytest.raises(WrongSecretError, match="not enrolled"):
        unlocked.touch_security_key(_key(stranger))
    touches = blue.touches
    touched = unlocked.touch_security_key(_key(blue))
    assert blue.touches == touches + 1
    assert touched.slot_id == kept.id
    assert "hidden" in repr(touched)
    preview = unlocked.rotation_drops(keep_passphrase=True, touched=[touched.slot_id])
    assert [slot.id for slot in preview] == [gone.id]

    rotation = unlocked.rotate_keys(passphrase=PASSPHRASE, touched=[touched])
    assert [slot.id for slot in rotation.dropped] == [gone.id]
    kinds = [slot.kind for slot in rotation.slots]
    assert kinds == ["passphrase", "recovery", "security-key"]
    renewed = next(s for s in unlocked._slot_file.slots if s.kind == "security-key")
    assert renewed.label == "Blue key"
    assert renewed.salt != old_salt  # a fresh PRF salt: the old output is worthless
    unlocked.lock()

    unlocked.unlock_with_security_key(_key(blue))
    assert unlocked.open_tiers == (Tier.STANDARD, Tier.PRIVATE)
    unlocked.lock()
    with pytest.raises(WrongSecretError, match="not enrolled"):
        unlocked.unlock_with_security_key(_key(spare))
    unlocked.close()

    # An old vault.json copy with a key that was enrolled then: it opens nothing current.
    for device in (blue, spare):
        attacker = tmp_path / "attacker"
        shutil.copytree(profile, attacker, ignore=shutil.ignore_patterns("vault.lock"))
        (attacker / "vault.json").write_bytes(old_json)
        with Vault.open(attacker) as vault:
            vault.unlock_with_security_key(_key(device))
            for tier in (Tier.STANDARD, Tier.PRIVATE):
                with pytest.raises(DatabaseDamagedError):
                    vault.connect(tier)
        shutil.rmtree(attacker)
