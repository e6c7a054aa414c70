"""Settings: required secrets named, placeholders refused, ``_FILE`` variants, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_server.errors import ConfigError
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HUSHCHAT_SYNC_"):
            monkeypatch.delenv(name)


def _secrets() -> dict[str, str]:
    return {name.lower(): value for name, value in generate_secrets().items()}


def test_missing_secrets_are_named() -> None:
    problems = Settings().problems()
    text = " ".join(problems)
    for name in ("SECRET_KEY", "ESCROW_KEK", "ESCROW_PRIVATE_KEY"):
        assert f"HUSHCHAT_SYNC_{name}" in text
    with pytest.raises(ConfigError, match="HUSHCHAT_SYNC_SECRET_KEY"):
        Settings().ensure_startable()


@pytest.mark.parametrize("value", ["change-me", "secret", "short-but-random-ish"])
def test_placeholder_secret_refused(value: str) -> None:
    settings = Settings(**{**_secrets(), "secret_key": value})
    assert any("SECRET_KEY" in p for p in settings.problems())


def test_generated_secrets_are_enough() -> None:
    settings = Settings(**_secrets())
    assert settings.problems() == []
    assert settings.is_sqlite
    assert settings.effective_database_url.endswith("hushchat-sync.sqlite3")
    assert settings.warnings()  # nobody can sign in yet


def test_bad_kek_and_oidc_settings() -> None:
    settings = Settings(
        **{**_secrets(), "escrow_kek": "not base64!!"},
        oidc_issuer="http://idp.example.org/",
        oidc_algorithms=["HS256"],
    )
    text = " ".join(settings.problems())
    assert "ESCROW_KEK" in text
    assert "OIDC_AUDIENCE" in text and "OIDC_CLIENT_ID" in text
    assert "https://" in text
    assert "HS256" in text


def test_loopback_http_issuer_allowed() -> None:
    settings = Settings(
        **_secrets(),
        oidc_issuer="http://127.0.0.1:9000",
        oidc_audience="a",
        oidc_client_id="c",
    )
    assert settings.problems() == []


def test_local_accounts_need_smtp() -> None:
    settings = Settings(**_secrets(), local_accounts_enabled=True)
    assert any("SMTP_HOST" in p for p in settings.problems())


def test_file_variants_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = generate_secrets()
    kek_file = tmp_path / "kek"
    kek_file.write_text(values["ESCROW_KEK"] + "\n")
    monkeypatch.setenv("HUSHCHAT_SYNC_ESCROW_KEK_FILE", str(kek_file))
    monkeypatch.setenv("HUSHCHAT_SYNC_SECRET_KEY", values["SECRET_KEY"])
    env_file = tmp_path / "server.env"
    env_file.write_text(f"HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY={values['ESCROW_PRIVATE_KEY']}\n")
    settings = load_settings(env_file)
    assert settings.problems() == []
    assert settings.escrow_kek is not None
    assert settings.escrow_kek.get_secret_value() == values["ESCROW_KEK"]
    assert values["SECRET_KEY"] not in repr(settings)


def test_unreadable_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUSHCHAT_SYNC_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="SECRET_KEY_FILE"):
        load_settings()


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "server.md").read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"HUSHCHAT_SYNC_{name.upper()}" in doc, name


def test_server_needs_only_the_public_key() -> None:
    values = _secrets()
    public_only = Settings(
        secret_key=values["secret_key"], escrow_public_key=values["escrow_public_key"]
    )
    assert public_only.problems() == []
    assert not any("ESCROW_PRIVATE_KEY" in w for w in public_only.warnings())
    assert any("ESCROW_PRIVATE_KEY" in p for p in public_only.escrow_process_problems())
    # An older set-up (private key and KEK, no public key) still starts, with a warning.
    legacy = Settings(
        secret_key=values["secret_key"],
        escrow_kek=values["escrow_kek"],
        escrow_private_key=values["escrow_private_key"],
    )
    assert legacy.problems() == []
    assert any("escrow process" in w for w in legacy.warnings())
    assert legacy.escrow_process_problems() == []
    bad = Settings(secret_key=values["secret_key"], escrow_public_key="AAAA")
    assert any("ESCROW_PUBLIC_KEY" in p for p in bad.problems())
