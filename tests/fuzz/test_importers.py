"""Fuzzing the chat importers (``app.store.transfer.import_chats``).

For every format (``hushchat``, ``chatgpt``, ``openwebui``, or detected when None), any
input is imported or refused with ``ImportFormatError`` / ``UsageError``; never another
exception. A refused import writes nothing (the library's chats and messages are counted
before and after). Chats that were imported export and import again unchanged.

ChatGPT's export .zip is fuzzed too: archives assembled from a pool of member names
(traversal names, folders, duplicates, a second conversations.json) and contents (images,
empty and random files, damaged JSON), stored or deflated, sometimes mutated byte by byte
afterwards, imported with a small attachment limit now and then.

Imports go to an in-memory library that starts with the chats of ``hushchat.json``, so
imports of mutated Hushchat exports meet ids that are taken. It serves 100 inputs (a
fresh one per input would cost most of the run) and is then replaced, so that counting
its chats stays cheap in a long run.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import UsageError
from app.store.library import Library, memory_connection
from app.store.models import Tier
from app.store.transfer import AttachmentLimits, export_json, import_chats
from tests.fuzz._profiles import FUZZ
from tests.fuzz._stats import tried
from tests.fuzz._strategies import dumps, field_names, json_values, mutated, mutated_bytes
from tests.unit.store.test_transfer_attachments import OTHER_PNG, PICTURE_MEMBERS, PNG, picture_chat

pytestmark = pytest.mark.fuzz

FIXTURES = Path(__file__).parents[1] / "fixtures" / "transfer"
VALID = {
    "hushchat": (FIXTURES / "hushchat.json").read_bytes(),
    "chatgpt": (FIXTURES / "chatgpt_conversations.json").read_bytes(),
    "openwebui": (FIXTURES / "openwebui_export.json").read_bytes(),
}
FORMATS = [None, "hushchat", "chatgpt", "openwebui"]


#: Every field name of the three formats, and the values that steer the parsers.
KEYS = sorted(
    set().union(*(field_names(json.loads(data)) for data in VALID.values()))
    | {
        "hushchat-export", "user", "assistant", "system", "tool", "text", "multimodal_text",
        "thoughts", "interrupted", "in_progress", "complete", "stopped", "partial", "error",
    }
)  # fmt: skip


class _Libraries:
    """The library for the next input: the same one 100 times, then a fresh one."""

    USES = 100

    def __init__(self) -> None:
        self._library: Library | None = None
        self._uses = 0

    def next(self) -> Library:
        if self._library is None or self._uses == self.USES:
            self.close()
            self._library = Library(memory_connection(), memory_connection())
            import_chats(self._library, VALID["hushchat"], fmt="hushchat")
            self._uses = 0
        self._uses += 1
        return self._library

    def close(self) -> None:
        if self._library is not None:
            self._library.close()


@pytest.fixture(scope="module")
def libraries() -> Iterator[_Libraries]:
    libraries = _Libraries()
    yield libraries
    libraries.close()


def _counts(library: Library) -> tuple[int, int]:
    chats = sum(len(library.store(tier).list_chats()) for tier in library.tiers)
    messages = sum(library.store(tier).count_messages() for tier in library.tiers)
    return chats, messages


def _without_exported_at(export: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in export.items() if key != "exported_at"}


def _check_import(
    library: Library,
    data: bytes | str,
    fmt: str | None,
    tier: Tier = Tier.STANDARD,
    limits: AttachmentLimits | None = None,
) -> None:
    before = _counts(library)
    try:
        ids = import_chats(library, data, fmt=fmt, tier=tier, limits=limits)
    except UsageError:  # ImportFormatError is one
        assert _counts(library) == before, "a refused import wrote something"
        return
    chats, messages = _counts(library)
    assert chats == before[0] + len(ids)
    # What was imported exports, and imports into an empty profile, unchanged.
    exported = export_json(library, ids)
    fresh = Library(memory_connection(), memory_connection())
    again = import_chats(fresh, json.dumps(exported), fmt="hushchat", tier=tier)
    assert again == ids
    assert _without_exported_at(export_json(fresh, again)) == _without_exported_at(exported)
    assert _counts(fresh) == (len(ids), messages - before[1])
    fresh.close()


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda fmt: fmt or "detect")
@FUZZ
@given(data=st.one_of(json_values(KEYS).map(dumps), st.binary(max_size=64)))
def test_any_json_is_imported_or_refused_whole(
    libraries: _Libraries, fmt: str | None, data: bytes
) -> None:
    tried(f"import {fmt or 'detect'}: any JSON")
    _check_import(libraries.next(), data, fmt)


@pytest.mark.parametrize("source", sorted(VALID))
@FUZZ
@given(data=st.data(), fmt_given=st.booleans(), tier=st.sampled_from(list(Tier)))
def test_mutated_exports_are_imported_or_refused_whole(
    libraries: _Libraries, source: str, data: st.DataObject, fmt_given: bool, tier: Tier
) -> None:
    tried(f"import {source}: mutated export")
    document = json.loads(VALID[source])
    if data.draw(st.booleans(), label="byte-level"):
        raw = data.draw(mutated_bytes(VALID[source]), label="bytes")
    else:
        raw = dumps(data.draw(mutated(document, KEYS), label="document"))
    _check_import(libraries.next(), raw, source if fmt_given else None, tier)


ZIP_JSON = json.dumps(picture_chat()).encode()
ZIP_NAMES = [
    *PICTURE_MEMBERS, "conversations.json", "export/conversations.json", "../conversations.json",
    "../../file-AbC123-photo.png", "/etc/file-Notes9-notes.txt", "C:\\file_00000000ab12cd34.png",
    "dalle-generations/", "file-AbC123-again.png", "file_00000000ee99ff00",
]  # fmt: skip
ZIP_CONTENTS = [ZIP_JSON, PNG, OTHER_PNG, b"", b"notes\n", ZIP_JSON[:-7], b"[]", PNG[:20]]


@st.composite
def _export_zips(draw: st.DrawFn) -> bytes:
    members = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ZIP_NAMES),
                st.one_of(st.sampled_from(ZIP_CONTENTS), st.binary(max_size=64)),
                st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
            ),
            max_size=8,
        ),
        label="members",
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are wanted here
        if draw(st.booleans(), label="conversations.json first"):
            archive.writestr("conversations.json", ZIP_JSON)
        for name, content, compression in members:
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=compression)
    data = buffer.getvalue()
    if draw(st.booleans(), label="byte-level"):
        data = draw(mutated_bytes(data), label="bytes")
    return data


#: A zip import costs several JSON ones (files stored, exported and imported again).
ZIP_FUZZ = settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 4))


@ZIP_FUZZ
@given(
    data=_export_zips(),
    fmt=st.sampled_from([None, "chatgpt"]),
    limit=st.sampled_from([None, 1, 60, 10_000]),
)
def test_export_zips_are_imported_or_refused_whole(
    libraries: _Libraries, data: bytes, fmt: str | None, limit: int | None
) -> None:
    tried(f"import {fmt or 'detect'}: export .zip")
    limits = AttachmentLimits(max_bytes=limit) if limit else None
    _check_import(libraries.next(), data, fmt, limits=limits)
