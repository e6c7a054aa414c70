"""``hushchat chats import`` of ChatGPT's export .zip as a subprocess (no model needed).

The summary names what was imported and what was missing; a zip bomb is one clear
message, exit 2, and imports nothing; the imported file's sentinel is only found
encrypted under the profile.
"""

from __future__ import annotations

from pathlib import Path

from app.store.models import Tier
from tests.e2e.test_chat_cli import files_under, make_env, open_library
from tests.unit.store.test_transfer_attachments import (
    PICTURE_MEMBERS,
    SENTINEL,
    export_zip,
    picture_chat,
)


def test_chats_import_reads_a_chatgpt_zip_with_its_files(tmp_path: Path) -> None:
    env = make_env(tmp_path, "http://127.0.0.1:9/v1")
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(
        export_zip(picture_chat(), {**PICTURE_MEMBERS, "file-AbC123-x.png": bytes(20 << 20)})
    )
    refused = env.run("chats", "import", str(bomb))
    assert refused.returncode == 2, refused.stderr
    assert "zip bomb" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    members = {k: v for k, v in PICTURE_MEMBERS.items() if "ee99ff00" not in k}
    export = tmp_path / "chatgpt-export.zip"
    export.write_bytes(export_zip(picture_chat(), members))
    imported = env.run("chats", "import", str(export))

    assert imported.returncode == 0, imported.stderr
    assert imported.stderr.strip() == (
        "imported 1 chat(s), 3 attachment(s); 1 file(s) the messages name was not in the "
        "export (each message says which)"
    )
    with open_library(env.profile) as library:
        store = library.store(Tier.STANDARD)
        [chat] = store.list_chats()
        assert [a.name for a in store.chat_attachments(chat.id)] == [
            "photo.png", "notes.txt", "5f1e0c3a.webp",
        ]  # fmt: skip
    leaked = [p for p in files_under(env.profile) if SENTINEL.encode() in p.read_bytes()]
    assert leaked == []
