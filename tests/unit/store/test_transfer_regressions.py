"""Exports the fuzzer (tests/fuzz/test_importers.py) found to crash the importers.

A lone UTF-16 surrogate ("\\ud83d", what JavaScript writes for an emoji cut in half) in
any string made SQLite raise UnicodeEncodeError mid-import. It becomes U+FFFD.

A token count beyond SQLite's INTEGER range made the insert raise OverflowError: our own
format refuses it, another app's count is taken as unknown.

A ChatGPT message part whose ``content_type`` is a list raised TypeError (unhashable).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.store.library import Library, memory_connection
from app.store.transfer import ImportFormatError, export_json, import_chats

FIXTURES = Path(__file__).parents[2] / "fixtures" / "transfer"


@pytest.fixture
def library() -> Library:
    return Library(memory_connection(), memory_connection())


def test_lone_surrogates_in_an_open_webui_export_become_replacement_characters(
    library: Library,
) -> None:
    chats = json.loads((FIXTURES / "openwebui_export.json").read_text())
    chats[0]["title"] = "Rust \ud83d"
    message = next(iter(chats[0]["chat"]["history"]["messages"].values()))
    message["content"] = "cut \udfff here"
    chat_id = import_chats(library, json.dumps(chats), fmt="openwebui")[0]
    exported = export_json(library, [chat_id])["chats"][0]
    assert exported["title"] == "Rust \ufffd"
    assert "cut \ufffd here" in [m["content"] for m in exported["messages"]]


def test_lone_surrogates_in_our_own_format_are_replaced(library: Library) -> None:
    export = json.loads((FIXTURES / "hushchat.json").read_text())
    export["chats"][0]["memory"] = "\ud800"
    export["chats"][0]["messages"][0]["model"] = "\udbff\udbff"
    chat_id = import_chats(library, json.dumps(export), fmt="hushchat")[0]
    exported = export_json(library, [chat_id])["chats"][0]
    assert exported["memory"] == "\ufffd"
    assert exported["messages"][0]["model"] == "\ufffd\ufffd"


def test_a_pair_of_surrogate_escapes_is_one_character(library: Library) -> None:
    """Not a crash: the fix must leave an escaped pair (an emoji) alone."""
    export = json.loads((FIXTURES / "hushchat.json").read_text())
    export["chats"][0]["title"] = "\U0001f600"  # json.dumps writes "\ud83d\ude00"
    chat_id = import_chats(library, json.dumps(export), fmt="hushchat")[0]
    assert export_json(library, [chat_id])["chats"][0]["title"] == "\U0001f600"


def test_a_count_too_large_for_sqlite_is_refused_in_our_own_format(library: Library) -> None:
    # 2**64 tokens made the INSERT raise OverflowError, not ImportFormatError.
    export = json.loads((FIXTURES / "hushchat.json").read_text())
    export["chats"][0]["messages"][1]["prompt_tokens"] = 2**64
    with pytest.raises(ImportFormatError, match=r"chats\[0\]\.messages\[1\]\.prompt_tokens"):
        import_chats(library, json.dumps(export), fmt="hushchat")
    assert library.list_chats() == []


def test_a_count_too_large_for_sqlite_from_open_webui_is_unknown(library: Library) -> None:
    chats = json.loads((FIXTURES / "openwebui_export.json").read_text())
    for message in chats[0]["chat"]["history"]["messages"].values():
        message["usage"] = {"prompt_tokens": 2**64, "completion_tokens": -(2**70)}
    chat_id = import_chats(library, json.dumps(chats), fmt="openwebui")[0]
    messages = export_json(library, [chat_id])["chats"][0]["messages"]
    assert {(m["prompt_tokens"], m["completion_tokens"]) for m in messages} == {(None, None)}


def test_a_chatgpt_part_whose_content_type_is_a_list_is_an_attachment(library: Library) -> None:
    # `kind not in _SILENT_PARTS` raised TypeError: unhashable type: 'list'.
    conversations = json.loads((FIXTURES / "chatgpt_conversations.json").read_text())
    node = next(
        node
        for node in conversations[0]["mapping"].values()
        if node.get("message") and node["message"]["author"]["role"] == "user"
    )
    node["message"]["content"] = {
        "content_type": "multimodal_text",
        "parts": [{"content_type": ["image_asset_pointer"]}, "What is this?"],
    }
    chat_id = import_chats(library, json.dumps(conversations), fmt="chatgpt")[0]
    contents = [m["content"] for m in export_json(library, [chat_id])["chats"][0]["messages"]]
    assert "[attachment not imported]\n\nWhat is this?" in contents
