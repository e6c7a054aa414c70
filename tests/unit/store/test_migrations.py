"""Schema migrations: from a blank database and from a fixture of every earlier version."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlcipher3

from app.store.chats import ChatStore
from app.store.migrations import LATEST, MIGRATIONS, SchemaError, current_version, migrate
from app.store.models import Tier

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "store"


def connect() -> sqlcipher3.Connection:
    return sqlcipher3.connect(":memory:", isolation_level=None)


def test_blank_database_reaches_latest_and_records_every_step() -> None:
    conn = connect()
    applied = migrate(conn)
    assert [m.version for m in applied] == list(range(1, LATEST + 1))
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.name) for m in MIGRATIONS]
    assert migrate(conn) == []  # idempotent
    assert current_version(conn) == LATEST


def test_versions_are_numbered_without_gaps_and_named() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert len({m.name for m in MIGRATIONS}) == len(MIGRATIONS)


@pytest.mark.parametrize("version", range(1, LATEST))
def test_fixture_of_each_earlier_version_upgrades_with_data_intact(version: int) -> None:
    fixture = FIXTURES / f"schema_v{version}.sql"
    assert fixture.exists(), f"add {fixture.name}: a dump of a version-{version} database"
    conn = connect()
    conn.executescript(fixture.read_text(encoding="utf-8"))
    assert current_version(conn) == version
    migrate(conn)
    assert current_version(conn) == LATEST
    store = ChatStore(conn, Tier.STANDARD)
    (chat,) = store.list_chats()
    assert chat.title == "Fixture chat"
    thread = store.full_thread(chat.id)
    assert [m.content for m in thread] == ["What is a fixture?", "A saved earlier state."]
    assert thread[1].versions == 2
    # The search index covers rows written before it existed.
    assert {hit.message_id for hit in store.search("fixture")} >= {thread[0].id}


def test_newer_schema_is_refused() -> None:
    conn = connect()
    migrate(conn)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (LATEST + 1,))
    with pytest.raises(SchemaError, match="newer than this Hushchat understands"):
        migrate(conn)


def test_failed_migration_leaves_database_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.store import migrations

    conn = connect()
    migrate(conn, target=1)
    broken = (*MIGRATIONS[:1], migrations.Migration(2, "broken", "CREATE TABLE x (a);\nNOPE;"))
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    monkeypatch.setattr(migrations, "LATEST", 2)
    with pytest.raises(SchemaError, match="the database is unchanged"):
        migrations.migrate(conn)
    assert current_version(conn) == 1
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'x'").fetchone()
