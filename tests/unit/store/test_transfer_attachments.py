"""Import of other apps' files: ChatGPT's export .zip, and Open WebUI's message ``files``.

The shapes read here, as ChatGPT and Open WebUI write them (fixtures are built by the
tests; the bytes of images come from ``tests.attachment_files.png_bytes``):

ChatGPT's data export (Settings, Data controls, Export data) is a .zip holding
``conversations.json`` and the files of the messages, at the archive root or in folders:
``file-<id>-<original name>`` (uploads, older exports), ``file_<id>-<uuid>.png`` and
``user-<uid>/file_<id>-<uuid>.png`` (newer ones), ``dalle-generations/file-<id>-<uuid>.webp``
(generated images); some are named ``.dat`` whatever their content. A message refers to
its files in two ways (observed in exports; OpenAI documents neither):

- ``content.content_type == "multimodal_text"`` with parts such as
  ``{"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-<id>"
  or "sediment://file_<id>", "size_bytes": ..., "width": ..., "height": ...}``;
- ``message.metadata.attachments``: ``[{"id": "file-<id>", "name": "report.pdf",
  "mime_type": "application/pdf", "size": 12345}]`` (an uploaded image is listed here
  and in the parts: one attachment).

Open WebUI (``src/lib/components/chat/MessageInput.svelte`` builds a message's ``files``,
``Chat.svelte`` stores them on the user message in ``chat.history.messages[id].files``;
the backend's ``models/files.py`` ``FileModel`` is what ``file`` holds):

- an image pasted or picked: ``{"type": "image", "url": "data:image/png;base64,..."}``
  (newer versions upload it and ``url`` is the file's id or ``/api/v1/files/<id>/content``:
  the bytes are then not in the export);
- a document: ``{"type": "file", "id": ..., "name": "report.pdf", "url": ...,
  "file": {"id": ..., "filename": ..., "data": {"content": "<the text Open WebUI
  extracted>"}, "meta": {"name": "report.pdf", "content_type": "application/pdf",
  "size": 1234, "collection_name": ...}}}``: the original bytes are not in the export, the
  extracted text becomes a text attachment ``report.pdf.txt``.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.errors import UsageError
from app.store import transfer
from app.store.chats import ChatStore
from app.store.library import Library
from app.store.models import Tier
from app.store.transfer import AttachmentLimits, ImportedChats, ImportFormatError, import_chats
from app.store.transfer import import_file as import_path
from app.vault.database import create_database, open_database
from tests.attachment_files import png_bytes

PNG = png_bytes(4, 3)
OTHER_PNG = png_bytes(5, 2)
SENTINEL = "wombatsentinel-91c2"


# --- fixtures built here ---------------------------------------------------------------------


def gpt_message(role: str, *parts: Any, attachments: list[dict[str, Any]] | None = None) -> Any:
    multimodal = any(not isinstance(part, str) for part in parts)
    content = {"content_type": "multimodal_text" if multimodal else "text", "parts": list(parts)}
    metadata: dict[str, Any] = {"attachments": attachments} if attachments else {}
    return {"author": {"role": role}, "content": content, "metadata": metadata}


def gpt_conversation(*messages: Any, title: str = "Pictures") -> dict[str, Any]:
    mapping: dict[str, Any] = {"root": {"message": None, "parent": None, "children": ["m0"]}}
    for index, message in enumerate(messages):
        last = index == len(messages) - 1
        mapping[f"m{index}"] = {
            "message": {**message, "create_time": 1_700_000_000 + index},
            "parent": "root" if index == 0 else f"m{index - 1}",
            "children": [] if last else [f"m{index + 1}"],
        }
    return {
        "title": title,
        "create_time": 1_700_000_000,
        "update_time": 1_700_000_100,
        "mapping": mapping,
        "current_node": f"m{len(messages) - 1}",
    }


def image_part(pointer: str) -> dict[str, Any]:
    return {"content_type": "image_asset_pointer", "asset_pointer": pointer, "width": 4}


def export_zip(
    conversations: list[Any], members: dict[str, bytes], *, json_name: str = ""
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(json_name or "conversations.json", json.dumps(conversations))
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def picture_chat() -> list[Any]:
    """A user uploads a photo and a text file, the answer has a generated image, and a
    later question shows an image from a newer export (sediment://)."""
    return [
        gpt_conversation(
            gpt_message(
                "user",
                image_part("file-service://file-AbC123"),
                "what is in this photo and the notes?",
                attachments=[
                    {"id": "file-AbC123", "name": "photo.png", "mime_type": "image/png"},
                    {"id": "file-Notes9", "name": "notes.txt", "mime_type": "text/plain"},
                ],
            ),
            gpt_message("assistant", "A grey square."),
            gpt_message("user", "draw another"),
            gpt_message("assistant", image_part("sediment://file_00000000ab12cd34")),
            gpt_message("user", image_part("sediment://file_00000000ee99ff00"), "and this?"),
            gpt_message("assistant", "Also grey."),
        )
    ]


PICTURE_MEMBERS = {
    "file-AbC123-photo.png": PNG,
    "file-Notes9-notes.txt": f"shopping: quokka food, {SENTINEL}\n".encode(),
    "dalle-generations/file_00000000ab12cd34-5f1e0c3a.webp": OTHER_PNG,  # named .webp, a PNG
    "user-u1/file_00000000ee99ff00-8c2d.dat": PNG,
    "chat.html": b"<html>not read</html>",
}


def files_of(store: ChatStore, chat_id: str) -> list[tuple[str, str, str, bytes]]:
    """(role, name, media type, bytes) of each attachment of the chat's shown thread."""
    found = []
    for message in store.full_thread(chat_id):
        for attachment in store.attachments(message.id):
            data = b"".join(store.read_attachment(attachment.id))
            found.append((message.role, attachment.name, attachment.media_type, data))
    return found


def counts(library: Library) -> tuple[int, int, int]:
    store = library.store(Tier.STANDARD)
    conn = store._conn
    blobs = int(conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0])
    return len(store.list_chats()), store.count_messages(), blobs


# --- ChatGPT's .zip --------------------------------------------------------------------------


def test_a_chatgpt_zip_brings_the_files_of_its_messages(library: Library, tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(export_zip(picture_chat(), PICTURE_MEMBERS))

    imported = import_path(library, path)

    assert isinstance(imported, ImportedChats)
    assert (len(imported), imported.attachments, imported.missing, imported.skipped) == (1, 4, 0, 0)
    assert imported.summary() == "imported 1 chat(s), 4 attachment(s)"
    store = library.store(Tier.STANDARD)
    assert files_of(store, imported[0]) == [
        ("user", "photo.png", "image/png", PNG),
        ("user", "notes.txt", "text/plain", PICTURE_MEMBERS["file-Notes9-notes.txt"]),
        # The bytes decide an image's type, whatever the name says.
        ("assistant", "5f1e0c3a.webp", "image/png", OTHER_PNG),
        ("user", "8c2d.dat", "image/png", PNG),
    ]
    thread = store.full_thread(imported[0])
    assert [m.content for m in thread] == [
        "what is in this photo and the notes?", "A grey square.", "draw another", "",
        "and this?", "Also grey.",
    ]  # fmt: skip
    # The same bytes twice (photo.png and 8c2d.dat) are stored once.
    assert counts(library)[2] == 3


def test_an_image_a_tool_made_goes_to_the_answer_that_follows(library: Library) -> None:
    tool = gpt_message("tool", image_part("sediment://file_00000000dd11ee22"))
    conversation = gpt_conversation(
        gpt_message("user", "draw a quokka"), tool, gpt_message("assistant", "Here it is.")
    )
    members = {"dalle-generations/file_00000000dd11ee22-0a1b.webp": OTHER_PNG}
    imported = import_chats(library, export_zip([conversation], members))
    store = library.store(Tier.STANDARD)
    assert files_of(store, imported[0]) == [("assistant", "0a1b.webp", "image/png", OTHER_PNG)]
    assert [m.content for m in store.full_thread(imported[0])] == ["draw a quokka", "Here it is."]


def test_a_plain_conversations_json_keeps_its_notes(library: Library) -> None:
    [chat_id] = import_chats(library, json.dumps(picture_chat()))
    store = library.store(Tier.STANDARD)
    assert files_of(store, chat_id) == []
    first = store.full_thread(chat_id)[0]
    assert first.content == "[image not imported]\n\nwhat is in this photo and the notes?"


def test_a_file_missing_from_the_zip_leaves_a_note(library: Library) -> None:
    members = {k: v for k, v in PICTURE_MEMBERS.items() if "AbC123" not in k and "Notes9" not in k}
    imported = import_chats(library, export_zip(picture_chat(), members))
    assert (imported.attachments, imported.missing, imported.skipped) == (2, 2, 0)
    assert "2 file(s) the messages name were not in the export" in imported.summary()
    first = library.store(Tier.STANDARD).full_thread(imported[0])[0]
    assert first.content == (
        "what is in this photo and the notes?\n\n[image not in the export: photo.png]"
        "\n\n[file not in the export: notes.txt]"
    )


def test_a_note_shows_a_missing_file_name_on_one_line(library: Library) -> None:
    listed = {"id": "file-Gone1", "name": "two\nlines\t" + "x" * 300, "mime_type": "text/plain"}
    conversation = gpt_conversation(gpt_message("user", "see", attachments=[listed]))
    imported = import_chats(library, export_zip([conversation], {}))
    first = library.store(Tier.STANDARD).full_thread(imported[0])[0]
    assert first.content == "see\n\n[file not in the export: two lines " + "x" * 110 + "]"


def test_a_file_over_the_attachment_limit_is_left_out_with_a_note(library: Library) -> None:
    big = {**PICTURE_MEMBERS, "file-Notes9-notes.txt": b"x" * 5000}
    imported = import_chats(
        library, export_zip(picture_chat(), big), limits=AttachmentLimits(max_bytes=4000)
    )
    assert (imported.attachments, imported.missing, imported.skipped) == (3, 0, 1)
    assert "1 file(s) over the attachment size limit were left out" in imported.summary()
    first = library.store(Tier.STANDARD).full_thread(imported[0])[0]
    assert first.content.endswith(
        "[file not imported: notes.txt is 0.0 MB, over the 0 MB attachment limit]"
    )
    assert [name for _, name, _, _ in files_of(library.store(Tier.STANDARD), imported[0])] == [
        "photo.png", "5f1e0c3a.webp", "8c2d.dat",
    ]  # fmt: skip


def test_member_names_are_lookup_keys_never_paths(library: Library, tmp_path: Path) -> None:
    folder = tmp_path / "in" / "deep"
    folder.mkdir(parents=True)
    members = {
        "../../file-AbC123-photo.png": PNG,
        "/etc/file-Notes9-notes.txt": b"notes\n",
        "..\\..\\file_00000000ab12cd34-evil.png": OTHER_PNG,
    }
    path = folder / "export.zip"
    path.write_bytes(export_zip(picture_chat(), members, json_name="../conversations.json"))
    before = sorted(p for p in tmp_path.rglob("*"))

    imported = import_path(library, path)

    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    names = [name for _, name, _, _ in files_of(library.store(Tier.STANDARD), imported[0])]
    assert names == ["photo.png", "notes.txt", "evil.png"]
    assert imported.missing == 1  # file_00000000ee99ff00 is not in this archive


def test_a_zip_bomb_is_refused_whole(library: Library) -> None:
    bomb = {**PICTURE_MEMBERS, "file-AbC123-photo.png": bytes(20 * 1024 * 1024)}
    data = export_zip(picture_chat(), bomb)
    assert len(data) < 200_000  # 20 MB of zeros packs to about 20 KB
    with pytest.raises(ImportFormatError) as caught:
        import_chats(library, data, source="export.zip")
    message = str(caught.value)
    assert message.startswith("export.zip was not imported: one file in it would grow")
    assert "zip bomb" in message and message.endswith("Nothing was imported")
    assert counts(library) == (0, 0, 0)


@pytest.mark.parametrize(
    ("limit", "value", "problem"),
    [
        ("MAX_ZIP_MEMBERS", 3, "it holds 6 files, over the limit of 3"),
        ("MAX_ZIP_UNPACKED_BYTES", 1000, "it would unpack to 0.0 GB, over the 0 GB limit"),
    ],
)
def test_a_zip_with_too_many_or_too_large_members_is_refused(
    library: Library, monkeypatch: pytest.MonkeyPatch, limit: str, value: int, problem: str
) -> None:
    monkeypatch.setattr(transfer, limit, value)
    with pytest.raises(ImportFormatError, match=f"^x.zip was not imported: {problem}, which"):
        import_chats(library, export_zip(picture_chat(), PICTURE_MEMBERS), source="x.zip")
    assert counts(library) == (0, 0, 0)


def test_a_damaged_member_imports_nothing(library: Library) -> None:
    data = bytearray(export_zip(picture_chat(), {**PICTURE_MEMBERS, "file-Notes9-n.txt": b""}))
    # Damage the stored bytes of the last file read (the PNG read first stays good).
    member = b"user-u1/file_00000000ee99ff00-8c2d.dat"
    start = data.index(member) + len(member)
    data[start + 5 : start + 25] = bytes(20)
    with pytest.raises(ImportFormatError, match=r"8c2d\.dat in the archive is damaged"):
        import_chats(library, bytes(data), source="x.zip")
    assert counts(library) == (0, 0, 0)


def test_a_member_packed_in_an_unknown_way_imports_nothing(library: Library) -> None:
    data = bytearray(export_zip(picture_chat(), PICTURE_MEMBERS))
    # Set the compression method of conversations.json (local header and directory) to 99.
    for header in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.index(header)
        offset = 8 if header == b"PK\x03\x04" else 10
        data[at + offset : at + offset + 2] = (99).to_bytes(2, "little")
    with pytest.raises(ImportFormatError, match="packed in a way Hushchat cannot read"):
        import_chats(library, bytes(data), source="x.zip")
    assert counts(library) == (0, 0, 0)


def test_a_zip_that_is_not_a_chatgpt_export_is_refused(library: Library) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photos/cat.png", PNG)
    with pytest.raises(ImportFormatError, match=r"without conversations\.json"):
        import_chats(library, buffer.getvalue(), source="x.zip")
    with pytest.raises(UsageError, match=r"reads a \.zip as ChatGPT's data export only"):
        import_chats(library, export_zip(picture_chat(), {}), fmt="openwebui", source="x.zip")
    with pytest.raises(ImportFormatError, match="not a readable zip archive"):
        import_chats(library, b"PK\x03\x04 truncated", source="x.zip")
    assert counts(library) == (0, 0, 0)


def test_an_imported_file_is_not_in_plaintext_on_disk(tmp_path: Path) -> None:
    folder = tmp_path / "profile"
    folder.mkdir()
    key = secrets.token_bytes(32)
    create_database(folder / "standard.db", key)
    library = Library(open_database(folder / "standard.db", key), None)
    source = tmp_path / "export.zip"
    source.write_bytes(export_zip(picture_chat(), PICTURE_MEMBERS))
    imported = import_path(library, source)
    store = library.store(Tier.STANDARD)
    assert any(SENTINEL.encode() in data for *_, data in files_of(store, imported[0]))
    library.close()
    on_disk = [p for p in folder.iterdir() if p.is_file()]
    assert on_disk
    assert [p.name for p in on_disk if SENTINEL.encode() in p.read_bytes()] == []


# --- Open WebUI ------------------------------------------------------------------------------


def data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def webui_chat(files: list[Any]) -> list[Any]:
    user = {
        "id": "u1", "parentId": None, "childrenIds": ["a1"], "role": "user",
        "content": "compare these", "timestamp": 1_700_000_000, "files": files,
    }  # fmt: skip
    reply = {
        "id": "a1", "parentId": "u1", "childrenIds": [], "role": "assistant",
        "content": "They match.", "timestamp": 1_700_000_001, "model": "llama3",
    }  # fmt: skip
    body = {"title": "Files", "history": {"messages": {"u1": user, "a1": reply}, "currentId": "a1"}}
    return [{"title": "Files", "chat": body, "created_at": 1_700_000_000}]


def document(name: str, content: str | None) -> dict[str, Any]:
    data = {"content": content} if content is not None else {}
    meta = {"name": name, "content_type": "application/pdf", "size": 1234}
    return {
        "type": "file", "id": "f1", "name": name, "url": "/api/v1/files/f1", "status": "uploaded",
        "file": {"id": "f1", "filename": name, "data": data, "meta": meta},
    }  # fmt: skip


def test_open_webui_images_and_document_text_become_attachments(library: Library) -> None:
    report = f"Quarterly report.\n\nRevenue rose. {SENTINEL}"
    files = [
        {"type": "image", "url": data_uri("image/png", PNG)},
        document("report.pdf", report),
        document("notes.md", "# Notes"),
        {"type": "image", "url": "/api/v1/files/abc/content", "name": "uploaded.png"},
        document("scan.pdf", None),
        {"type": "collection", "name": "Knowledge"},  # a knowledge base: nothing to import
    ]
    imported = import_chats(library, json.dumps(webui_chat(files)))
    assert (imported.attachments, imported.missing, imported.skipped) == (3, 2, 0)
    store = library.store(Tier.STANDARD)
    assert files_of(store, imported[0]) == [
        ("user", "image-1.png", "image/png", PNG),
        ("user", "report.pdf.txt", "text/plain", report.encode()),
        ("user", "notes.md", "text/plain", b"# Notes"),
    ]
    question, answer = store.full_thread(imported[0])
    assert question.content == (
        "compare these\n\n[image not in the export: uploaded.png]"
        "\n\n[file not in the export: scan.pdf]"
    )
    assert answer.content == "They match."


@pytest.mark.parametrize("files", [None, {}, "report.pdf", [None, 3, "x", {"type": "image"}]])
def test_open_webui_files_of_other_shapes_are_ignored(library: Library, files: Any) -> None:
    imported = import_chats(library, json.dumps(webui_chat(files)))
    assert imported.attachments == 0
    question = library.store(Tier.STANDARD).full_thread(imported[0])[0]
    lost = "\n\n[image not in the export: image-4]" if isinstance(files, list) else ""
    assert question.content == "compare these" + lost


def test_an_open_webui_image_over_the_limit_is_left_out(library: Library) -> None:
    files = [{"type": "image", "url": data_uri("image/png", PNG)}]
    imported = import_chats(
        library, json.dumps(webui_chat(files)), limits=AttachmentLimits(max_bytes=len(PNG) - 1)
    )
    assert (imported.attachments, imported.skipped) == (0, 1)
    assert "[image not imported: image-1 is 0.0 MB, over the 0 MB attachment limit]" in (
        library.store(Tier.STANDARD).full_thread(imported[0])[0].content
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (data_uri("image/jpeg", PNG), "declares image/jpeg but its bytes are image/png"),
        (data_uri("image/png", b"GIF89a" + bytes(20)), "declares image/png but its bytes are"),
        (data_uri("image/png", b"just text"), "its bytes are not a readable image"),
        ("data:image/png;base64,***not base64***", "is not valid base64"),
        ("data:image/png," + "x" * 10, "is not a base64 data URI"),
        (data_uri("image/svg+xml", b"<svg/>"), "'image/svg+xml', not a PNG, JPEG, GIF or WebP"),
        ("data:image/png;base64,", "is empty"),
    ],
)
def test_a_bad_open_webui_data_uri_imports_nothing(
    library: Library, url: str, problem: str
) -> None:
    good = {"type": "image", "url": data_uri("image/png", PNG)}
    chats = webui_chat([good]) + webui_chat([good, {"type": "image", "url": url}])
    with pytest.raises(ImportFormatError) as caught:
        import_chats(library, json.dumps(chats), source="webui.json")
    message = str(caught.value)
    assert message.startswith("webui.json: chats[1].chat.history.messages.u1.files[1].url: ")
    assert problem in message and message.endswith("Nothing was imported")
    assert counts(library) == (0, 0, 0)


# --- through the chat service ----------------------------------------------------------------


async def test_an_imported_long_document_is_retrieved_at_the_next_question(
    tmp_path: Path,
) -> None:
    """The service indexes an imported long document when the chat is next asked about it
    (the path sent documents take, embeddings included where the tier allows)."""
    from app.chat.events import TurnFinished
    from tests.unit.chat.test_service import Harness

    h = Harness()
    text = ("Filler sentence about nothing in particular.\n\n" * 400) + "The ferry leaves at 07:45."
    timetable = {"id": "file-Tt1", "name": "timetable.txt", "mime_type": "text/plain"}
    conversation = gpt_conversation(
        gpt_message("user", "here is the timetable", attachments=[timetable]),
        gpt_message("assistant", "Noted."),
    )
    path = tmp_path / "export.zip"
    path.write_bytes(export_zip([conversation], {"file-Tt1-timetable.txt": text.encode()}))
    imported = await h.service.import_file(path, fmt=None, tier=Tier.STANDARD)
    assert imported.summary() == "imported 1 chat(s), 1 attachment(s)"

    events = await h.run(h.service.send(imported[0], "when does the ferry leave?"))

    [finished] = [event for event in events if isinstance(event, TurnFinished)]
    assert finished.message.sources == ("timetable.txt",)
    _, request = h.requests[0]
    assert "The ferry leaves at 07:45." in request.messages[-1].content
