"""Export to Markdown and JSON; import of our JSON, ChatGPT's and Open WebUI's exports."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3

from app.errors import UsageError
from app.store import transfer
from app.store.chats import ChatNotFoundError, StorageError
from app.store.library import Library, memory_connection
from app.store.models import ChatParams, Message, MessageStatus, Tier, TitleSource
from app.store.transfer import (
    EXPORT_FORMAT,
    IMPORTED_TITLE,
    ImportFormatError,
    export_json,
    export_markdown,
    import_chats,
    import_file,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "transfer"

CHAT_FIELDS = {
    "id", "title", "title_source", "tier", "system_prompt", "memory", "provider", "model",
    "pinned", "created_at", "updated_at", "active_leaf_id", "params", "messages",
}  # fmt: skip
MESSAGE_FIELDS = {
    "id", "parent_id", "role", "content", "reasoning", "status", "error", "provider", "model",
    "prompt_tokens", "completion_tokens", "created_at", "first_token_at", "finished_at",
    "duration_ms", "sources", "attachments",
}  # fmt: skip


SORTED_CODE = "by_value = dict(sorted(d.items(), key=lambda kv: kv[1]))"


def _clock() -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: 1_718_000_000.25 + next(ticks) * 1.5


def _library(*, private: bool = True) -> Library:
    return Library(
        standard=memory_connection(),
        private=memory_connection() if private else None,
        clock=_clock(),
    )


def _without_exported_at(export: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in export.items() if key != "exported_at"}


def _snapshot(library: Library) -> tuple[dict[str, Any], int]:
    messages = sum(library.store(tier).count_messages() for tier in library.tiers)
    return _without_exported_at(export_json(library)), messages


def _populate(library: Library) -> dict[str, str]:
    """A chat with every kind of message and version, a pinned chat, an empty one."""
    store = library.store(Tier.STANDARD)
    chat = store.create_chat(
        title="Sorting in Python", title_source=TitleSource.USER, system_prompt="Be brief.",
        memory="Prefers examples.\n\nUses Python 3.11.", provider="local", model="llama-3b",
        params=ChatParams(temperature=0.3, max_tokens=400, stop=("END",)),
    )  # fmt: skip
    question = store.add_message(chat.id, "user", "How do I sort a dict by value?", parent_id=None)
    first = store.add_message(
        chat.id, "assistant", "Use `sorted(d.items(), key=lambda kv: kv[1])`.",
        parent_id=question.id, provider="local", model="llama-3b", prompt_tokens=12,
        completion_tokens=9, first_token_at=1_718_000_100.5, finished_at=1_718_000_101.75,
        duration_ms=1250, reasoning="Dicts keep insertion order.",
    )  # fmt: skip
    second = store.add_message(
        chat.id, "assistant", f"```python\n{SORTED_CODE}\n```", parent_id=question.id,
        provider="local", model="llama-3b",
    )  # fmt: skip
    follow_up = store.add_message(chat.id, "user", "And descending?", parent_id=second.id)
    edited = store.add_message(chat.id, "user", "And in reverse order?", parent_id=second.id)
    stopped = store.add_message(
        chat.id, "assistant", "Pass `reverse=True`", parent_id=edited.id,
        status=MessageStatus.STOPPED, model="llama-3b",
    )  # fmt: skip
    pinned = store.create_chat(title="Groceries")
    store.update_chat(pinned.id, pinned=True)
    asked = store.add_message(pinned.id, "user", "List fruit", parent_id=None)
    store.add_message(
        pinned.id, "assistant", "", parent_id=asked.id, status=MessageStatus.ERROR,
        error="the server is down",
    )  # fmt: skip
    empty = store.create_chat()
    return {
        "chat": chat.id, "question": question.id, "first": first.id, "second": second.id,
        "follow_up": follow_up.id, "edited": edited.id, "stopped": stopped.id,
        "pinned": pinned.id, "empty": empty.id,
    }  # fmt: skip


def _shape(export: dict[str, Any]) -> list[dict[str, Any]]:
    """The chats of an export without their ids (imports from other apps get new ones)."""
    return [
        {
            **chat,
            "id": None,
            "active_leaf_id": None,
            "messages": [m["content"] for m in chat["messages"]],
        }
        for chat in export["chats"]
    ]


def _versions(thread: list[Message]) -> list[tuple[str, int, int]]:
    return [(m.content, m.version, m.versions) for m in thread]


# --- export ------------------------------------------------------------------------------------


def test_export_json_has_every_field_and_every_version() -> None:
    library = _library()
    ids = _populate(library)
    private = library.store(Tier.PRIVATE).create_chat(title="Secret")
    library.store(Tier.EPHEMERAL).create_chat(title="Fleeting")
    gone = library.store(Tier.STANDARD).create_chat(title="Deleted soon")
    library.delete(gone.id)

    export = export_json(library)

    assert export["format"] == EXPORT_FORMAT
    assert export["version"] == 3
    assert export["exported_at"].endswith("Z")
    by_id = {chat["id"]: chat for chat in export["chats"]}
    assert set(by_id) == {ids["chat"], ids["pinned"], ids["empty"], private.id} | {
        c.id for c in library.store(Tier.EPHEMERAL).list_chats()
    }
    assert gone.id not in by_id
    chat = by_id[ids["chat"]]
    assert set(chat) == CHAT_FIELDS
    assert chat["tier"] == "standard" and by_id[private.id]["tier"] == "private"
    assert chat["memory"] == "Prefers examples.\n\nUses Python 3.11."
    assert chat["active_leaf_id"] == ids["stopped"]
    assert chat["params"] == {"temperature": 0.3, "max_tokens": 400, "stop": ["END"]}
    assert by_id[ids["empty"]]["params"] == {}  # the providers' defaults
    assert len(chat["messages"]) == 6
    assert all(set(m) == MESSAGE_FIELDS for m in chat["messages"])
    first = next(m for m in chat["messages"] if m["id"] == ids["first"])
    assert first["parent_id"] == ids["question"]
    assert first["reasoning"] == "Dicts keep insertion order."
    assert (first["prompt_tokens"], first["completion_tokens"], first["duration_ms"]) == (
        12,
        9,
        1250,
    )
    assert first["first_token_at"] == "2024-06-10T06:15:00.500000Z"
    assert first["created_at"].endswith("Z")
    question = next(m for m in chat["messages"] if m["id"] == ids["question"])
    assert question["finished_at"] is None and question["parent_id"] is None
    assert by_id[ids["pinned"]]["pinned"] is True
    assert by_id[ids["pinned"]]["messages"][1]["error"] == "the server is down"
    json.dumps(export)  # plain JSON types only


def test_export_json_of_chosen_chats_keeps_their_order() -> None:
    library = _library()
    ids = _populate(library)
    export = export_json(library, [ids["empty"], ids["chat"]])
    assert [chat["id"] for chat in export["chats"]] == [ids["empty"], ids["chat"]]
    with pytest.raises(ChatNotFoundError):
        export_json(library, ["0" * 32])


def test_export_markdown_shows_the_active_thread_with_notes() -> None:
    library = _library()
    ids = _populate(library)

    text = export_markdown(library, [ids["chat"], ids["pinned"], ids["empty"]])

    chat_md, pinned_md, empty_md = text.split("\n\n---\n\n")
    assert chat_md.startswith("# Sorting in Python\n\nStandard chat · llama-3b (local) · created ")
    assert "**System prompt**\n\n> Be brief." in chat_md
    assert "**Memory**\n\n> Prefers examples.\n>\n> Uses Python 3.11." in chat_md
    assert "## You\n\nHow do I sort a dict by value?" in chat_md
    assert (
        "## Assistant (llama-3b)\n\n```python\n"
        "by_value = dict(sorted(d.items(), key=lambda kv: kv[1]))\n```"
    ) in chat_md
    assert "lambda kv: kv[1])`." not in chat_md  # the first version is not shown
    assert "And descending?" not in chat_md
    assert "## You\n\nAnd in reverse order?" in chat_md
    assert chat_md.endswith("Pass `reverse=True`\n\n_Stopped before the answer was complete._")
    assert pinned_md.startswith("# Groceries")
    assert "**System prompt**" not in pinned_md
    assert "## Assistant\n\n_The answer failed: the server is down_" in pinned_md
    assert empty_md == empty_md.rstrip("\n") + "\n"
    assert "_No messages._" in empty_md
    assert export_markdown(_library(), []) == ""


def test_export_markdown_notes_partial_answers() -> None:
    library = _library()
    store = library.store(Tier.STANDARD)
    chat = store.create_chat(title="Cut off")
    question = store.add_message(chat.id, "user", "Tell me a story", parent_id=None)
    store.add_message(
        chat.id, "assistant", "Once upon", parent_id=question.id, status=MessageStatus.PARTIAL
    )
    assert "Once upon\n\n_Incomplete: the answer was cut off._" in export_markdown(library)


# --- our format: round trip and ids ------------------------------------------------------------


def test_json_round_trip_is_identical() -> None:
    source = _library()
    ids = _populate(source)
    first = export_json(source)

    target = _library()
    imported = import_chats(target, json.dumps(first), fmt="hushchat")

    assert sorted(imported) == sorted(c["id"] for c in first["chats"])
    assert _without_exported_at(export_json(target)) == _without_exported_at(first)
    store = target.store(Tier.STANDARD)
    assert _versions(store.full_thread(ids["chat"])) == _versions(
        source.store(Tier.STANDARD).full_thread(ids["chat"])
    )


def test_fixture_round_trips_and_lands_in_the_chosen_tier() -> None:
    library = _library()
    ids = import_file(library, FIXTURES / "hushchat.json", tier=Tier.PRIVATE)

    original = json.loads((FIXTURES / "hushchat.json").read_text())
    assert ids == [chat["id"] for chat in original["chats"]]
    export = export_json(library, ids)
    for chat in original["chats"]:
        chat["tier"] = "private"
        chat["params"] = {}  # a version 1 file has none: the providers' defaults
        for message in chat["messages"]:  # nor (before version 3) sources and attachments
            message.update(sources=[], attachments=[])
    assert export["chats"] == original["chats"]
    store = library.store(Tier.PRIVATE)
    thread = store.thread(ids[0]).messages
    assert [(m.version, m.versions) for m in thread] == [(1, 1), (2, 2)]
    assert thread[1].reasoning == "Month 01-12, day 01-31."


def test_existing_ids_are_remapped_consistently() -> None:
    library = _library()
    first = import_file(library, FIXTURES / "hushchat.json")
    second = import_file(library, FIXTURES / "hushchat.json")
    # The same ids in another tier are taken too: moves copy ids between databases.
    third = import_file(library, FIXTURES / "hushchat.json", tier=Tier.PRIVATE)

    assert len(set(first) | set(second) | set(third)) == 6
    standard = library.store(Tier.STANDARD)
    for old, new, store in [(first[0], second[0], standard),
                            (first[0], third[0], library.store(Tier.PRIVATE))]:  # fmt: skip
        old_messages, new_messages = standard.all_messages(old), store.all_messages(new)
        assert not {m.id for m in old_messages} & {m.id for m in new_messages}
        assert [(m.content, m.version, m.versions) for m in new_messages] == [
            (m.content, m.version, m.versions) for m in old_messages
        ]
        index = {m.id: i for i, m in enumerate(new_messages)}
        old_index = {m.id: i for i, m in enumerate(old_messages)}
        assert [index.get(m.parent_id) for m in new_messages if m.parent_id] == [
            old_index.get(m.parent_id) for m in old_messages if m.parent_id
        ]
        chat = store.chat(new)
        assert chat.active_leaf_id in index
        assert _versions(store.full_thread(new)) == _versions(standard.full_thread(old))


def test_a_file_repeating_a_chat_imports_it_twice() -> None:
    data = json.loads((FIXTURES / "hushchat.json").read_text())
    data["chats"].append(copy.deepcopy(data["chats"][0]))
    library = _library()
    ids = import_chats(library, json.dumps(data))
    assert len(set(ids)) == 3
    assert ids[0] == data["chats"][0]["id"]


def test_a_long_chat_imports_whole() -> None:
    data = json.loads((FIXTURES / "hushchat.json").read_text())
    chat = data["chats"][1]
    template = chat["messages"][0]
    chat["messages"] = [
        {**template, "id": f"m{n}", "parent_id": f"m{n - 1}" if n else None,
         "role": "user" if n % 2 == 0 else "assistant", "content": f"message {n}"}
        for n in range(10_000)
    ]  # fmt: skip
    chat["active_leaf_id"] = "m9999"
    library = _library()
    [chat_id] = import_chats(library, json.dumps({**data, "chats": [chat]}))
    store = library.store(Tier.STANDARD)
    page = store.thread(chat_id, limit=50)
    assert page.has_older and page.messages[-1].content == "message 9999"
    assert store.count_messages(chat_id) == 10_000


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        (lambda d: d["chats"][0]["messages"][1].update(parent_id="nope"),
         "chats[0].messages[1].parent_id", "is not a message of this chat"),
        (lambda d: d["chats"][1].update(active_leaf_id="nope"),
         "chats[1].active_leaf_id", "is not a message of this chat"),
        (lambda d: d["chats"][0]["messages"][2].update(id=d["chats"][0]["messages"][1]["id"]),
         "chats[0].messages[2].id", "appears twice"),
        (lambda d: d["chats"][0]["messages"][0].update(
            parent_id=d["chats"][0]["messages"][1]["id"]),
         "chats[0].messages[0].parent_id", "loop"),
        (lambda d: d["chats"][0].update(colour="blue"), "chats[0].colour", "extra inputs"),
        (lambda d: d["chats"][0]["messages"][0].update(status="done"),
         "chats[0].messages[0].status", "'complete', 'partial', 'stopped' or 'error'"),
        (lambda d: d.update(version=0), "version", "version 0 does not exist"),
        (lambda d: d["chats"][0].update(params={"temperature": 5}),
         "chats[0].params.temperature", "must be a number from 0 to 2"),
        (lambda d: d["chats"][0].update(params={"stop": ["", "x"]}),
         "chats[0].params.stop", "non-empty strings"),
        (lambda d: d["chats"][0].update(params={"seed": 7}), "chats[0].params.seed", "unknown"),
        (lambda d: d["chats"][0].update(params=[0.5]), "chats[0].params", "valid dictionary"),
    ],
)  # fmt: skip
def test_inconsistent_hushchat_files_are_refused(
    change: Callable[[dict[str, Any]], None], path: str, problem: str
) -> None:
    data = json.loads((FIXTURES / "hushchat.json").read_text())
    change(data)
    library = _library()
    with pytest.raises(ImportFormatError) as caught:
        import_chats(library, json.dumps(data), source="backup.json")
    message = str(caught.value)
    assert message.startswith(f"backup.json: {path}: ")
    assert problem in message.lower()
    assert message.endswith("Nothing was imported")
    assert library.list_chats() == []


# --- ChatGPT -----------------------------------------------------------------------------------


def _by_title(library: Library) -> dict[str, str]:
    return {summary.title: summary.id for summary in library.list_chats()}


def test_chatgpt_branches_become_versions_and_current_node_is_shown() -> None:
    library = _library()
    ids = import_file(library, FIXTURES / "chatgpt_conversations.json")

    assert len(ids) == 3
    store = library.store(Tier.STANDARD)
    chat = store.chat(ids[0])
    assert (chat.title, chat.title_source) == ("Flatten nested lists", TitleSource.USER)
    assert (chat.provider, chat.model) == (None, None)  # continuing it uses the user's provider
    assert chat.created_at == 1718102400.0 and chat.updated_at == 1718102556.0
    thread = store.thread(ids[0]).messages
    assert [(m.role, m.version, m.versions) for m in thread] == [
        ("user", 1, 1),
        ("assistant", 2, 2),  # the regenerated answer
        ("user", 2, 2),  # the edited question
        ("assistant", 1, 1),
    ]
    assert thread[1].content.startswith("Use `itertools.chain.from_iterable`")
    assert "```python\nfrom itertools import chain\n\nflat" in thread[1].content
    assert thread[2].content == "Which one is faster for 10 million items?"
    assert thread[3].model == "gpt-4o" and thread[3].status == MessageStatus.COMPLETE
    assert thread[0].created_at == 1718102401.0
    assert store.count_messages(ids[0]) == 7  # the hidden system node is left out

    earlier = store.sibling(thread[2].id, -1)
    assert earlier.content == "Which one is faster?"
    store.select_version(earlier.id)
    assert [m.content for m in store.thread(ids[0]).messages][2:] == [
        "Which one is faster?",
        "For large inputs `chain.from_iterable` is usually a little faster.",
    ]
    store.select_version(store.sibling(thread[1].id, -1).id)
    assert [m.content[:20] for m in store.thread(ids[0]).messages] == [
        "How do I flatten a l",
        "Use a nested list co",
    ]


def test_chatgpt_skips_tools_hidden_and_thoughts_but_keeps_the_reasoning() -> None:
    library = _library()
    ids = import_file(library, FIXTURES / "chatgpt_conversations.json", fmt="chatgpt")
    store = library.store(Tier.STANDARD)

    thread = store.thread(ids[1]).messages
    assert [m.role for m in thread] == ["user", "assistant", "user", "assistant"]
    assert store.count_messages(ids[1]) == 4  # no thoughts, recap, code call or tool output
    assert thread[0].content == (
        "[image not imported]\n\nWhat does this chart show? Then plot a sine wave."
    )
    assert thread[1].reasoning == "The bars rise every month from January to June."
    assert thread[1].model == "o3"
    assert thread[1].parent_id == thread[0].id
    assert thread[3].status == MessageStatus.STOPPED
    assert thread[3].content == "A sine wave is a smooth, periodic"

    untitled = store.chat(ids[2])
    assert (untitled.title, untitled.title_source) == (IMPORTED_TITLE, TitleSource.DEFAULT)
    assert [m.content for m in store.thread(ids[2]).messages] == ["hello", "Hi! How can I help?"]


def test_chatgpt_single_conversation_and_fallback_leaf() -> None:
    conversations = json.loads((FIXTURES / "chatgpt_conversations.json").read_text())
    single = conversations[0]
    single["current_node"] = "not-in-the-mapping"
    library = _library()
    [chat_id] = import_chats(library, json.dumps(single))
    thread = library.store(Tier.STANDARD).thread(chat_id).messages
    assert thread[-1].content.startswith("Measured with `timeit`")  # the newest message


def test_chatgpt_current_node_on_a_skipped_node_shows_its_message() -> None:
    conversations = json.loads((FIXTURES / "chatgpt_conversations.json").read_text())
    conversation = conversations[1]
    code_node = next(
        key
        for key, node in conversation["mapping"].items()
        if node["message"] and node["message"]["recipient"] == "python"
    )
    conversation["current_node"] = code_node
    library = _library()
    [chat_id] = import_chats(library, json.dumps([conversation]))
    thread = library.store(Tier.STANDARD).thread(chat_id).messages
    assert [m.role for m in thread] == ["user"]


# --- Open WebUI --------------------------------------------------------------------------------


def test_openwebui_history_tree() -> None:
    library = _library()
    ids = import_file(library, FIXTURES / "openwebui_export.json")

    store = library.store(Tier.STANDARD)
    chat = store.chat(ids[0])
    assert (chat.title, chat.title_source, chat.pinned) == (
        "Rust lifetimes",
        TitleSource.USER,
        True,
    )
    assert chat.system_prompt == "You are a concise Rust tutor."
    assert chat.created_at == 1718400000.0
    thread = store.thread(ids[0]).messages
    assert [(m.role, m.version, m.versions) for m in thread] == [
        ("user", 1, 1),
        ("assistant", 2, 2),
        ("user", 1, 1),
        ("assistant", 1, 1),
    ]
    answer = thread[1]
    assert answer.model == "qwen3:8b"
    assert (
        answer.reasoning == "Two input references, one output.\nThe output needs a named lifetime."
    )
    assert answer.content.startswith("Add a lifetime parameter")
    assert "<details" not in answer.content
    assert "```rust\nfn longest<'a>" in answer.content
    assert (answer.prompt_tokens, answer.completion_tokens) == (60, 140)
    first = store.sibling(answer.id, -1)
    assert (first.prompt_tokens, first.completion_tokens) == (57, 120)
    assert thread[3].status == MessageStatus.ERROR
    assert thread[3].error == "Ollama: 500, message='Internal Server Error'"


def test_openwebui_flat_messages() -> None:
    library = _library()
    ids = import_file(library, FIXTURES / "openwebui_export.json", fmt="openwebui")

    store = library.store(Tier.STANDARD)
    chat = store.chat(ids[1])
    assert (chat.title, chat.title_source) == (IMPORTED_TITLE, TitleSource.DEFAULT)
    thread = store.thread(ids[1]).messages
    assert [(m.role, m.content) for m in thread] == [
        ("user", "Translate 'good morning' to French."),
        ("assistant", "Bonjour !"),
        ("user", "And to German?"),
        ("assistant", "Guten Morgen!"),
    ]
    assert all(m.versions == 1 for m in thread)
    assert thread[3].status == MessageStatus.PARTIAL
    assert thread[1].model == "mistral:7b" and thread[0].model is None
    assert [m.created_at for m in thread] == [1718403600, 1718403602, 1718403700, 1718403701]


def test_openwebui_single_chat_object() -> None:
    chats = json.loads((FIXTURES / "openwebui_export.json").read_text())
    library = _library()
    [chat_id] = import_chats(library, json.dumps(chats[0]).encode())
    assert library.chat(chat_id).title == "Rust lifetimes"


def test_openwebui_parent_loop_is_refused() -> None:
    chats = json.loads((FIXTURES / "openwebui_export.json").read_text())
    messages = chats[0]["chat"]["history"]["messages"]
    first, second = list(messages)[:2]
    messages[first]["parentId"] = second
    library = _library()
    with pytest.raises(ImportFormatError, match=r"chats\[0\]\.chat\.history\.messages: .*loop"):
        import_chats(library, json.dumps(chats), source="webui.json")
    assert library.list_chats() == []


# --- detection and bad files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "count"),
    [
        ("hushchat.json", "hushchat", 2),
        ("chatgpt_conversations.json", "chatgpt", 3),
        ("openwebui_export.json", "openwebui", 2),
    ],
)
def test_format_detection(name: str, fmt: str, count: int) -> None:
    detected, named = _library(), _library()
    assert len(import_file(detected, FIXTURES / name)) == count
    assert len(import_file(named, FIXTURES / name, fmt=fmt)) == count
    assert _shape(export_json(detected)) == _shape(export_json(named))


def test_undetectable_and_empty_inputs() -> None:
    library = _library()
    with pytest.raises(ImportFormatError, match="cannot tell which app exported"):
        import_chats(library, '{"hello": "world"}', source="x.json")
    with pytest.raises(ImportFormatError, match="'something-else' is not a format"):
        import_chats(library, '{"format": "something-else"}')
    assert import_chats(library, "[]") == []
    assert import_chats(library, b'\xef\xbb\xbf{"format": "hushchat-export", "version": 1, '
                                 b'"chats": []}') == []  # fmt: skip
    with pytest.raises(ImportFormatError, match="not UTF-8"):
        import_chats(library, b"\xff\xfe[")
    with pytest.raises(UsageError, match="unknown import format 'csv'"):
        import_chats(library, "[]", fmt="csv")


MALFORMED = [
    ("hushchat_wrong_top_level.json", "hushchat",
     'the top level: expected an object with "format"'),
    ("hushchat_missing_field.json", None, "chats[1].messages[0].content: field required"),
    ("hushchat_bad_role.json", None, "chats[0].messages[1].role: input should be 'system', 'user'"),
    ("hushchat_truncated.json", None, "is not valid JSON (line 91"),
    ("hushchat_version_4.json", None, "version: this export is format version 4, newer"),
    ("chatgpt_wrong_top_level.json", "chatgpt",
     "the top level: expected a list of conversations, found an object"),
    ("chatgpt_wrong_top_level.json", None, "cannot tell which app exported this file"),
    # The first two conversations are fine; the third is not: nothing at all is imported.
    ("chatgpt_missing_field.json", None, "conversations[2].mapping: field required"),
    ("chatgpt_bad_role.json", "chatgpt",
     "conversations[1].mapping.b1c2d3e4-0007-4f5a-8b6c-7d8e9f0a1b07.message.author.role: "
     "input should be 'user', 'assistant', 'system' or 'tool' (found \"robot\")"),
    ("chatgpt_truncated.json", "chatgpt", "is not valid JSON"),
    ("openwebui_wrong_top_level.json", "openwebui",
     "the top level: expected a list of chats, found an object"),
    ("openwebui_missing_field.json", None, "chats[1].chat: field required"),
    ("openwebui_bad_role.json", None,
     "chats[0].chat.history.messages.5e9c3f8b-9a4d-4f1b-8c6e-4d5e6f7a8b04.role: input should be"),
    ("openwebui_truncated.json", None, "the file may be truncated or damaged"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fmt", "expected"), MALFORMED)
def test_malformed_files_are_clear_errors_and_import_nothing(
    name: str, fmt: str | None, expected: str
) -> None:
    library = _library()
    _populate(library)
    before = _snapshot(library)

    with pytest.raises(ImportFormatError) as caught:
        import_file(library, FIXTURES / name, fmt=fmt)

    message = str(caught.value)
    assert message.startswith(str(FIXTURES / name))
    assert expected in message
    assert "Nothing was imported" in message
    assert caught.value.exit_code == 2
    assert _snapshot(library) == before


class _FailingThirdChat:
    """A connection whose third chat insert fails like a full disk."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._chat_inserts = itertools.count()

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO chats") and next(self._chat_inserts) == 2:
            raise sqlcipher3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_failing_write_rolls_back_every_chat() -> None:
    library = Library(standard=_FailingThirdChat(memory_connection()), clock=_clock())
    before = _snapshot(library)
    with pytest.raises(StorageError, match="the disk is full"):
        import_file(library, FIXTURES / "chatgpt_conversations.json")
    assert _snapshot(library) == before


def test_files_over_the_limit_are_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "conversations.json"
    with huge.open("wb") as sparse:
        sparse.truncate(transfer.MAX_IMPORT_BYTES + 1)
    library = _library()
    with pytest.raises(ImportFormatError, match=r"conversations\.json is 200 MB; .* 200 MB"):
        import_file(library, huge)
    with pytest.raises(ImportFormatError, match="limited to 200 MB"):
        import_chats(library, b" " * (transfer.MAX_IMPORT_BYTES + 1))


def test_unreadable_file_and_locked_tier(tmp_path: Path) -> None:
    library = _library(private=False)
    with pytest.raises(UsageError, match=r"cannot read .*missing\.json: No such file"):
        import_file(library, tmp_path / "missing.json")
    with pytest.raises(UsageError, match="Private chats are not open"):
        import_file(library, FIXTURES / "hushchat.json", tier=Tier.PRIVATE)
    assert library.list_chats() == []


def test_import_into_ephemeral() -> None:
    library = _library()
    ids = import_file(library, FIXTURES / "openwebui_export.json", tier=Tier.EPHEMERAL)
    assert {library.store_of(chat_id).tier for chat_id in ids} == {Tier.EPHEMERAL}
    assert library.store(Tier.STANDARD).list_chats() == []


def test_public_surface() -> None:
    assert set(transfer.__all__) == {
        "EXPORT_FORMAT", "EXPORT_VERSION", "IMPORT_FORMATS", "MAX_IMPORT_BYTES",
        "ImportFormatError", "export_json", "export_markdown", "import_chats", "import_file",
        "AttachmentLimits", "ImportedChats",
    }  # fmt: skip
    assert issubclass(ImportFormatError, UsageError)


def test_reading_aloud_round_trips_and_false_is_accepted() -> None:
    source = _library()
    store = source.store(Tier.STANDARD)
    chat = store.create_chat(params=ChatParams(temperature=0.3, read_aloud=True))
    export = export_json(source, [chat.id])
    assert export["chats"][0]["params"] == {"temperature": 0.3, "read_aloud": True}
    target = _library()
    (copied,) = import_chats(target, json.dumps(export), fmt="hushchat")
    assert target.store(Tier.STANDARD).chat(copied).params.read_aloud is True
    export["chats"][0]["params"] = {"read_aloud": False}  # written by hand: off
    (off,) = import_chats(_library(), json.dumps(export), fmt="hushchat")
    assert off
    export["chats"][0]["params"] = {"read_aloud": "yes"}
    with pytest.raises(ImportFormatError, match=r"params.read_aloud.*true or false"):
        import_chats(_library(), json.dumps(export), fmt="hushchat")
