"""Wire models and the push decision rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sync_server.models import Record
from sync_server.protocol import PushRequest, RecordIn, RecordOut
from sync_server.records import _decide


def _stored(revision: int = 2, *, deleted: bool = False, kind: str = "chat") -> Record:
    return Record(
        account_id="a",
        record_id="r",
        kind=kind,
        revision=revision,
        parent_revision=revision - 1 or None,
        deleted=deleted,
        key_id="k",
        device_id="d",
        size=1,
        payload=b"x",
        seq=1,
        updated_at=datetime.now(UTC),
    )


def _incoming(revision: int, parent: int | None, **kw: object) -> RecordIn:
    return RecordIn.model_validate(
        {
            "id": "r",
            "kind": "chat",
            "revision": revision,
            "parent_revision": parent,
            "key_id": "k",
            "payload": "eA==",
            **kw,
        }
    )


@pytest.mark.parametrize(
    ("stored", "incoming", "status"),
    [
        (None, _incoming(1, None), "saved"),
        (None, _incoming(2, 1), "conflict"),
        (_stored(2), _incoming(3, 2), "saved"),
        (_stored(2), _incoming(3, 1), "conflict"),
        (_stored(2), _incoming(2, 1), "saved"),  # identical re-push
        (_stored(2), _incoming(2, 1, payload="eQ=="), "conflict"),
        (_stored(2), _incoming(3, 2, kind="message"), "rejected"),
        (_stored(2, deleted=True), _incoming(3, 2), "rejected"),
        (_stored(2, deleted=True), _incoming(3, 2, deleted=True), "saved"),
        (_stored(2), _incoming(2, 2), "rejected"),
    ],
)
def test_decisions(stored: Record | None, incoming: RecordIn, status: str) -> None:
    assert _decide(stored, incoming).status == status


def test_base64_payload_round_trip() -> None:
    record = _incoming(1, None, payload="AAEC")
    assert record.payload == b"\x00\x01\x02"
    out = RecordOut(
        id="r",
        kind="chat",
        revision=1,
        parent_revision=None,
        deleted=False,
        key_id="k",
        device_id="d",
        size=3,
        seq=1,
        updated_at=datetime.now(UTC),
        payload=b"\x00\x01\x02",
    )
    assert out.model_dump(mode="json")["payload"] == "AAEC"


@pytest.mark.parametrize(
    "change",
    [{"payload": "***"}, {"revision": 0}, {"id": ""}, {"kind": "Bad Kind"}, {"extra": 1}],
)
def test_invalid_records(change: dict[str, object]) -> None:
    body = {"id": "r", "kind": "chat", "revision": 1, "key_id": "k", "payload": "eA=="}
    with pytest.raises(ValidationError):
        RecordIn.model_validate({**body, **change})


def test_empty_batch_refused() -> None:
    with pytest.raises(ValidationError):
        PushRequest.model_validate({"records": []})
