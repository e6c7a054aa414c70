"""What synced records hold, and how two versions of a chat's settings merge.

Record ids and kinds (fixed; the server sees them, never the contents)::

    keys              kind "keys"      the account's sync keys (``app.sync.crypto``)
    rotate:<key id>   kind "rotation"  a tier's next sync key, sealed under the old one
    chatkey:<chat>    kind "chatkey"   the chat's key, wrapped by its tier's sync key
    chat:<chat>       kind "chat"      title, system prompt, memory, provider, model,
                                       pinned, shown version, model parameters,
                                       created/updated times
    msg:<message>     kind "message"   one final message (never a half-streamed one)
    att:<attachment>  kind "attachment"       an attachment's metadata: its message, name,
                                              media type, size, sha256, number of parts
    attpart:<attachment>:<n>
                      kind "attachment_part"  part ``n`` of its bytes (``PART_SIZE`` each)
    pair:<n>:<step>   kind "pair"      the relay of a device link (``app.sync.pairing``):
                                       not synced data; the engine skips it (at debug
                                       level: ``_QuietPairingSkips``)

A chat's settings merge field by field: each field carries the hybrid logical clock
(HLC) of its last change, the later change wins; for the title a user's title beats an
automatic one whatever the clocks say. A message never changes once final, so messages
merge as a union; a deleted chat (its tombstone) beats any edit.

Records stay readable both ways between versions. A field added later (``params``, the
chat's model parameters, since store version 5) is optional: a record from an older
device lacks it and reads as its default with no clock, so any value set here wins; an
older device keeps the field it does not know in the record's values as it found them
(its checks and merge cover only the fields it knows), and the field's clock keeps a
stale copy from winning later.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from app.store.models import ChatParams
from app.sync.crypto import RecordTamperedError

__all__ = [
    "CHAT_FIELDS",
    "FINAL_STATUSES",
    "ChatState",
    "Hlc",
    "attachment_values",
    "chat_values",
    "decode_body",
    "decode_part",
    "encode_body",
    "encode_part",
    "is_pairing_record",
    "kind_of",
    "message_values",
    "part_record_id",
    "split_part_record_id",
]

KINDS: Final = {
    "keys": "keys",
    "rotate": "rotation",
    "chatkey": "chatkey",
    "chat": "chat",
    "msg": "message",
    "att": "attachment",
    "attpart": "attachment_part",
}

# The merged fields of a chat ("title" carries the title and where it came from).
# Every record carries these; older versions refuse a record that lacks one.
REQUIRED_CHAT_FIELDS: Final = (
    "title",
    "system_prompt",
    "memory",
    "provider",
    "model",
    "pinned",
    "active_leaf_id",
)
# Fields added later, with the value a record that lacks them (from an older device) has.
OPTIONAL_CHAT_FIELDS: Final[dict[str, Any]] = {"params": {}}
CHAT_FIELDS: Final = (*REQUIRED_CHAT_FIELDS, *OPTIONAL_CHAT_FIELDS)
_TITLE_RANK: Final = {"default": 0, "auto": 1, "user": 2}


def kind_of(record_id: str) -> str | None:
    """The kind a record id must have (None: not one of ours)."""
    prefix = record_id.split(":", 1)[0]
    return KINDS.get(prefix)


PAIRING_PREFIX: Final = "pair"


def is_pairing_record(record_id: str) -> bool:
    """Whether a record id is one of a device link's relay records (``pair:…``)."""
    return record_id.split(":", 1)[0] == PAIRING_PREFIX


def encode_body(value: Mapping[str, Any]) -> bytes:
    return json.dumps(
        dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def decode_body(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RecordTamperedError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise RecordTamperedError(f"{what} is not a JSON object")
    return value


class Hlc:
    """A hybrid logical clock: ``<ms>:<counter>:<node>`` strings that sort in time order,
    stay ahead of every clock observed, and never tie between two devices."""

    def __init__(self, node: str, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self._clock = clock
        self._ms = 0
        self._counter = 0

    def tick(self) -> str:
        now = int(self._clock() * 1000)
        if now > self._ms:
            self._ms, self._counter = now, 0
        else:
            self._counter += 1
        return f"{self._ms:015d}:{self._counter:06d}:{self.node}"

    def observe(self, stamp: str) -> None:
        """Move past a clock seen on another device."""
        try:
            ms_text, counter_text, _node = stamp.split(":", 2)
            ms, counter = int(ms_text), int(counter_text)
        except ValueError:
            return
        if (ms, counter) > (self._ms, self._counter):
            self._ms, self._counter = ms, counter


def chat_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The merged fields of a chat row (see ``SyncState.chat_row``)."""
    return {
        "title": [row["title"], row["title_source"]],
        "system_prompt": row["system_prompt"],
        "memory": row["memory"],
        "provider": row["provider"],
        "model": row["model"],
        "pinned": bool(row["pinned"]),
        "active_leaf_id": row["active_leaf_id"],
        "params": _params(row.get("params")),
    }


def _params(value: Any) -> dict[str, Any]:
    """A chat's parameters as the record holds them (a JSON object; see ``ChatParams``)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = {}
    return ChatParams.from_json(value).to_json()


def _same(name: str, mine: Any, theirs: Any) -> bool:
    if name == "params":  # a newer device's extra parameters are not a local change
        return _params(mine) == _params(theirs)
    return bool(mine == theirs)


@dataclass
class ChatState:
    """A chat's settings as last merged: values, their clocks, and the times."""

    values: dict[str, Any] = field(default_factory=dict)
    clocks: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "clocks": self.clocks,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChatState:
        values, clocks = data.get("values", {}), data.get("clocks", {})
        if not isinstance(values, dict) or not isinstance(clocks, dict):
            raise RecordTamperedError("a chat record's fields are malformed")
        state = cls(dict(values), {str(k): str(v) for k, v in clocks.items()})
        try:
            state.created_at = float(data.get("created_at", 0.0))
            state.updated_at = float(data.get("updated_at", 0.0))
        except (TypeError, ValueError):
            raise RecordTamperedError("a chat record's times are malformed") from None
        for name in REQUIRED_CHAT_FIELDS:
            if name not in state.values:
                raise RecordTamperedError(f"a chat record lacks its {name}")
        for name, default in OPTIONAL_CHAT_FIELDS.items():
            state.values.setdefault(name, copy.deepcopy(default))  # from an older device: no clock
        title = state.values["title"]
        if (
            not isinstance(title, list)
            or len(title) != 2
            or not isinstance(title[0], str)
            or title[1] not in _TITLE_RANK
        ):
            raise RecordTamperedError("a chat record's title is malformed")
        return state

    def fold_local(self, row: Mapping[str, Any], hlc: Hlc) -> bool:
        """Take the chat row's current values; a changed field gets a new clock.
        Returns whether anything changed."""
        current = chat_values(row)
        changed = False
        for name in CHAT_FIELDS:
            if name not in self.values or not _same(name, self.values[name], current[name]):
                self.values[name] = current[name]
                self.clocks[name] = hlc.tick()
                changed = True
        self.created_at = self.created_at or float(row["created_at"])
        self.updated_at = max(self.updated_at, float(row["updated_at"]))
        return changed

    def merge(self, remote: ChatState) -> tuple[set[str], bool]:
        """Merge ``remote`` into this state. Returns the fields that took the remote
        value, and whether this side still has something the remote lacks."""
        taken: set[str] = set()
        local_ahead = False
        for name in CHAT_FIELDS:
            mine, theirs = self._key(name), remote._key(name)
            if theirs > mine:
                if self.values.get(name) != remote.values[name]:
                    taken.add(name)
                self.values[name] = remote.values[name]
                self.clocks[name] = remote.clocks.get(name, "")
            elif mine > theirs:
                local_ahead = True
        if remote.created_at and (not self.created_at or remote.created_at < self.created_at):
            self.created_at = remote.created_at
        self.updated_at = max(self.updated_at, remote.updated_at)
        return taken, local_ahead

    def _key(self, name: str) -> tuple[Any, ...]:
        clock = self.clocks.get(name, "")
        value = self.values.get(name)
        tiebreak = json.dumps(value, sort_keys=True)
        if name == "title":
            rank = _TITLE_RANK.get(value[1], -1) if isinstance(value, list) else -1
            return (rank, clock, tiebreak)
        return (clock, tiebreak)

    def row_values(self, chat_id: str) -> dict[str, Any]:
        """The values ``SyncState.write_chat`` takes."""
        title, source = self.values["title"]
        return {
            "id": chat_id,
            "title": str(title)[:200],
            "title_source": source,
            "system_prompt": str(self.values["system_prompt"]),
            "memory": str(self.values["memory"]),
            "provider": _optional_str(self.values["provider"]),
            "model": _optional_str(self.values["model"]),
            "pinned": bool(self.values["pinned"]),
            "active_leaf_id": _optional_str(self.values["active_leaf_id"]),
            "params": _params(self.values.get("params")),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


_MESSAGE_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "id": (str,),
    "chat_id": (str,),
    "parent_id": (str, type(None)),
    "role": (str,),
    "content": (str,),
    "status": (str,),
    "created_at": (int, float),
    "reasoning": (str,),
    "error": (str, type(None)),
    "provider": (str, type(None)),
    "model": (str, type(None)),
    "prompt_tokens": (int, type(None)),
    "completion_tokens": (int, type(None)),
    "first_token_at": (int, float, type(None)),
    "finished_at": (int, float, type(None)),
    "duration_ms": (int, type(None)),
}
FINAL_STATUSES: Final = frozenset({"complete", "stopped", "error"})
# "partial": an answer cut off (the app stopped mid-answer on the device that wrote it);
# it may later be replaced by its final version (a newer revision of the same record).
_STATUSES: Final = FINAL_STATUSES | {"partial"}
_ROLES: Final = frozenset({"system", "user", "assistant"})


def message_values(body: Mapping[str, Any]) -> dict[str, Any]:
    """A message record's fields, checked (RecordTamperedError if malformed)."""
    values: dict[str, Any] = {}
    for name, types in _MESSAGE_TYPES.items():
        value = body.get(name)
        if not isinstance(value, types) or isinstance(value, bool):
            raise RecordTamperedError(f"a message record's {name} is malformed")
        values[name] = value
    if values["status"] not in _STATUSES or values["role"] not in _ROLES:
        raise RecordTamperedError("a message record's role or status is malformed")
    # An answer's excerpt labels (the ``messages.sources`` JSON text); a device older
    # than them sends none.
    sources = body.get("sources", "[]")
    if not isinstance(sources, str):
        raise RecordTamperedError("a message record's sources is malformed")
    values["sources"] = sources
    return values


# --- attachments ----------------------------------------------------------------------------
#
# An attachment travels as one metadata record ("att:<attachment id>") and its bytes as
# parts ("attpart:<attachment id>:<n>"), all sealed under the chat's key like its
# messages. The record ids hold only the attachment's random id and a part number: no
# name, no hash of the content. A part's plaintext is a small JSON header (the chat id),
# a newline and the raw bytes (no base64: a part stays within the server's record limit).

ATTACHMENT_PREFIX: Final = "att:"
PART_PREFIX: Final = "attpart:"

_ATTACHMENT_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "message_id": (str,),
    "name": (str,),
    "media_type": (str,),
    "size": (int,),
    "sha256": (str,),
    "position": (int,),
    "created_at": (int, float),
    "parts": (int,),
    "part_size": (int,),
}
_HEX: Final = frozenset("0123456789abcdef")


def part_record_id(attachment_id: str, index: int) -> str:
    return f"{PART_PREFIX}{attachment_id}:{index}"


def split_part_record_id(record_id: str) -> tuple[str, int]:
    """(attachment id, part number) of an "attpart:" record id."""
    attachment_id, _, index = record_id.removeprefix(PART_PREFIX).rpartition(":")
    if not attachment_id or not index.isdigit():
        raise RecordTamperedError(f"record {record_id} is not an attachment part id")
    return attachment_id, int(index)


def encode_part(chat_id: str, data: bytes) -> bytes:
    """The plaintext of an attachment part: JSON header, newline, the raw bytes."""
    return encode_body({"chat_id": chat_id}) + b"\n" + data


def decode_part(plaintext: bytes, what: str) -> tuple[dict[str, Any], bytes]:
    """(header, bytes) of an attachment part's plaintext (RecordTamperedError if malformed)."""
    head, newline, data = plaintext.partition(b"\n")
    if not newline or not data:
        raise RecordTamperedError(f"{what} is not an attachment part")
    return decode_body(head, what), data


def attachment_values(body: Mapping[str, Any]) -> dict[str, Any]:
    """An attachment record's fields, checked (RecordTamperedError if malformed)."""
    values: dict[str, Any] = {}
    for name, types in _ATTACHMENT_TYPES.items():
        value = body.get(name)
        if not isinstance(value, types) or isinstance(value, bool):
            raise RecordTamperedError(f"an attachment record's {name} is malformed")
        values[name] = value
    sha256 = values["sha256"]
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise RecordTamperedError("an attachment record's sha256 is malformed")
    size, part_size = values["size"], values["part_size"]
    if size <= 0 or part_size <= 0 or values["parts"] != -(-size // part_size):
        raise RecordTamperedError("an attachment record's size or parts is malformed")
    if values["position"] < 0:
        raise RecordTamperedError("an attachment record's position is malformed")
    if not values["name"] or len(values["name"]) > 1000 or len(values["media_type"]) > 200:
        raise RecordTamperedError("an attachment record's name or media type is malformed")
    return values
