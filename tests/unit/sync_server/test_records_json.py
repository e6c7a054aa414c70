"""The push/pull answers are serialised from plain dicts (fast path); they must be exactly
the JSON the wire models (``sync_server.protocol``) would produce."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from sync_server import records
from sync_server.protocol import ChangesResponse, PushResponse, RecordIn, RecordOut


def _stored(n: int) -> records._Stored:
    moment = datetime(2026, 11, 25, 1, 2, 3, n * 7919 % 1_000_000, tzinfo=UTC)
    return records._Stored(
        record_id=f"rec-{n}",
        kind="message" if n % 2 else "chat",
        revision=n + 1,
        parent_revision=n if n % 3 else None,
        deleted=n % 5 == 0,
        key_id="key:1",
        device_id="device-0001",
        size=n,
        seq=2**53 - 1 - n,
        updated_at=moment if n % 4 else moment.replace(microsecond=0) + timedelta(days=n),
        payload=os.urandom(n),
    )


def _model(stored: records._Stored) -> RecordOut:
    return RecordOut(
        id=stored.record_id,
        kind=stored.kind,
        revision=stored.revision,
        parent_revision=stored.parent_revision,
        deleted=stored.deleted,
        key_id=stored.key_id,
        device_id=stored.device_id,
        size=stored.size,
        seq=stored.seq,
        updated_at=stored.updated_at,
        payload=stored.payload,
    )


def test_changes_json_matches_the_model() -> None:
    stored = [_stored(n) for n in range(40)]
    rows = [
        (
            s.record_id,
            s.kind,
            s.revision,
            s.parent_revision,
            s.deleted,
            s.key_id,
            s.device_id,
            s.size,
            s.seq,
            s.updated_at,
            s.payload,
        )
        for s in stored
    ]
    fast = records._json(
        {"changes": records._page(rows), "cursor": 17, "has_more": True, "recoveries": []}
    )
    model = ChangesResponse(changes=[_model(s) for s in stored], cursor=17, has_more=True)
    assert fast == model.model_dump_json().encode()
    moment = datetime(2026, 11, 30, 9, 8, 7, 123456, tzinfo=UTC)
    recovery: records._RecoveryJson = {
        "id": "r" * 32,
        "status": "ready",
        "device_id": "device-0002",
        "created_at": moment,
        "not_before": moment + timedelta(days=1),
        "expires_at": moment + timedelta(days=8),
    }
    fast = records.changes_json([], 5, 10, [recovery])
    model = ChangesResponse.model_validate(
        {"changes": [], "cursor": 5, "has_more": False, "recoveries": [recovery]}
    )
    assert fast == model.model_dump_json().encode()
    assert b'"status":"ready"' in fast
    assert [records._out(s) for s in stored] == records._page(rows)


def test_push_json_matches_the_model() -> None:
    stored = _stored(3)
    incoming = RecordIn(id="rec-3", kind="message", revision=9, key_id="k", payload=b"x")
    results = [
        records._result(incoming, "saved", seq=5),
        records._result(incoming, "saved", seq=4, duplicate=True),
        records._result(
            incoming, "conflict", reason="stale parent", server_record=records._out(stored)
        ),
        records._result(incoming, "aborted", reason=None),
    ]
    fast = records._json({"applied": False, "results": results, "cursor": 5})
    model = PushResponse.model_validate(
        {
            "applied": False,
            "cursor": 5,
            "results": [
                {**r, "server_record": _model(stored) if r["server_record"] else None}
                for r in results
            ],
        }
    )
    assert fast == model.model_dump_json().encode()
