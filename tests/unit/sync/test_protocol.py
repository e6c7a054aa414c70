"""The client's copy of the wire format agrees with the server's (field names, types,
required fields), so neither side can drift from the other unnoticed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from app.sync import protocol as client
from sync_server import protocol as server

MODELS = [
    "RecordIn", "RecordOut", "PushRequest", "PushResult", "PushResponse", "ChangesResponse",
    "OidcMeta", "EscrowMeta", "LimitsMeta", "Meta", "Me", "DeviceOut", "DeviceList",
]  # fmt: skip


def _shape(model: type[BaseModel]) -> dict[str, Any]:
    """Field names with their JSON types and whether they are required."""
    schema = model.model_json_schema(mode="serialization")
    shape: dict[str, Any] = {}
    for name, spec in schema["properties"].items():
        kinds = spec.get("anyOf", [spec])
        types = sorted(
            str(kind.get("type") or kind.get("$ref", "").rsplit("/", 1)[-1]) for kind in kinds
        )
        shape[name] = (types, name in schema.get("required", []))
    return shape


@pytest.mark.parametrize("name", MODELS)
def test_client_and_server_models_agree(name: str) -> None:
    assert _shape(getattr(client, name)) == _shape(getattr(server, name))


def test_a_server_answer_parses_on_the_client() -> None:
    record = server.RecordOut(
        id="r1", kind="msg", revision=2, parent_revision=1, deleted=False, key_id="k",
        device_id="dev-00001", size=3, seq=7, updated_at="2026-11-30T00:00:00Z",  # type: ignore[arg-type]
        payload=b"abc",
    )  # fmt: skip
    answer = server.ChangesResponse(changes=[record], cursor=7, has_more=False)
    parsed = client.ChangesResponse.model_validate_json(answer.model_dump_json())
    assert parsed.changes[0].payload == b"abc" and parsed.cursor == 7
    pushed = client.PushRequest(
        records=[client.RecordIn(id="r1", kind="msg", revision=1, key_id="k", payload=b"x")]
    )
    assert (
        server.PushRequest.model_validate_json(pushed.model_dump_json()).records[0].payload == b"x"
    )
