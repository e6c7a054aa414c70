"""Attachments through ChatService: inline text, long documents, images, refusals,
Ephemeral chats, export and import."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.attachments import AttachmentError, RefusalReason
from app.chat.attachments import NewAttachment
from app.chat.events import TurnFinished
from app.config import LoadedConfig, parse_config
from app.errors import UsageError
from app.store.models import Tier
from app.store.transfer import export_json
from providers import ImagesNotSupportedError
from tests.attachment_files import pdf_bytes, png_bytes
from tests.unit.chat.test_service import Harness

CONFIG = """
default_llm: local
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:1/v1', model_name: m,
     context_size: 32768}
  - {provider_name: eyes, type: openai, base_url: 'http://127.0.0.1:3/v1', model_name: gpt-4o,
     context_size: 32768}
"""


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    config = parse_config(CONFIG, "test", {}, lambda: ["openai"])
    harness.service.config = LoadedConfig(config, None, {})
    return harness


def _finished(events: Sequence[object]) -> TurnFinished:
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    return finished


async def test_a_short_text_file_goes_inline_fenced_with_its_name(
    h: Harness, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("The code word is PERIWINKLE.\n", encoding="utf-8")
    chat = await h.service.create_chat()
    files = [NewAttachment.from_path(notes)]
    (check,) = await h.service.check_attachments(chat.id, files)
    assert (check.name, check.kind, check.problem) == ("notes.txt", "text", None)
    assert check.size == notes.stat().st_size
    assert h.library.store(Tier.STANDARD).count_messages(chat.id) == 0  # a check stores nothing

    await h.run(h.service.send(chat.id, "what is the code word?", attachments=files))

    _, request = h.requests[0]
    sent = request.messages[-1].content
    assert sent.startswith("what is the code word?")
    assert "```notes.txt\nThe code word is PERIWINKLE.\n" in sent
    store = h.library.store(Tier.STANDARD)
    question = store.full_thread(chat.id)[0]
    assert question.content == "what is the code word?"  # the file is not copied into it
    by_message = await h.service.attachments(chat.id)
    (stored,) = by_message[question.id]
    assert (stored.name, stored.media_type) == ("notes.txt", "text/plain")
    data = await h.service.attachment_data(stored.id, max_bytes=1000)
    assert data == notes.read_bytes()
    with pytest.raises(UsageError, match="save it and open it"):
        await h.service.attachment_data(stored.id, max_bytes=3)
    await h.service.save_attachment(stored.id, tmp_path / "copy.txt")
    assert (tmp_path / "copy.txt").read_bytes() == notes.read_bytes()

    # The next turn still sends the file with the message it came with (re-read from the
    # store once the session cache no longer holds it).
    h.service._texts.clear()
    await h.run(h.service.send(chat.id, "and again?"))
    _, later = h.requests[-1]
    assert "PERIWINKLE" in later.messages[0].content
    assert later.messages[-1].content == "and again?"
    use = await h.service.context_use(chat.id)
    assert use.history > 0


async def test_a_message_may_be_only_an_attachment(h: Harness) -> None:
    chat = await h.service.create_chat()
    files = [NewAttachment.from_bytes("todo.md", b"# Todo\n\n- buy milk\n")]
    await h.run(h.service.send(chat.id, "", attachments=files))
    _, request = h.requests[0]
    assert request.messages[-1].content.startswith("```todo.md\n# Todo")
    with pytest.raises(UsageError, match="empty"):
        await h.run(h.service.send(chat.id, "  "))


async def test_a_long_document_sends_the_relevant_excerpt_and_records_its_source(
    h: Harness,
) -> None:
    filler = [
        [f"Chapter {n} describes the weather of region {n} in great detail."] * 60
        for n in range(1, 9)
    ]
    pages: list[list[str]] = [*filler[:6], ["The launch code is ZEBRA-42."], *filler[6:]]
    report = NewAttachment.from_bytes("report.pdf", pdf_bytes(pages))
    chat = await h.service.create_chat()

    events = await h.run(h.service.send(chat.id, "What is the launch code?", attachments=[report]))

    _, request = h.requests[0]
    sent = request.messages[-1].content
    assert sent.startswith("What is the launch code?")
    assert "Excerpts" in sent and "[report.pdf, p. 7]\nThe launch code is ZEBRA-42." in sent
    whole = sum(len(line) + 1 for page in pages for line in page)
    assert len(sent) < whole / 2  # the long document is not sent whole
    finished = _finished(events)
    assert finished.message.sources[0] == "report.pdf, p. 7"
    stored = h.library.store(Tier.STANDARD).message(finished.message.id)
    assert stored.sources == finished.message.sources
    assert h.library.store(Tier.STANDARD).count_chunks(chat.id) > 8  # indexed at send time
    shown = await h.service.full_thread(chat.id)
    assert shown[-1].sources == finished.message.sources


async def test_an_entry_without_embeddings_still_finds_excerpts_by_keywords(
    h: Harness,
) -> None:
    """The chat's entry names an embedding model its server cannot serve (the scripted
    provider has no embeddings endpoint): the keyword index still answers."""
    config = parse_config(
        CONFIG.replace("context_size: 32768}", "context_size: 32768, embedding_model: emb}", 1),
        "test", {}, lambda: ["openai"],
    )  # fmt: skip
    h.service.config = LoadedConfig(config, None, {})
    text = (
        "Nothing to see in this paragraph at all.\n\n" * 400
    ) + "The vault combination is 4-8-15."
    files = [NewAttachment.from_bytes("long.txt", text.encode())]
    chat = await h.service.create_chat()
    events = await h.run(
        h.service.send(chat.id, "what is the vault combination?", attachments=files)
    )
    assert _finished(events).message.sources == ("long.txt",)
    _, request = h.requests[0]
    assert "The vault combination is 4-8-15." in request.messages[-1].content


async def test_an_imported_long_attachment_is_indexed_at_the_next_question(
    h: Harness, tmp_path: Path
) -> None:
    text = ("Filler sentence about nothing in particular.\n\n" * 400) + "The ferry leaves at 07:45."
    chat = await h.service.create_chat()
    files = [NewAttachment.from_bytes("timetable.txt", text.encode())]
    await h.run(h.service.send(chat.id, "hello", attachments=files))
    out = tmp_path / "chat.json"
    await h.service.export_to_file([chat.id], "json", out)
    other = Harness()
    (imported,) = await other.service.import_file(out, fmt=None, tier=Tier.STANDARD)
    assert other.library.store(Tier.STANDARD).count_chunks(imported) == 0

    events = await other.run(other.service.send(imported, "when does the ferry leave?"))

    assert _finished(events).message.sources == ("timetable.txt",)
    _, request = other.requests[0]
    assert "The ferry leaves at 07:45." in request.messages[-1].content
    assert other.library.store(Tier.STANDARD).count_chunks(imported) > 0


async def test_an_image_reaches_a_vision_model(h: Harness) -> None:
    picture = png_bytes(4, 3)
    chat = await h.service.create_chat(provider="eyes")
    files = [NewAttachment.from_bytes("shot.png", picture)]
    (check,) = await h.service.check_attachments(chat.id, files)
    assert (check.kind, check.problem) == ("image", None)

    await h.run(h.service.send(chat.id, "what is this?", attachments=files))

    _, request = h.requests[0]
    (image,) = request.messages[-1].images
    assert (image.media_type, image.data) == ("image/png", picture)
    assert request.messages[-1].content == "what is this?"


async def test_an_image_for_a_model_without_vision_is_refused_before_anything_is_saved(
    h: Harness,
) -> None:
    chat = await h.service.create_chat(provider="local")
    files = [NewAttachment.from_bytes("shot.png", png_bytes(4, 3))]
    (check,) = await h.service.check_attachments(chat.id, files)
    assert check.problem is not None and "vision: true" in check.problem

    with pytest.raises(ImagesNotSupportedError, match="not known to accept images"):
        await h.run(h.service.send(chat.id, "what is this?", attachments=files))
    assert h.library.store(Tier.STANDARD).count_messages(chat.id) == 0
    assert await h.service.attachments(chat.id) == {}
    assert h.requests == []


async def test_after_a_switch_to_a_model_without_vision_an_image_question_is_not_answered_blind(
    h: Harness,
) -> None:
    chat = await h.service.create_chat(provider="eyes")
    files = [NewAttachment.from_bytes("shot.png", png_bytes(4, 3))]
    await h.run(h.service.send(chat.id, "what is this?", attachments=files))
    await h.service.update(chat.id, provider="local")
    store = h.library.store(Tier.STANDARD)
    question = store.full_thread(chat.id)[0]
    count, sent = store.count_messages(chat.id), len(h.requests)

    # Answering that question again would answer it without its picture: refused.
    with pytest.raises(ImagesNotSupportedError, match="not known to accept images"):
        await h.run(h.service.regenerate(chat.id))
    with pytest.raises(ImagesNotSupportedError, match="not known to accept images"):
        await h.run(h.service.edit(question.id, "and now?"))
    assert store.count_messages(chat.id) == count
    assert len(h.requests) == sent

    # A later question is answered; the model is told the earlier picture is not shown.
    await h.run(h.service.send(chat.id, "thanks, and what is 2 + 2?"))
    _, request = h.requests[-1]
    first = request.messages[0]
    assert not first.images
    assert first.content == (
        "what is this?\n\n[image 'shot.png' not shown: this model does not take images]"
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", RefusalReason.EMPTY),
        ("tool.bin", b"\x7fELF\x02\x01\x01" + bytes(64), RefusalReason.UNSUPPORTED_TYPE),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", RefusalReason.DAMAGED),
    ],
)
async def test_refused_files_save_nothing_and_send_nothing(
    h: Harness, name: str, content: bytes, reason: RefusalReason
) -> None:
    chat = await h.service.create_chat()
    files = [NewAttachment.from_bytes("fine.txt", b"fine"), NewAttachment.from_bytes(name, content)]
    checks = await h.service.check_attachments(chat.id, files)
    assert checks[0].problem is None
    assert checks[1].problem is not None and name in checks[1].problem

    with pytest.raises(AttachmentError) as refused:
        await h.run(h.service.send(chat.id, "look", attachments=files))
    assert refused.value.reason is reason
    assert h.library.store(Tier.STANDARD).count_messages(chat.id) == 0
    assert await h.service.attachments(chat.id) == {}
    assert h.requests == []


async def test_a_file_over_the_limit_is_refused_before_it_is_read(
    h: Harness, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as handle:  # sparse: 51 MB on paper, nothing on disk
        handle.truncate(51 * 1024 * 1024)
    chat = await h.service.create_chat()
    files = [NewAttachment.from_path(big)]
    (check,) = await h.service.check_attachments(chat.id, files)
    assert check.problem is not None and "over the 50 MB limit" in check.problem
    with pytest.raises(AttachmentError) as refused:
        await h.run(h.service.send(chat.id, "look", attachments=files))
    assert refused.value.reason is RefusalReason.TOO_LARGE
    assert h.library.store(Tier.STANDARD).count_messages(chat.id) == 0
    assert h.requests == []


async def test_an_ephemeral_attachment_leaves_no_file(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    chat = await h.service.create_chat(Tier.EPHEMERAL)
    sentinel = b"EPHEMERAL-SENTINEL-7731"
    files = [
        NewAttachment.from_bytes("secret.txt", b"note: " + sentinel),
        NewAttachment.from_bytes("long.txt", (b"filler words here. " * 800) + sentinel),
    ]
    await h.run(h.service.send(chat.id, "what is the sentinel?", attachments=files))
    await h.service.export_to_file([chat.id], "json", tmp_path / "out.json")  # not under home

    assert h.library.store(Tier.EPHEMERAL).count_messages(chat.id) == 2
    assert len((await h.service.attachments(chat.id))[_question(h, chat.id)]) == 2
    _, request = h.requests[0]
    assert sentinel.decode() in request.messages[-1].content
    left = [p for root in (home, temp) for p in root.rglob("*")]
    assert left == []
    assert h.library.store(Tier.STANDARD).count_messages() == 0


def _question(h: Harness, chat_id: str) -> str:
    return h.library.store(Tier.EPHEMERAL).full_thread(chat_id)[0].id


async def test_json_export_round_trip_keeps_attachments_byte_for_byte(
    h: Harness, tmp_path: Path
) -> None:
    picture = png_bytes(5, 5)
    chat = await h.service.create_chat(provider="eyes")
    files = [
        NewAttachment.from_bytes("notes.txt", b"alpha beta"),
        NewAttachment.from_bytes("shot.png", picture),
    ]
    await h.run(h.service.send(chat.id, "hi", attachments=files))
    out = tmp_path / "chats.json"
    await h.service.export_to_file([chat.id], "json", out)
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["version"] == 3
    question = next(m for m in exported["chats"][0]["messages"] if m["role"] == "user")
    assert [(a["name"], a["media_type"]) for a in question["attachments"]] == [
        ("notes.txt", "text/plain"),
        ("shot.png", "image/png"),
    ]
    assert base64.b64decode(question["attachments"][1]["data"]) == picture

    other = Harness()
    (imported,) = await other.service.import_file(out, fmt=None, tier=Tier.PRIVATE)
    by_message = await other.service.attachments(imported)
    (items,) = by_message.values()
    originals = [a for group in (await h.service.attachments(chat.id)).values() for a in group]
    assert [(a.name, a.sha256) for a in items] == [(a.name, a.sha256) for a in originals]
    assert await other.service.attachment_data(items[1].id, max_bytes=10_000) == picture

    # A damaged file (bytes not matching the sha256) imports nothing.
    question["attachments"][0]["data"] = base64.b64encode(b"alpha gamma").decode()
    question["id"] = "0" * 32
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(exported), encoding="utf-8")
    with pytest.raises(UsageError, match="does not match its sha256"):
        await other.service.import_file(damaged, fmt=None, tier=Tier.STANDARD)
    assert other.library.store(Tier.STANDARD).count_messages() == 0


async def test_a_version_2_export_still_imports(h: Harness, tmp_path: Path) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "hello"))
    data = export_json(h.library, [chat.id])
    data["version"] = 2
    for message in data["chats"][0]["messages"]:
        del message["sources"], message["attachments"]
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    other = Harness()
    (imported,) = await other.service.import_file(path, fmt=None, tier=Tier.STANDARD)
    thread = await other.service.full_thread(imported)
    assert [m.content for m in thread] == ["hello", "Hello there"]


async def test_markdown_export_writes_the_attachments_beside_the_file(
    h: Harness, tmp_path: Path
) -> None:
    chat = await h.service.create_chat()
    files = [
        NewAttachment.from_bytes("notes.txt", b"one"),
        NewAttachment.from_bytes("sub/notes.txt", b"two"),
    ]
    await h.run(h.service.send(chat.id, "hi", attachments=files))
    out = tmp_path / "chat.md"
    await h.service.export_to_file([chat.id], "md", out)
    folder = tmp_path / "chat.md.attachments"
    assert sorted(p.name for p in folder.iterdir()) == ["2-notes.txt", "notes.txt"]
    assert (folder / "notes.txt").read_bytes() == b"one"
    assert (folder / "2-notes.txt").read_bytes() == b"two"
    text = out.read_text(encoding="utf-8")
    assert "- Attachment: [notes.txt](<chat.md.attachments/notes.txt>) (3 bytes)" in text
    assert "(<chat.md.attachments/2-notes.txt>)" in text
    # To stdout (no file): the names only, nothing written.
    assert "- Attachment: notes.txt (3 bytes)" in await h.service.export([chat.id], "md")
    names = sorted(p.name for p in tmp_path.glob("*"))  # noqa: ASYNC240 (a test, after the work)
    assert names == ["chat.md", "chat.md.attachments"]


async def test_an_edited_question_keeps_its_files(h: Harness) -> None:
    chat = await h.service.create_chat()
    files = [NewAttachment.from_bytes("notes.txt", b"The code word is PERIWINKLE.")]
    await h.run(h.service.send(chat.id, "what is the code word?", attachments=files))
    question = (await h.service.full_thread(chat.id))[0]

    await h.run(h.service.edit(question.id, "tell me the code word"))

    edited = (await h.service.full_thread(chat.id))[0]
    assert edited.id != question.id and edited.versions == 2
    by_message = await h.service.attachments(chat.id)
    assert [a.name for a in by_message[edited.id]] == ["notes.txt"]
    assert [a.name for a in by_message[question.id]] == ["notes.txt"]
    _, request = h.requests[-1]
    assert "PERIWINKLE" in request.messages[-1].content
    # Deleting one version leaves the other's file readable (the bytes are shared).
    await h.service.delete_message(question.id)
    (kept,) = (await h.service.attachments(chat.id))[edited.id]
    assert await h.service.attachment_data(kept.id, max_bytes=100) == files[0].data
