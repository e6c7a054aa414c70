"""A chat's model parameters: stored with the chat (migration 5), updated, copied whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlcipher3

from app.store.chats import ChatStore
from app.store.migrations import LATEST, current_version, migrate
from app.store.models import ChatParams, ChatRecord, Tier

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "store"
PARAMS = ChatParams(temperature=0.3, top_p=0.9, max_tokens=64, context_size=2048, stop=("END",))


def connect() -> sqlcipher3.Connection:
    return sqlcipher3.connect(":memory:", isolation_level=None)


def test_a_blank_database_stores_and_reads_back_parameters() -> None:
    store = ChatStore(connect(), Tier.STANDARD)
    chat = store.create_chat()
    assert chat.params == ChatParams() and chat.params.is_default
    updated = store.update_chat(chat.id, params=PARAMS)
    assert updated.params == PARAMS
    assert store.chat(chat.id).params == PARAMS
    assert store.create_chat(params=PARAMS).params == PARAMS


def test_a_version_4_database_upgrades_with_default_parameters_and_syncs_them() -> None:
    conn = connect()
    conn.executescript((FIXTURES / "schema_v4.sql").read_text(encoding="utf-8"))
    assert current_version(conn) == 4
    migrate(conn)
    assert current_version(conn) == LATEST
    store = ChatStore(conn, Tier.STANDARD)
    assert store.chat("c1").params == ChatParams()
    assert store.chat("c1").title == "Fixture chat"
    conn.execute("UPDATE sync_records SET dirty = 0")
    store.update_chat("c1", params=PARAMS)
    # The recreated trigger marks the chat record for sync when only the parameters change.
    dirty = conn.execute("SELECT record_id FROM sync_records WHERE dirty = 1").fetchall()
    assert dirty == [("chat:c1",)]


def test_moves_and_imports_keep_the_parameters() -> None:
    source = ChatStore(connect(), Tier.STANDARD)
    chat = source.create_chat(params=PARAMS)
    target = ChatStore(connect(), Tier.PRIVATE)
    target.insert_records([source.record(chat.id)])
    assert target.chat(chat.id).params == PARAMS


def test_update_refuses_parameters_that_are_not_chat_params() -> None:
    store = ChatStore(connect(), Tier.STANDARD)
    chat = store.create_chat()
    with pytest.raises(TypeError):
        store.update_chat(chat.id, params={"temperature": 1.0})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"temperature": 0.7}, ChatParams(temperature=0.7)),
        ({"temperature": 3}, ChatParams()),  # out of range
        ({"top_p": 0}, ChatParams()),  # top-p must be above 0
        ({"max_tokens": True}, ChatParams()),  # a bool is not a count
        ({"max_tokens": -1, "context_size": 0}, ChatParams()),
        ({"stop": ["a", "", 3, "b"]}, ChatParams(stop=("a", "b"))),
        ({"stop": "END"}, ChatParams()),
        ({"seed": 4, "temperature": 1}, ChatParams(temperature=1.0)),  # unknown: ignored
        ("not an object", ChatParams()),
    ],
)
def test_stored_or_synced_values_are_checked_on_reading(data: object, expected: ChatParams) -> None:
    assert ChatParams.from_json(data) == expected


def test_json_holds_only_what_is_set_and_round_trips() -> None:
    assert ChatParams().to_json() == {}
    assert ChatParams(stop=()).to_json() == {"stop": []}
    assert ChatParams.from_json(PARAMS.to_json()) == PARAMS
    assert ChatParams.from_text(PARAMS.to_text()) == PARAMS
    assert ChatParams.from_text("{not json") == ChatParams()


def test_a_record_without_parameters_is_inserted_with_defaults() -> None:
    source = ChatStore(connect(), Tier.STANDARD)
    chat = source.create_chat()
    record = source.record(chat.id)
    target = ChatStore(connect(), Tier.STANDARD)
    target.insert_records([ChatRecord(record.chat, record.messages)])
    assert target.chat(chat.id).params.is_default


def test_read_aloud_is_kept_with_the_parameters_and_written_only_when_on() -> None:
    """The window's auto-read rides in ``chats.params`` (synced with the chat record, no
    migration); an older version ignores the key, a malformed value reads as off."""
    on = ChatParams(temperature=0.3, read_aloud=True)
    assert on.to_json() == {"temperature": 0.3, "read_aloud": True}
    assert ChatParams.from_text(on.to_text()) == on
    assert ChatParams(read_aloud=None).to_json() == {}
    assert ChatParams(read_aloud=False).to_json() == {}
    for odd in ("yes", 1, None, [True]):
        assert ChatParams.from_json({"read_aloud": odd}).read_aloud is None
    assert not ChatParams(read_aloud=True).is_default
    store = ChatStore(connect(), Tier.STANDARD)
    chat = store.update_chat(store.create_chat().id, params=on)
    assert store.chat(chat.id).params.read_aloud is True
