"""Fixtures for the vault tests (unit and integration): one vault per session, copied per test.

Every vault uses the Argon2id floor (64 MiB, t=3, p=4): the real minimum the code accepts,
about 0.2 s per derivation, so tests stay quick without any test-only weakening.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.vault import FLOOR_PARAMS, RecoveryCode, Vault

PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class TemplateVault:
    """A closed vault on disk, its passphrase and its recovery code."""

    path: Path
    passphrase: str
    recovery_code: RecoveryCode


@pytest.fixture(scope="session")
def template_vault(tmp_path_factory: pytest.TempPathFactory) -> TemplateVault:
    path = tmp_path_factory.mktemp("template") / "profile"
    vault, code = Vault.create(path, PASSPHRASE, kdf=FLOOR_PARAMS)
    vault.close()
    return TemplateVault(path, PASSPHRASE, code)


@pytest.fixture
def profile(template_vault: TemplateVault, tmp_path: Path) -> Path:
    """A fresh copy of the template vault's profile directory."""
    target = tmp_path / "profile"
    shutil.copytree(template_vault.path, target)
    return target


@pytest.fixture
def unlocked(profile: Path, template_vault: TemplateVault) -> Iterator[Vault]:
    vault = Vault.open(profile)
    vault.unlock_with_passphrase(template_vault.passphrase)
    yield vault
    vault.close()


def snapshot(profile: Path) -> dict[str, bytes]:
    """Every file of a profile, by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(profile.iterdir()) if p.is_file()}
