"""Export chats (Markdown, and our documented JSON format) and import them back.

Imports read three formats: our own JSON export (``hushchat``), ChatGPT's data
export (``chatgpt``: ``conversations.json``, or the export's .zip with the files of the
messages) and Open WebUI's chat export (``openwebui``, with the images and document text
it holds). A file is parsed and validated whole (pydantic models, so an
error names the JSON path), converted to plain records, and only then written,
in ONE transaction of the target tier's store: a bad file is a clear error and
nothing is half-imported. The JSON format is specified in ``docs/chats.md``.

A .zip is hostile input until proven otherwise: it is read with ``zipfile``, one member
at a time in memory, never unpacked to disk; its member names are only lookup keys. Its
directory is checked first (member count, growth, total size): a zip bomb is one clear
error and nothing is imported. A file a message refers to that is missing from the
export, or larger than the attachment limit, leaves a short note in the message instead
and is counted in the result (``ImportedChats``).

Errors (see ``app/errors.py`` for the rest of the tree)::

    UsageError                    exit 2
    └── ImportFormatError         the file is too large, not JSON, or not an export we read
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import logging
import math
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from app.attachments.detection import DOCX_MEDIA_TYPE, Kind, detect
from app.attachments.errors import AttachmentError
from app.attachments.extraction import DEFAULT_MAX_BYTES
from app.errors import UsageError
from app.store.chats import ChatStore, new_id
from app.store.library import Library
from app.store.models import (
    MAX_STOP_SEQUENCES,
    Attachment,
    Chat,
    ChatParams,
    ChatRecord,
    Message,
    MessageStatus,
    Tier,
    TitleSource,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "IMPORT_FORMATS",
    "MAX_IMPORT_BYTES",
    "AttachmentLimits",
    "ImportFormatError",
    "ImportedChats",
    "export_json",
    "export_markdown",
    "import_chats",
    "import_file",
]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "hushchat-export"
#: 2 added the chat's ``params``; 3 added messages' ``sources`` and ``attachments``
#: (base64 with name, media type and sha256). Versions 1 and 2 are read too.
EXPORT_VERSION = 3
READ_VERSIONS = (1, 2, 3)
IMPORT_FORMATS = ("hushchat", "chatgpt", "openwebui")
MAX_IMPORT_BYTES = 200 * 1024 * 1024
IMPORTED_TITLE = "Imported chat"
# Placeholder titles of other apps: a chat that still has one was never named.
_PLACEHOLDER_TITLES = {"", "new chat", "untitled"}
_TITLE_CHARS = 200

_TIME_TYPES: tuple[Any, ...] = (datetime, datetime | None)

_FORMAT_NAMES = {
    "hushchat": "a Hushchat export",
    "chatgpt": "a ChatGPT export (its .zip or conversations.json)",
    "openwebui": "an Open WebUI chat export",
}
_ADVICE = {
    "hushchat": "export the chats from Hushchat again",
    "chatgpt": "use ChatGPT's data export (the .zip, or conversations.json from it), unchanged",
    "openwebui": "export the chats from Open WebUI again (Settings → Chats → Export)",
}


class ImportFormatError(UsageError):
    """The import file is too large, is not JSON, or is not an export in the named format."""


# --- export ------------------------------------------------------------------------------------


def export_json(library: Library, chat_ids: list[str] | None = None) -> dict[str, Any]:
    """The chats in our documented JSON format (``docs/chats.md``), every message version.

    ``chat_ids`` None exports every chat of every available tier, except chats
    whose deletion is pending. Timestamps are ISO-8601 UTC strings. The fields are
    those of the import schema (``_HcChat``, ``_HcMessage``): one definition of the
    format serves both directions.
    """
    chats = []
    if chat_ids is None:
        chat_ids = [summary.id for summary in library.list_chats()]
    for chat_id in chat_ids:
        store = library.store_of(chat_id)
        record = store.record(chat_id)
        files = _by_message(store.chat_attachments(chat_id))
        chat = _wire(record.chat, _HcChat)
        chat["messages"] = []
        for message in record.messages:
            wired = _wire(message, _HcMessage)
            wired["attachments"] = [
                _wire_attachment(store, attachment) for attachment in files.get(message.id, [])
            ]
            chat["messages"].append(wired)
        chats.append(chat)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": _iso(time.time()),
        "chats": chats,
    }


def export_markdown(
    library: Library, chat_ids: list[str] | None = None, *, attachments_folder: str | None = None
) -> str:
    """The chats as Markdown for reading: each chat's shown thread, chats separated by ``---``.

    Only the active version of each message is included; message content is
    written verbatim, so code blocks stay intact. A message's attachments are listed
    under it: linked to ``attachments_folder/<file>`` (the files
    ``markdown_attachment_files`` names, written there by the caller), else by name.
    """
    if chat_ids is None:
        chat_ids = [summary.id for summary in library.list_chats()]
    links: dict[str, str] = {}
    if attachments_folder is not None:
        links = {
            attachment.id: f"{attachments_folder}/{name}"
            for _store, attachment, name in markdown_attachment_files(library, chat_ids)
        }
    sections = []
    for chat_id in chat_ids:
        store = library.store_of(chat_id)
        files = _by_message(store.chat_attachments(chat_id))
        sections.append(
            _chat_markdown(store.chat(chat_id), store.full_thread(chat_id), files, links)
        )
    return "\n\n---\n\n".join(sections) + "\n" if sections else ""


def _by_message(attachments: Iterable[Attachment]) -> dict[str, list[Attachment]]:
    by_message: dict[str, list[Attachment]] = {}
    for attachment in attachments:
        by_message.setdefault(attachment.message_id, []).append(attachment)
    for items in by_message.values():
        items.sort(key=lambda a: a.position)
    return by_message


def _wire_attachment(store: ChatStore, attachment: Attachment) -> dict[str, Any]:
    data = b"".join(store.read_attachment(attachment.id))
    return {
        "name": attachment.name,
        "media_type": attachment.media_type,
        "sha256": attachment.sha256,
        "data": base64.b64encode(data).decode("ascii"),
    }


def markdown_attachment_files(
    library: Library, chat_ids: list[str] | None = None
) -> list[tuple[ChatStore, Attachment, str]]:
    """The attachments of the messages ``export_markdown`` writes, each with the file
    name it gets in the folder beside the Markdown file (unique, in export order)."""
    if chat_ids is None:
        chat_ids = [summary.id for summary in library.list_chats()]
    taken: set[str] = set()
    files = []
    for chat_id in chat_ids:
        store = library.store_of(chat_id)
        shown = {m.id for m in store.full_thread(chat_id)}
        for attachment in store.chat_attachments(chat_id):
            if attachment.message_id not in shown:
                continue
            name = _file_name(attachment.name)
            candidate, number = name, 1
            while candidate.lower() in taken:
                number += 1
                candidate = f"{number}-{name}"
            taken.add(candidate.lower())
            files.append((store, attachment, candidate))
    return files


def _file_name(name: str) -> str:
    """An attachment's name as a safe file name (no folders, no control characters)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip(" .")
    return cleaned or "attachment"


def _wire(item: Chat | Message, schema: type[BaseModel]) -> dict[str, Any]:
    """The fields ``schema`` names, read from a stored chat or message, as JSON values."""
    result: dict[str, Any] = {}
    for name, field_info in schema.model_fields.items():
        if name in ("messages", "attachments"):
            continue
        value = getattr(item, name)
        if field_info.annotation in _TIME_TYPES:
            value = _iso(value)
        elif isinstance(value, ChatParams):
            value = value.to_json()
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        result[name] = value
    return result


_STATUS_NOTES = {
    MessageStatus.STOPPED: "_Stopped before the answer was complete._",
    MessageStatus.PARTIAL: "_Incomplete: the answer was cut off._",
}
_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


def _chat_markdown(
    chat: Chat,
    thread: list[Message],
    files: dict[str, list[Attachment]] | None = None,
    links: dict[str, str] | None = None,
) -> str:
    files, links = files or {}, links or {}
    facts = [f"{chat.tier.value.capitalize()} chat"]
    if chat.model:
        facts.append(f"{chat.model} ({chat.provider})" if chat.provider else chat.model)
    facts.append(f"created {_human_date(chat.created_at)}")
    facts.append(f"updated {_human_date(chat.updated_at)}")
    lines = [f"# {chat.title}", "", " · ".join(facts)]
    for label, text in (("System prompt", chat.system_prompt), ("Memory", chat.memory)):
        if text.strip():
            lines += ["", f"**{label}**", "", _quoted(text)]
    if not thread:
        lines += ["", "_No messages._"]
    for message in thread:
        heading = _ROLE_HEADINGS.get(message.role, message.role.capitalize())
        if message.role == "assistant" and message.model:
            heading += f" ({message.model})"
        lines += ["", f"## {heading}"]
        if message.content:
            lines += ["", message.content]
        attached = files.get(message.id, [])
        if attached:
            lines.append("")
            for attachment in attached:
                target = links.get(attachment.id)
                shown = _markdown_text(attachment.name)
                item = f"[{shown}](<{target}>)" if target else shown
                lines.append(f"- Attachment: {item} ({attachment.size:,} bytes)")
        if message.sources:
            lines += ["", "_Sources: " + "; ".join(map(_markdown_text, message.sources)) + "_"]
        note = _STATUS_NOTES.get(message.status)
        if message.status == MessageStatus.ERROR:
            note = f"_The answer failed: {message.error}_" if message.error else "_Failed._"
        if note:
            lines += ["", note]
    return "\n".join(lines)


def _markdown_text(text: str) -> str:
    """``text`` with the characters Markdown would read as markup escaped."""
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _human_date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- import: entry points ----------------------------------------------------------------------


def import_file(
    library: Library,
    path: Path,
    *,
    fmt: str | None = None,
    tier: Tier = Tier.STANDARD,
    bind: Callable[[Chat], Chat] | None = None,
    limits: AttachmentLimits | None = None,
) -> ImportedChats:
    """Import the chats of an export file into ``tier``; returns the new chats' ids.

    A .zip is read as ChatGPT's data export, with the files its messages refer to
    (``limits`` caps their size). Other files larger than ``MAX_IMPORT_BYTES`` are
    refused before they are read. ``bind`` (see :func:`import_chats`) may rebind each
    chat before it is written.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(4)
        if head.startswith(_ZIP_SIGNATURES):
            if size > MAX_IMPORT_ZIP_BYTES:
                raise ImportFormatError(
                    f"{path} is {size / _GIB:,.1f} GB; zip exports are limited to "
                    f"{MAX_IMPORT_ZIP_BYTES // _GIB} GB. Unzip it and import conversations.json "
                    "alone (its messages' files are then left out)"
                )
            with _open_zip(path, str(path)) as archive:
                return _import_zip(library, archive, str(path), fmt, tier, bind, limits)
        _check_size(size, str(path))
        data = path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"cannot read {path}: {reason}") from error
    return import_chats(
        library, data, fmt=fmt, tier=tier, source=str(path), bind=bind, limits=limits
    )


def import_chats(
    library: Library,
    data: bytes | str,
    *,
    fmt: str | None = None,
    tier: Tier = Tier.STANDARD,
    source: str = "<input>",
    bind: Callable[[Chat], Chat] | None = None,
    limits: AttachmentLimits | None = None,
) -> ImportedChats:
    """Import the chats in ``data`` into ``tier`` in one transaction; returns their ids.

    ``fmt`` is ``"hushchat"``, ``"chatgpt"`` or ``"openwebui"``; None detects it.
    ``data`` may also be the bytes of ChatGPT's export .zip. Our own export keeps its
    ids unless a chat (or one of its messages) already exists in the profile; such a
    chat gets new ids throughout. Chats from other apps always get new ids. ``source``
    names the input in error messages. Raises ImportFormatError, naming the JSON path,
    if anything is wrong: then nothing is imported. ``bind`` returns each chat as it
    should be written (the chat service binds it to a provider the tier allows).
    ``limits`` caps the size of other apps' files (our own export's are taken whole).
    """
    if fmt is not None and fmt not in IMPORT_FORMATS:
        raise UsageError(f"unknown import format '{fmt}'; use {', '.join(IMPORT_FORMATS)}")
    _check_size(len(data), source)
    if isinstance(data, bytes) and data.startswith(_ZIP_SIGNATURES):
        with _open_zip(io.BytesIO(data), source) as archive:
            return _import_zip(library, archive, source, fmt, tier, bind, limits)
    return _import(library, data, fmt, tier, source, bind, _Attacher(limits))


def _import(
    library: Library,
    data: bytes | str,
    fmt: str | None,
    tier: Tier,
    source: str,
    bind: Callable[[Chat], Chat] | None,
    attacher: _Attacher,
) -> ImportedChats:
    store = library.store(tier)
    parsed = _parse_json(data, source)
    fmt = fmt or _detect(parsed, source)
    if fmt == "hushchat":
        records = _from_hushchat(parsed, source, tier, attacher.files)
    elif fmt == "chatgpt":
        records = _from_chatgpt(parsed, source, tier, attacher)
    else:
        records = _from_openwebui(parsed, source, tier, attacher)
    if bind is not None:
        records = [ChatRecord(bind(r.chat), r.messages) for r in records]
    chat_ids = _write(library, store, records, keep_ids=fmt == "hushchat", attacher=attacher)
    report = attacher.report
    log.info(
        "imported %d chats (%s format) into %s: %d attachments, %d files missing, %d too large",
        len(chat_ids), fmt, tier.value, report.attachments, report.missing, report.skipped,
    )  # fmt: skip
    return ImportedChats(
        chat_ids, attachments=report.attachments, missing=report.missing, skipped=report.skipped
    )


def _check_size(size: int, source: str) -> None:
    if size > MAX_IMPORT_BYTES:
        raise ImportFormatError(
            f"{source} is {size / 1024 / 1024:,.0f} MB; imports are limited to "
            f"{MAX_IMPORT_BYTES // 1024 // 1024} MB. Split the export into smaller files"
        )


def _parse_json(data: bytes | str, source: str) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ImportFormatError(
                f"{source} is not UTF-8 text (byte {error.start}); an export is a JSON file. "
                "Nothing was imported"
            ) from error
    try:
        parsed = json.loads(data.removeprefix("\ufeff"))
    except json.JSONDecodeError as error:
        raise ImportFormatError(
            f"{source} is not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{error.msg}); the file may be truncated or damaged, export it again. "
            "Nothing was imported"
        ) from error
    except RecursionError as error:
        raise ImportFormatError(
            f"{source} is nested too deeply to be a chat export. Nothing was imported"
        ) from error
    if _SURROGATE.search(data) or _SURROGATE_ESCAPE.search(data):
        parsed = _without_lone_surrogates(parsed)
    return parsed


# A lone UTF-16 surrogate: JavaScript apps write one when they cut an emoji in half
# (a truncated title), as an escape like "\ud83d". SQLite stores only UTF-8 text.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _without_lone_surrogates(data: Any) -> Any:
    """``data`` with every lone surrogate in its strings replaced by U+FFFD."""
    root = [data]
    stack: list[Any] = [root]  # iterative: the JSON may be nested a thousand deep
    while stack:
        node = stack.pop()
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(value, dict | list):
                stack.append(value)
            elif isinstance(value, str):
                node[key] = _SURROGATE.sub("\ufffd", value)
    return root[0]


def _detect(data: Any, source: str) -> str:
    sample = data[0] if isinstance(data, list) and data else data
    if isinstance(data, dict) and "format" in data:
        if data["format"] == EXPORT_FORMAT:
            return "hushchat"
        raise ImportFormatError(
            f"{source}: format: {str(data['format'])[:60]!r} is not a format Hushchat imports; "
            f'a Hushchat export says "format": "{EXPORT_FORMAT}". Nothing was imported'
        )
    if isinstance(sample, dict) and "mapping" in sample:
        return "chatgpt"
    if isinstance(sample, dict) and "chat" in sample:
        return "openwebui"
    if data == []:
        return "chatgpt"  # an empty list: nothing to import, whichever app wrote it
    raise ImportFormatError(
        f"{source}: cannot tell which app exported this file: expected a Hushchat export "
        f'(an object with "format": "{EXPORT_FORMAT}"), ChatGPT\'s conversations.json '
        '(a list of conversations with "mapping") or an Open WebUI export (a list of chats '
        'with "chat"). Name the format (hushchat, chatgpt or openwebui) if you know it. '
        "Nothing was imported"
    )


# --- import: records and writing ---------------------------------------------------------------


def _write(
    library: Library,
    store: ChatStore,
    records: list[ChatRecord],
    *,
    keep_ids: bool,
    files: _Files | None = None,
    attacher: _Attacher | None = None,
) -> list[str]:
    """Write every chat in one transaction of ``store``; all or nothing.

    With ``keep_ids`` (our own exports) a chat keeps its ids when none is taken;
    other apps' ids are theirs, so their chats always get new ones.
    """
    if attacher is not None:
        files = attacher.files
    claimed: set[str] = set()
    now = time.time()
    ready: list[ChatRecord] = []
    attach: list[tuple[str, _IncomingFile | _ArchiveFile]] = []  # (message id as written, file)
    for index, original in enumerate(records):
        record = original
        if not keep_ids or not _ids_free(library, record, claimed):
            record = _with_new_ids(record)
        for before, after in zip(original.messages, record.messages, strict=True):
            attach += [(after.id, file) for file in (files or {}).get((index, before.id), [])]
        claimed.add(record.chat.id)
        claimed.update(m.id for m in record.messages)
        # The shown path was selected last, so flipping versions elsewhere comes back to it.
        parents = {m.id: m.parent_id for m in record.messages}
        shown = set(_ancestry(record.chat.active_leaf_id, parents))
        messages = [
            replace(m, selected_at=now if m.id in shown else m.created_at) for m in record.messages
        ]
        ready.append(ChatRecord(record.chat, messages))
    with store.transaction():
        store.insert_records(ready)
        for message_id, file in attach:
            if isinstance(file, _ArchiveFile):
                assert attacher is not None and attacher.archive is not None
                data = attacher.archive.read(file)
                name, media_type = file.name, _archive_media_type(file, data)
            else:
                data, name, media_type = file.data, file.name, file.media_type
            store.add_attachment(
                message_id, io.BytesIO(data), max_size=len(data), name=name,
                media_type=media_type,
            )  # fmt: skip
            del data
            if attacher is not None:
                attacher.report.attachments += 1
    return [record.chat.id for record in ready]


class _Loop(Exception):
    """A message is its own ancestor."""


def _ancestry(
    start: str | None, parents: dict[str, str | None], known: Set[str] = frozenset()
) -> list[str]:
    """``start`` and its ancestors, nearest first, up to a root or a member of ``known``.

    Raises ``_Loop`` when the parent links go round in a circle.
    """
    path: list[str] = []
    seen: set[str] = set()
    current = start
    while current is not None and current not in known:
        if current in seen:
            raise _Loop(current)
        seen.add(current)
        path.append(current)
        current = parents.get(current)
    return path


def _ids_free(library: Library, record: ChatRecord, claimed: set[str]) -> bool:
    message_ids = [m.id for m in record.messages]
    return (
        record.chat.id not in claimed
        and claimed.isdisjoint(message_ids)
        and not library.ids_taken([record.chat.id], message_ids)
    )


def _with_new_ids(record: ChatRecord) -> ChatRecord:
    """A copy of the chat with new ids throughout (the tree and active leaf kept)."""
    chat_id = new_id()
    new_ids = {m.id: new_id() for m in record.messages}
    messages = [
        replace(
            m,
            id=new_ids[m.id],
            chat_id=chat_id,
            parent_id=new_ids.get(m.parent_id) if m.parent_id is not None else None,
        )
        for m in record.messages
    ]
    leaf = record.chat.active_leaf_id
    chat = replace(record.chat, id=chat_id, active_leaf_id=new_ids.get(leaf) if leaf else None)
    return ChatRecord(chat, messages)


def _imported_chat(
    chat_id: str,
    tier: Tier,
    title: str | None,
    *,
    created_at: float,
    updated_at: float,
    active_leaf_id: str | None,
    system_prompt: str = "",
    pinned: bool = False,
) -> Chat:
    """A chat read from another app's file, titled the way imported chats are titled."""
    text, title_source = _title(title)
    return Chat(
        id=chat_id, title=text, title_source=title_source, tier=tier,
        system_prompt=system_prompt, memory="", provider=None, model=None, pinned=pinned,
        active_leaf_id=active_leaf_id, created_at=created_at, updated_at=updated_at,
    )  # fmt: skip


def _title(raw: str | None) -> tuple[str, TitleSource]:
    title = " ".join((raw or "").split())[:_TITLE_CHARS]
    if title.lower() in _PLACEHOLDER_TITLES:
        return IMPORTED_TITLE, TitleSource.DEFAULT
    return title, TitleSource.USER


def _epoch(value: float | None) -> float | None:
    """Seconds since the epoch from seconds, milliseconds, microseconds or nanoseconds."""
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    while value > 1e11:  # later than the year 5000 in seconds: a finer unit
        value /= 1000
    return value


# --- import: validation errors -----------------------------------------------------------------


class _Loose(BaseModel):
    """Other apps' records: fields we do not use are ignored, as those apps add fields."""

    model_config = ConfigDict(extra="ignore")


class _Strict(BaseModel):
    """Our own format: unknown fields are errors (a new field means a new version)."""

    model_config = ConfigDict(extra="forbid")


def _validate(adapter: TypeAdapter[Any], data: Any, root: str, fmt: str, source: str) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as error:
        problems = error.errors()
        first = problems[0]
        where = _json_path(root, first["loc"], data, missing=first["type"] == "missing")
        found = ""
        if first["type"] != "missing" and isinstance(first["input"], str | int | float | bool):
            found = f" (found {json.dumps(first['input'])[:60]})"
        extra = len(problems) - 1
        more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
        raise _format_error(source, fmt, where, f"{first['msg'].lower()}{found}{more}") from None


def _format_error(source: str, fmt: str, where: str, problem: str) -> ImportFormatError:
    return ImportFormatError(
        f"{source}: {where}: {problem}. Hushchat cannot read this as {_FORMAT_NAMES[fmt]}; "
        f"{_ADVICE[fmt]}. Nothing was imported"
    )


def _json_path(root: str, loc: Iterable[int | str], data: Any, *, missing: bool) -> str:
    """``loc`` as a path a person finds in the file; parts not in the data are left out."""
    parts = list(loc)
    path, node = root, data
    for index, part in enumerate(parts):
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            path, node = f"{path}[{part}]", node[part]
        elif (
            isinstance(part, str)
            and isinstance(node, dict)
            and (part in node or (missing and index == len(parts) - 1))
        ):
            path, node = _join_key(path, part), node.get(part)
        # else: a union member pydantic tried (e.g. "str"), not a key in the file
    return path or "the top level"


def _join_key(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _require_type(data: Any, expected: type, root: str, fmt: str, source: str, what: str) -> None:
    if not isinstance(data, expected):
        kinds: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
        found = kinds.get(type(data), "a value")
        raise _format_error(source, fmt, root or "the top level", f"expected {what}, found {found}")


# --- import: our format ------------------------------------------------------------------------

# What an SQLite INTEGER holds; a larger count made the insert raise OverflowError.
_SQLITE_INT_MIN, _SQLITE_INT_MAX = -(2**63), 2**63 - 1
_Count = Annotated[int, Field(ge=_SQLITE_INT_MIN, le=_SQLITE_INT_MAX)]


class _HcAttachment(_Strict):
    name: str = Field(min_length=1)
    media_type: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data: str  # base64


class _HcMessage(_Strict):
    id: str
    parent_id: str | None
    role: Literal["system", "user", "assistant"]
    content: str
    reasoning: str = ""
    status: MessageStatus = MessageStatus.COMPLETE
    error: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: _Count | None = None
    completion_tokens: _Count | None = None
    created_at: datetime
    first_token_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: _Count | None = None
    # Version 3: an answer's excerpt labels, and the message's attached files.
    sources: list[str] = Field(default_factory=list)
    attachments: list[_HcAttachment] = Field(default_factory=list)


class _HcChat(_Strict):
    id: str
    title: str
    title_source: TitleSource = TitleSource.USER
    tier: Tier = Tier.STANDARD
    system_prompt: str = ""
    memory: str = ""
    provider: str | None = None
    model: str | None = None
    pinned: bool = False
    created_at: datetime
    updated_at: datetime
    active_leaf_id: str | None = None
    # The chat's own model parameters (``ChatParams.to_json``): only those that are set.
    params: dict[str, Any] = Field(default_factory=dict)
    messages: list[_HcMessage]


class _HcExport(_Strict):
    format: Literal["hushchat-export"]
    version: int
    exported_at: datetime | None = None
    chats: list[_HcChat]


_HC_ADAPTER: TypeAdapter[_HcExport] = TypeAdapter(_HcExport)


def _seconds(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class _IncomingFile:
    """An attachment read from an export, checked against its sha256."""

    name: str
    media_type: str
    sha256: str
    data: bytes


#: Attachments read from an export: (index of the chat, message id) -> its files.
_Files = dict[tuple[int, str], list["_IncomingFile | _ArchiveFile"]]


def _incoming(attachment: _HcAttachment, where: str, source: str) -> _IncomingFile:
    try:
        data = base64.b64decode(attachment.data, validate=True)
    except (binascii.Error, ValueError):
        raise _format_error(source, "hushchat", f"{where}.data", "is not base64") from None
    if not data:
        raise _format_error(source, "hushchat", f"{where}.data", "is empty")
    if hashlib.sha256(data).hexdigest() != attachment.sha256:
        raise _format_error(
            source, "hushchat", f"{where}.data", "does not match its sha256 (the file is damaged)"
        )
    return _IncomingFile(attachment.name, attachment.media_type, attachment.sha256, data)


def _from_hushchat(
    data: Any, source: str, tier: Tier, files: _Files | None = None
) -> list[ChatRecord]:
    _require_type(data, dict, "", "hushchat", source, f'an object with "format": "{EXPORT_FORMAT}"')
    version = data.get("version")
    if isinstance(version, int) and version > EXPORT_VERSION:
        raise ImportFormatError(
            f"{source}: version: this export is format version {version}, newer than this "
            f"Hushchat reads ({EXPORT_VERSION}); update Hushchat and import it again. "
            "Nothing was imported"
        )
    export: _HcExport = _validate(_HC_ADAPTER, data, "", "hushchat", source)
    if export.version not in READ_VERSIONS:
        raise _format_error(
            source, "hushchat", "version", f"version {export.version} does not exist"
        )
    records = []
    files = {} if files is None else files
    for index, chat in enumerate(export.chats):
        where = f"chats[{index}]"
        messages = [
            Message(
                id=m.id, chat_id=chat.id, parent_id=m.parent_id, role=m.role,
                content=m.content, status=m.status, created_at=_seconds(m.created_at) or 0.0,
                reasoning=m.reasoning, error=m.error, provider=m.provider, model=m.model,
                prompt_tokens=m.prompt_tokens, completion_tokens=m.completion_tokens,
                first_token_at=_seconds(m.first_token_at),
                finished_at=_seconds(m.finished_at), duration_ms=m.duration_ms,
                sources=tuple(m.sources),
            )
            for m in chat.messages
        ]  # fmt: skip
        for m_index, m in enumerate(chat.messages):
            for a_index, attachment in enumerate(m.attachments):
                at = f"{where}.messages[{m_index}].attachments[{a_index}]"
                files.setdefault((index, m.id), []).append(_incoming(attachment, at, source))
        _check_tree(messages, chat.active_leaf_id, where, source)
        params = _params(chat.params, f"{where}.params", source)
        record = Chat(
            id=chat.id, title=chat.title, title_source=chat.title_source, tier=tier,
            system_prompt=chat.system_prompt, memory=chat.memory, provider=chat.provider,
            model=chat.model, pinned=chat.pinned, active_leaf_id=chat.active_leaf_id,
            created_at=_seconds(chat.created_at) or 0.0,
            updated_at=_seconds(chat.updated_at) or 0.0, params=params,
        )  # fmt: skip
        records.append(ChatRecord(record, messages))
    return records


_PARAM_RANGES = {
    "temperature": "a number from 0 to 2",
    "top_p": "a number above 0, at most 1",
    "max_tokens": "a whole number above 0",
    "context_size": "a whole number above 0",
    "stop": f"a list of at most {MAX_STOP_SEQUENCES} non-empty strings",
    "read_aloud": "true or false",
}


def _params(data: dict[str, Any], where: str, source: str) -> ChatParams:
    """A chat's parameters from an export: each one set must be valid, none unknown."""
    params = ChatParams.from_json(data)
    read = params.to_json()
    for name, value in data.items():
        if name not in _PARAM_RANGES:
            known = ", ".join(_PARAM_RANGES)
            raise _format_error(source, "hushchat", f"{where}.{name}", f"unknown ({known})")
        unset = False if name == "read_aloud" else None  # off is not written
        if value is not None and read.get(name, unset) != value:
            raise _format_error(
                source, "hushchat", f"{where}.{name}", f"must be {_PARAM_RANGES[name]}"
            )
    return params


def _check_tree(messages: list[Message], leaf: str | None, where: str, source: str) -> None:
    """Every parent and the active leaf are messages of the chat, and there is no cycle."""
    parents: dict[str, str | None] = {}
    for index, message in enumerate(messages):
        if message.id in parents:
            raise _format_error(
                source, "hushchat", f"{where}.messages[{index}].id",
                f"message id {message.id!r} appears twice in this chat",
            )  # fmt: skip
        parents[message.id] = message.parent_id
    for index, message in enumerate(messages):
        if message.parent_id is not None and message.parent_id not in parents:
            raise _format_error(
                source, "hushchat", f"{where}.messages[{index}].parent_id",
                f"{message.parent_id!r} is not a message of this chat",
            )  # fmt: skip
    if leaf is not None and leaf not in parents:
        raise _format_error(
            source, "hushchat", f"{where}.active_leaf_id", f"{leaf!r} is not a message of this chat"
        )
    rooted: set[str] = set()  # messages whose ancestors end at a first message
    for index, message in enumerate(messages):
        try:
            rooted.update(_ancestry(message.id, parents, rooted))
        except _Loop:
            raise _format_error(
                source, "hushchat", f"{where}.messages[{index}].parent_id",
                "the replies form a loop (a message is its own ancestor)",
            ) from None  # fmt: skip


# --- import: ChatGPT ---------------------------------------------------------------------------


class _GptAuthor(_Loose):
    role: Literal["user", "assistant", "system", "tool"]


class _GptContent(_Loose):
    content_type: str
    parts: list[Any] | None = None
    text: str | None = None
    thoughts: list[Any] | None = None


class _GptMessage(_Loose):
    author: _GptAuthor
    content: _GptContent
    create_time: float | None = None
    status: str | None = None
    recipient: str | None = None
    metadata: dict[str, Any] | None = None


class _GptNode(_Loose):
    message: _GptMessage | None = None
    parent: str | None = None
    children: list[str] = []


class _GptConversation(_Loose):
    title: str | None = None
    create_time: float | None = None
    update_time: float | None = None
    mapping: dict[str, _GptNode]
    current_node: str | None = None


_GPT_LIST: TypeAdapter[list[_GptConversation]] = TypeAdapter(list[_GptConversation])
_GPT_ONE: TypeAdapter[_GptConversation] = TypeAdapter(_GptConversation)
# Whole-file attachments: their text (if any) is in another part of the same message.
_SILENT_PARTS = {"audio_asset_pointer", "real_time_user_audio_video_asset_pointer"}


def _from_chatgpt(
    data: Any, source: str, tier: Tier, attacher: _Attacher | None = None
) -> list[ChatRecord]:
    if isinstance(data, dict) and "mapping" in data:  # one conversation on its own
        one = _validate(_GPT_ONE, data, "", "chatgpt", source)
        return [_gpt_chat(one, "", source, tier, attacher)]
    _require_type(data, list, "", "chatgpt", source, "a list of conversations")
    conversations: list[_GptConversation] = _validate(
        _GPT_LIST, data, "conversations", "chatgpt", source
    )
    records = []
    for index, conversation in enumerate(conversations):
        if attacher is not None:
            attacher.chat_index = index
        records.append(_gpt_chat(conversation, f"conversations[{index}]", source, tier, attacher))
    return records


def _gpt_chat(
    conversation: _GptConversation,
    where: str,
    source: str,
    tier: Tier,
    attacher: _Attacher | None = None,
) -> ChatRecord:
    """One conversation: visible user and assistant messages; branches become versions.

    With an ``attacher`` that holds the export's .zip, the files the messages refer to
    become their attachments (else images leave "[image not imported]" as before); the
    images a tool made (DALL-E's, in a ``tool`` message) go to the answer that follows."""
    mapping = conversation.mapping
    start = _epoch(conversation.create_time) or time.time()
    chat_id = new_id()
    with_files = attacher is not None and attacher.archive is not None

    def visit(
        key: str, parent_id: str | None, parent_time: float, state: tuple[str, tuple[Any, ...]]
    ) -> tuple[Message | None, float, tuple[str, tuple[Any, ...]]]:
        thoughts, made = state  # made: image parts of tool messages since the last message
        node_message = mapping[key].message
        created = parent_time
        if node_message is not None:
            created = _epoch(node_message.create_time) or parent_time
        record = _gpt_message(node_message, chat_id, parent_id, created, thoughts, attacher, made)
        if record is not None:
            return record, created, ("", ())
        if node_message is not None and node_message.content.content_type == "thoughts":
            thoughts = "\n\n".join(filter(None, [thoughts, _gpt_thoughts(node_message)]))
        elif with_files and node_message is not None and node_message.author.role == "tool":
            made += tuple(
                part
                for part in node_message.content.parts or []
                if isinstance(part, dict) and part.get("content_type") == "image_asset_pointer"
            )
        return None, created, (thoughts, made)

    messages, leaf = _flatten(
        _children(
            {key: node.parent for key, node in mapping.items()},
            {key: node.children for key, node in mapping.items()},
            {
                key: (_epoch(node.message.create_time) if node.message else None) or 0.0
                for key, node in mapping.items()
            },
        ),
        start=start,
        current=conversation.current_node,
        initial=("", ()),
        visit=visit,
        loop_error=lambda: _format_error(
            source,
            "chatgpt",
            _join_key(where, "mapping"),
            "some messages are not reachable from the start of the conversation "
            "(their parents form a loop)",
        ),
    )
    chat = _imported_chat(
        chat_id, tier, conversation.title, created_at=start,
        updated_at=_epoch(conversation.update_time) or start, active_leaf_id=leaf,
    )  # fmt: skip
    return ChatRecord(chat, messages)


State = TypeVar("State")


def _flatten(
    children: dict[str | None, list[str]],
    *,
    start: float,
    current: str | None,
    initial: State,
    visit: Callable[[str, str | None, float, State], tuple[Message | None, float, State]],
    loop_error: Callable[[], ImportFormatError],
) -> tuple[list[Message], str | None]:
    """Walk another app's message tree depth first (parents before children).

    ``visit(key, kept parent id, parent's time, state)`` turns a node into a message
    to keep (or None to skip it, its children then hang from the nearest kept
    ancestor) and passes ``state`` down. Returns the kept messages and the message
    to show (the kept node at or above ``current``, else the newest).
    """
    kept: dict[str, str] = {}  # node -> id of the nearest kept message (itself or above)
    messages: list[Message] = []
    reached = 0
    stack: list[tuple[str, str | None, float, State]] = [
        (key, None, start, initial) for key in reversed(children[None])
    ]
    while stack:
        key, parent_id, parent_time, state = stack.pop()
        reached += 1
        record, created, state = visit(key, parent_id, parent_time, state)
        if record is not None:
            messages.append(record)
            parent_id = record.id
        if parent_id is not None:
            kept[key] = parent_id
        stack.extend((child, parent_id, created, state) for child in reversed(children[key]))
    if reached < len(children) - 1:  # every node but the None root list
        raise loop_error()
    leaf = kept.get(current or "")
    if leaf is None and messages:
        leaf = max(messages, key=lambda m: m.created_at).id
    return messages, leaf


def _children(
    parents: dict[str, str | None],
    listed: dict[str, list[str]],
    times: dict[str, float],
) -> dict[str | None, list[str]]:
    """Children of each node (None: the roots), in the order the source lists them.

    The child's own parent link decides the tree; a parent's list of children only
    orders them (children it does not list follow, oldest first). A parent that
    is not in the file makes its child a root.
    """
    result: dict[str | None, list[str]] = {key: [] for key in parents}
    result[None] = []
    for key, parent in parents.items():
        result[parent if parent in parents else None].append(key)
    for parent, found in result.items():
        order = {child: i for i, child in enumerate(listed.get(parent, []) if parent else [])}
        found.sort(key=lambda child: (order.get(child, len(order)), times.get(child, 0.0)))
    return result


def _gpt_message(
    message: _GptMessage | None,
    chat_id: str,
    parent_id: str | None,
    created: float,
    thoughts: str,
    attacher: _Attacher | None = None,
    made: tuple[Any, ...] = (),
) -> Message | None:
    """A kept message, or None for placeholders, system, tool, hidden and tool-call nodes."""
    if message is None or message.author.role not in ("user", "assistant"):
        return None
    metadata = message.metadata or {}
    if metadata.get("is_visually_hidden_from_conversation"):
        return None
    if message.recipient not in (None, "all"):  # the assistant calling a tool
        return None
    if message.content.content_type not in ("text", "multimodal_text"):
        return None
    with_files = attacher is not None and attacher.archive is not None
    text = _gpt_parts(message.content.parts or [], images=not with_files)
    found: list[_ArchiveFile] = []
    if with_files:
        assert attacher is not None
        parts = message.content.parts or []
        if message.author.role == "assistant":  # the images its tools made come first
            parts = [*made, *parts]
        found, notes = attacher.chatgpt_files(parts, metadata)
        text = "\n\n".join(filter(None, [text, *notes]))
    if not text.strip() and not found:
        return None
    status = MessageStatus.COMPLETE
    finish = metadata.get("finish_details")
    if isinstance(finish, dict) and finish.get("type") == "interrupted":
        status = MessageStatus.STOPPED
    elif message.status in ("in_progress", "finished_partial_completion"):
        status = MessageStatus.PARTIAL
    is_answer = message.author.role == "assistant"
    slug = metadata.get("model_slug")
    record = Message(
        id=new_id(), chat_id=chat_id, parent_id=parent_id, role=message.author.role,
        content=text, created_at=created, reasoning=thoughts if is_answer else "",
        status=status if is_answer else MessageStatus.COMPLETE,
        model=slug if is_answer and isinstance(slug, str) else None,
    )  # fmt: skip
    for file in found:
        assert attacher is not None
        attacher.add(record.id, file)
    return record


def _gpt_parts(parts: list[Any], *, images: bool = True) -> str:
    """The text of a message's parts; ``images`` False leaves image parts out (their
    files are attached instead)."""
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            if part:
                pieces.append(part)
        elif isinstance(part, dict):
            kind = part.get("content_type")
            if kind == "audio_transcription" and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif kind == "image_asset_pointer":
                if images:
                    pieces.append("[image not imported]")
            elif not isinstance(kind, str) or kind not in _SILENT_PARTS:  # a list: unhashable
                pieces.append("[attachment not imported]")
    return "\n\n".join(pieces)


def _gpt_thoughts(message: _GptMessage) -> str:
    texts = []
    for thought in message.content.thoughts or []:
        if isinstance(thought, dict) and isinstance(thought.get("content"), str):
            texts.append(thought["content"])
    return "\n\n".join(texts)


# --- import: Open WebUI ------------------------------------------------------------------------


class _OwMessage(_Loose):
    id: str | None = None
    parentId: str | None = None
    childrenIds: list[str] = []
    role: Literal["user", "assistant", "system"]
    content: str | list[Any] = ""
    timestamp: float | None = None
    model: str | None = None
    done: bool | None = None
    error: Any = None
    usage: dict[str, Any] | None = None
    files: Any = None  # a list of entries; anything else is ignored, as before


class _OwHistory(_Loose):
    messages: dict[str, _OwMessage]
    currentId: str | None = None


class _OwBody(_Loose):
    title: str | None = None
    history: _OwHistory | None = None
    messages: list[_OwMessage] = []
    system: str | None = None
    params: dict[str, Any] | None = None
    timestamp: float | None = None


class _OwChat(_Loose):
    title: str | None = None
    chat: _OwBody
    created_at: float | None = None
    updated_at: float | None = None
    pinned: bool | None = None


_OW_LIST: TypeAdapter[list[_OwChat]] = TypeAdapter(list[_OwChat])
_OW_ONE: TypeAdapter[_OwChat] = TypeAdapter(_OwChat)
_REASONING_BLOCK = re.compile(r'<details type="reasoning"[^>]*>(.*?)</details>\s*', re.DOTALL)
_SUMMARY = re.compile(r"<summary>.*?</summary>", re.DOTALL)


def _from_openwebui(
    data: Any, source: str, tier: Tier, attacher: _Attacher | None = None
) -> list[ChatRecord]:
    attacher = attacher or _Attacher()
    if isinstance(data, dict) and "chat" in data:  # one chat on its own
        one = _validate(_OW_ONE, data, "", "openwebui", source)
        return [_ow_chat(one, "", source, tier, attacher)]
    _require_type(data, list, "", "openwebui", source, "a list of chats")
    chats: list[_OwChat] = _validate(_OW_LIST, data, "chats", "openwebui", source)
    records = []
    for index, chat in enumerate(chats):
        attacher.chat_index = index
        records.append(_ow_chat(chat, f"chats[{index}]", source, tier, attacher))
    return records


def _ow_chat(
    item: _OwChat, where: str, source: str, tier: Tier, attacher: _Attacher | None = None
) -> ChatRecord:
    """One chat: its ``history`` tree when present (branches become versions), else ``messages``."""
    body = item.chat
    start = _epoch(item.created_at) or _epoch(body.timestamp) or _first_time(body) or time.time()
    chat_id = new_id()
    system_prompt = body.system or ""
    if not system_prompt and body.params and isinstance(body.params.get("system"), str):
        system_prompt = body.params["system"]
    if body.history is not None and body.history.messages:
        sources = body.history.messages
        parents = {key: m.parentId for key, m in sources.items()}
        current = body.history.currentId
    else:
        keys = [f"#{index}" for index in range(len(body.messages))]
        sources = dict(zip(keys, body.messages, strict=True))
        parents = {key: (keys[i - 1] if i else None) for i, key in enumerate(keys)}
        current = keys[-1] if keys else None
    paths = {
        key: (
            f"{where}.chat.messages[{key[1:]}]".lstrip(".")
            if body.history is None or not body.history.messages
            else _join_key(f"{where}.chat.history.messages".lstrip("."), key)
        )
        for key in sources
    }

    def visit(
        key: str, parent_id: str | None, parent_time: float, _state: None
    ) -> tuple[Message | None, float, None]:
        nonlocal system_prompt
        message = sources[key]
        created = _epoch(message.timestamp) or parent_time
        if message.role == "system":
            system_prompt = system_prompt or _ow_text(message.content)
            return None, created, None
        record = _ow_message(message, chat_id, parent_id, created)
        if attacher is not None and isinstance(message.files, list) and message.files:
            found, notes = attacher.openwebui_files(message.files, f"{paths[key]}.files", source)
            if notes:
                content = "\n\n".join(filter(None, [record.content, *notes]))
                record = replace(record, content=content)
            for file in found:
                attacher.add(record.id, file)
        return record, created, None

    messages, leaf = _flatten(
        _children(
            parents,
            {key: m.childrenIds for key, m in sources.items()},
            {key: _epoch(m.timestamp) or 0.0 for key, m in sources.items()},
        ),
        start=start,
        current=current,
        initial=None,
        visit=visit,
        loop_error=lambda: _format_error(
            source,
            "openwebui",
            f"{where}.chat.history.messages".lstrip("."),
            "some messages are not reachable from the start of the chat "
            "(their parentId links form a loop)",
        ),
    )
    chat = _imported_chat(
        chat_id, tier, item.title or body.title, created_at=start,
        updated_at=_epoch(item.updated_at) or start, active_leaf_id=leaf,
        system_prompt=system_prompt, pinned=bool(item.pinned),
    )  # fmt: skip
    return ChatRecord(chat, messages)


def _first_time(body: _OwBody) -> float | None:
    pool = body.history.messages.values() if body.history else body.messages
    times = [t for t in (_epoch(m.timestamp) for m in pool) if t is not None]
    return min(times) if times else None


def _ow_message(
    message: _OwMessage, chat_id: str, parent_id: str | None, created: float
) -> Message:
    content = _ow_text(message.content)
    reasoning = ""
    if message.role == "assistant":
        blocks = _REASONING_BLOCK.findall(content)
        if blocks:
            content = _REASONING_BLOCK.sub("", content).strip()
            reasoning = "\n\n".join(_unquote(_SUMMARY.sub("", b)) for b in blocks)
    status, error = MessageStatus.COMPLETE, None
    if message.role == "assistant":
        if message.error:
            status = MessageStatus.ERROR
            detail = message.error.get("content") if isinstance(message.error, dict) else None
            error = detail if isinstance(detail, str) else "the answer failed in Open WebUI"
        elif message.done is False:
            status = MessageStatus.PARTIAL
    usage = message.usage or {}
    prompt = usage.get("prompt_tokens", usage.get("prompt_eval_count"))
    completion = usage.get("completion_tokens", usage.get("eval_count"))
    return Message(
        id=new_id(), chat_id=chat_id, parent_id=parent_id, role=message.role, content=content,
        created_at=created, reasoning=reasoning, status=status, error=error,
        model=message.model if message.role == "assistant" else None,
        prompt_tokens=prompt if _is_count(prompt) else None,
        completion_tokens=completion if _is_count(completion) else None,
    )  # fmt: skip


def _is_count(value: Any) -> bool:
    """Whether ``value`` is a token count SQLite can store (other apps' numbers are theirs)."""
    return isinstance(value, int) and _SQLITE_INT_MIN <= value <= _SQLITE_INT_MAX


def _ow_text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n\n".join(texts)


def _unquote(block: str) -> str:
    lines = [re.sub(r"^> ?", "", line) for line in block.strip().splitlines()]
    return "\n".join(lines).strip()


# --- import: the files of other apps' exports --------------------------------------------------

_MIB = 1024 * 1024
_GIB = 1024 * _MIB
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
#: A ChatGPT export .zip larger than this is refused before it is opened.
MAX_IMPORT_ZIP_BYTES = 16 * _GIB
#: What the directory of an export .zip may declare before it is refused as a zip bomb.
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_UNPACKED_BYTES = 32 * _GIB
#: Highest unpacked/packed ratio of a member larger than ``_ZIP_RATIO_FLOOR`` (JSON text
#: packs about 10 times; a bomb's zeros a thousand times).
MAX_ZIP_RATIO = 200
_ZIP_RATIO_FLOOR = 1 * _MIB
_READ_BLOCK = 1 * _MIB


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """The ``attachments:`` settings an import of other apps' files obeys."""

    max_bytes: int = DEFAULT_MAX_BYTES


class ImportedChats(list[str]):
    """The ids of the imported chats, and what became of their messages' files.

    ``attachments`` were stored; ``missing`` ones were referred to but not in the export
    (the message says "[image not in the export: NAME]"); ``skipped`` ones were larger
    than the attachment limit (the message says so too).
    """

    def __init__(
        self, ids: Iterable[str] = (), *, attachments: int = 0, missing: int = 0, skipped: int = 0
    ) -> None:
        super().__init__(ids)
        self.attachments = attachments
        self.missing = missing
        self.skipped = skipped

    def summary(self) -> str:
        """One line for people: ``imported 2 chat(s), 3 attachment(s); 1 file ...``."""
        line = f"imported {len(self)} chat(s)"
        if self.attachments:
            line += f", {self.attachments} attachment(s)"
        problems = []
        if self.missing:
            were = "was" if self.missing == 1 else "were"
            problems.append(f"{self.missing} file(s) the messages name {were} not in the export")
        if self.skipped:
            problems.append(f"{self.skipped} file(s) over the attachment size limit were left out")
        if problems:
            line += "; " + "; ".join(problems) + " (each message says which)"
        return line


@dataclass(slots=True)
class _Report:
    attachments: int = 0
    missing: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class _ArchiveFile:
    """A file of an export .zip to attach: read when written, one at a time."""

    name: str
    declared_type: str | None
    member: zipfile.ZipInfo


class _Archive:
    """ChatGPT's export .zip: its directory checked, its files found by their id.

    Member names are lookup keys only (a name with ``..`` or a leading ``/`` finds
    nothing outside the archive, as nothing is ever written under it).
    """

    def __init__(self, archive: zipfile.ZipFile, source: str) -> None:
        self._zip = archive
        self.source = source
        members = archive.infolist()
        _check_zip_directory(members, source)
        self.by_id: dict[str, zipfile.ZipInfo] = {}
        self.conversations: zipfile.ZipInfo | None = None
        for member in members:
            if member.is_dir():
                continue
            base = _base_name(member.filename)
            if base.lower() == "conversations.json":
                shallower = self.conversations is None or member.filename.count("/") < (
                    self.conversations.filename.count("/")
                )
                if shallower:
                    self.conversations = member
                continue
            found = _FILE_ID.match(base)
            if found is not None:
                self.by_id.setdefault(found.group(1), member)

    def read(self, file: _ArchiveFile | zipfile.ZipInfo) -> bytes:
        """A member's bytes (never more than its declared size: ``zipfile`` stops there)."""
        member = file.member if isinstance(file, _ArchiveFile) else file
        shown = _base_name(member.filename)
        try:
            with self._zip.open(member) as handle:
                blocks = []
                while block := handle.read(_READ_BLOCK):
                    blocks.append(block)
        # A compression method zipfile lacks (caught before RuntimeError, its base class).
        except NotImplementedError as error:
            raise ImportFormatError(
                f"{self.source}: {shown} in the archive is packed in a way Hushchat cannot "
                f"read ({error}); unzip the export and zip it again. Nothing was imported"
            ) from error
        except RuntimeError as error:  # zipfile: "File ... is encrypted, password required"
            raise ImportFormatError(
                f"{self.source}: {shown} in the archive is password-protected; "
                "download the export from ChatGPT again. Nothing was imported"
            ) from error
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
            raise ImportFormatError(
                f"{self.source}: {shown} in the archive is damaged ({type(error).__name__}); "
                "download the export from ChatGPT again. Nothing was imported"
            ) from error
        return b"".join(blocks)


@contextlib.contextmanager
def _open_zip(target: Path | io.BytesIO, source: str) -> Iterator[_Archive]:
    """``zipfile.ZipFile`` over ``target`` as an ``_Archive``; a bad zip is ImportFormatError."""
    try:
        archive = zipfile.ZipFile(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
        raise ImportFormatError(
            f"{source} is not a readable zip archive ({error}); download the export "
            "from ChatGPT again. Nothing was imported"
        ) from error
    with archive:
        yield _Archive(archive, source)


def _check_zip_directory(members: list[zipfile.ZipInfo], source: str) -> None:
    """Refuse an archive whose directory looks like a zip bomb (nothing inflated yet)."""
    unpacked = sum(member.file_size for member in members)
    problem = ""
    if len(members) > MAX_ZIP_MEMBERS:
        problem = f"it holds {len(members):,} files, over the limit of {MAX_ZIP_MEMBERS:,}"
    elif unpacked > MAX_ZIP_UNPACKED_BYTES:
        problem = (
            f"it would unpack to {unpacked / _GIB:,.1f} GB, over the "
            f"{MAX_ZIP_UNPACKED_BYTES // _GIB} GB limit"
        )
    else:
        for member in members:
            ratio = member.file_size / max(member.compress_size, 1)
            if member.file_size > _ZIP_RATIO_FLOOR and ratio > MAX_ZIP_RATIO:
                problem = f"one file in it would grow {ratio:,.0f} times when unpacked"
                break
    if problem:
        raise ImportFormatError(
            f"{source} was not imported: {problem}, which is what a zip bomb looks like, "
            "not a ChatGPT export. Download the export from ChatGPT again, or unzip it "
            "yourself and import conversations.json alone. Nothing was imported"
        )


def _base_name(member: str) -> str:
    """The last part of a member's name (either separator): a key, never a path."""
    return member.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


# ChatGPT's file ids: "file-<id>" (file-service://) and "file_<id>" (sediment://); the
# export names a file "<id>-<original name>", "<id>.<ext>" or "<id>-<uuid>.<ext>".
_FILE_ID = re.compile(r"(file[-_][A-Za-z0-9]+)")


def _import_zip(
    library: Library,
    archive: _Archive,
    source: str,
    fmt: str | None,
    tier: Tier,
    bind: Callable[[Chat], Chat] | None,
    limits: AttachmentLimits | None,
) -> ImportedChats:
    if fmt not in (None, "chatgpt"):
        raise UsageError(
            f"{source} is a zip archive; Hushchat reads a .zip as ChatGPT's data export "
            f"only. Unzip it and import the {fmt} file inside"
        )
    if archive.conversations is None:
        raise ImportFormatError(
            f"{source} is a zip archive without conversations.json, so it is not ChatGPT's "
            "data export; import the export .zip ChatGPT emailed you, unchanged. "
            "Nothing was imported"
        )
    _check_size(archive.conversations.file_size, f"{source}: conversations.json")
    data = archive.read(archive.conversations)
    attacher = _Attacher(limits, archive)
    return _import(library, data, "chatgpt", tier, f"{source}: conversations.json", bind, attacher)


class _Attacher:
    """Collects the files of other apps' messages while their chats are read."""

    def __init__(self, limits: AttachmentLimits | None = None, archive: _Archive | None = None):
        self.limits = limits or AttachmentLimits()
        self.archive = archive
        self.report = _Report()
        self.files: _Files = {}
        self.chat_index = 0

    def add(self, message_id: str, file: _IncomingFile | _ArchiveFile) -> None:
        self.files.setdefault((self.chat_index, message_id), []).append(file)

    def _missing(self, kind: str, name: str) -> str:
        self.report.missing += 1
        return f"[{kind} not in the export: {_note_name(name)}]"

    def _too_large(self, kind: str, name: str, size: int) -> str | None:
        if size <= self.limits.max_bytes:
            return None
        self.report.skipped += 1
        limit = self.limits.max_bytes / _MIB
        return (
            f"[{kind} not imported: {_note_name(name)} is {size / _MIB:,.1f} MB, over the "
            f"{limit:,.0f} MB attachment limit]"
        )

    def chatgpt_files(
        self, parts: list[Any], metadata: dict[str, Any]
    ) -> tuple[list[_ArchiveFile], list[str]]:
        """The files a ChatGPT message refers to that the .zip holds, and the notes for
        the others: image parts (``image_asset_pointer``) and ``metadata.attachments``."""
        assert self.archive is not None
        wanted: dict[str, tuple[str | None, str | None, bool]] = {}  # id: name, type, image
        for part in parts:
            if not isinstance(part, dict) or part.get("content_type") != "image_asset_pointer":
                continue
            pointer = part.get("asset_pointer")
            # "file-service://file-<id>", "sediment://file_<id>?shared_conversation_id=..."
            tail = pointer.rsplit("/", 1)[-1] if isinstance(pointer, str) else ""
            found = _FILE_ID.match(tail)
            key = found.group(1) if found else f"#{len(wanted)}"
            wanted.setdefault(key, (None, None, True))
        listed = metadata.get("attachments")
        for item in listed if isinstance(listed, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            name, declared = item.get("name"), item.get("mime_type")
            image = wanted.get(item["id"], (None, None, False))[2]
            wanted[item["id"]] = (
                name if isinstance(name, str) and name.strip() else None,
                declared if isinstance(declared, str) else None,
                image or (isinstance(declared, str) and declared.startswith("image/")),
            )
        files: list[_ArchiveFile] = []
        notes: list[str] = []
        for key, (name, declared, image) in wanted.items():
            kind = "image" if image else "file"
            member = self.archive.by_id.get(key)
            if member is None or member.file_size == 0:
                notes.append(self._missing(kind, name or (key if key[0] != "#" else "unnamed")))
                continue
            shown = name or _member_file_name(member.filename, key)
            note = self._too_large(kind, shown, member.file_size)
            if note is not None:
                notes.append(note)
                continue
            files.append(_ArchiveFile(shown, declared, member))
        return files, notes

    def openwebui_files(
        self, entries: list[Any], where: str, source: str
    ) -> tuple[list[_IncomingFile], list[str]]:
        """An Open WebUI message's ``files``: images held as data URIs, and the text Open
        WebUI extracted from documents (their bytes are not in its export)."""
        files: list[_IncomingFile] = []
        notes: list[str] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            at = f"{where}[{index}]"
            kind = entry.get("type")
            if kind == "image":
                url = entry.get("url")
                name = _text_field(entry, "name") or f"image-{index + 1}"
                if not isinstance(url, str) or not url.startswith("data:"):
                    notes.append(self._missing("image", name))
                    continue
                data, media_type = _data_uri_image(url, f"{at}.url", source)
                note = self._too_large("image", name, len(data))
                if note is not None:
                    notes.append(note)
                    continue
                if PurePosixPath(name).suffix.lower() not in _IMAGE_SUFFIXES:
                    name += _IMAGE_SUFFIXES_BY_TYPE[media_type]
                files.append(_incoming_bytes(name, media_type, data))
            elif kind == "file":
                file = _dict_field(entry, "file")
                meta, body = _dict_field(file, "meta"), _dict_field(file, "data")
                name = (
                    _text_field(meta, "name") or _text_field(entry, "name")
                    or _text_field(file, "filename") or "document"
                )  # fmt: skip
                content = body.get("content")
                if not isinstance(content, str) or not content.strip():
                    notes.append(self._missing("file", name))
                    continue
                data = content.encode("utf-8", "replace")
                note = self._too_large("file", name, len(data))
                if note is not None:
                    notes.append(note)
                    continue
                files.append(_incoming_bytes(_text_name(name), "text/plain", data))
        return files, notes


def _note_name(name: str) -> str:
    """Another app's file name as a note shows it: one line, at most 120 characters."""
    return " ".join(name.split())[:120] or "unnamed"


def _dict_field(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def _text_field(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _member_file_name(member: str, file_id: str) -> str:
    """A file's own name from its member's name: ``file-abc-report.pdf`` -> ``report.pdf``."""
    base = _base_name(member)
    rest = base[len(file_id) :].lstrip("-_ ") if base.startswith(file_id) else base
    return base if not rest or rest.startswith(".") else rest


def _text_name(name: str) -> str:
    """The name of a document's extracted text: ``report.pdf`` -> ``report.pdf.txt``."""
    return name if PurePosixPath(name).suffix.lower() in (".txt", ".md") else f"{name}.txt"


def _incoming_bytes(name: str, media_type: str, data: bytes) -> _IncomingFile:
    return _IncomingFile(name, media_type, hashlib.sha256(data).hexdigest(), data)


_IMAGE_SUFFIXES_BY_TYPE = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
}  # fmt: skip
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp"}
_DATA_URI = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),(.*)", re.DOTALL)


def _data_uri_image(url: str, where: str, source: str) -> tuple[bytes, str]:
    """The bytes and media type of an image data URI, checked: base64, and the bytes
    are the image type the URI declares (else ImportFormatError: nothing is imported)."""

    def refused(problem: str) -> ImportFormatError:
        return _format_error(source, "openwebui", where, problem)

    found = _DATA_URI.fullmatch(url)
    if found is None or ";base64" not in found.group(2).lower():
        raise refused("is not a base64 data URI (data:image/...;base64,...)")
    declared = found.group(1).strip().lower()
    declared = "image/jpeg" if declared == "image/jpg" else declared
    if declared not in _IMAGE_SUFFIXES_BY_TYPE:
        shown = declared[:40] or "no media type"
        raise refused(f"declares {shown!r}, not a PNG, JPEG, GIF or WebP image")
    try:
        data = base64.b64decode(found.group(3).strip(), validate=True)
    except (binascii.Error, ValueError):
        raise refused("is not valid base64") from None
    if not data:
        raise refused("is empty")
    try:
        detection = detect("image" + _IMAGE_SUFFIXES_BY_TYPE[declared], data)
    except AttachmentError:
        detection = None
    if detection is None or detection.kind is not Kind.IMAGE or detection.media_type != declared:
        what = detection.media_type if detection is not None else "not a readable image"
        raise refused(f"declares {declared} but its bytes are {what}")
    return data, declared


def _archive_media_type(file: _ArchiveFile, data: bytes) -> str:
    """The media type of a file from an export .zip: its bytes decide where they have a
    signature (images, PDF, Word); the type ChatGPT listed, else the name, otherwise."""
    try:
        detection = detect(file.name, data)
    except AttachmentError:
        detection = None
    if detection is not None and detection.kind in (Kind.IMAGE, Kind.PDF, Kind.DOCX):
        return detection.media_type
    declared = file.declared_type
    signed = ("image/", "application/pdf", DOCX_MEDIA_TYPE)
    if declared and not declared.startswith(signed) and "/" in declared:
        return declared
    if detection is not None:
        return detection.media_type
    return "application/octet-stream"
