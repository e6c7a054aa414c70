"""``hushchat speak`` as a subprocess: a real vault with imported chats, and the loopback
speech server of ``tests.peers.speech_server`` (written from the documented formats:
no real speech server installs without downloading a voice model at run time).

Covers the whole path: unlock, find the message, the tier policy (a Private chat and a
cloud engine: exit 5 and the server sees no request), the text prepared for speech,
the audio written atomically, and no audio left anywhere else (profile, temp dir).
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store.library import Library
from app.store.transfer import import_chats
from app.tiers import Tier
from app.vault import Vault
from tests.e2e.test_chat_cli import Env, files_under
from tests.peers.speech_server import SpeechServer, fake_openai_audio
from tests.peers.vault_fixtures import PASSPHRASE as TEMPLATE_PASSPHRASE
from tests.peers.vault_fixtures import TemplateVault

STANDARD_ANSWER = "a1b2c3d4e5f64a7b8c9d0e1f2a3b4c02"
PRIVATE_ANSWER = "b1b2c3d4e5f64a7b8c9d0e1f2a3b4c02"
ANSWER = "Sure. Run this:\n\n```bash\nls -l\necho done\n```\n\nSee [the docs](https://x.org)."
SPOKEN = "Sure. Run this:\nCode block in Bash, 2 lines.\nSee the docs."


def export(chat_id: str, answer_id: str, tier: str) -> dict[str, object]:
    def message(id_: str, parent: str | None, role: str, content: str) -> dict[str, object]:
        return {
            "id": id_, "parent_id": parent, "role": role, "content": content,
            "created_at": "2026-11-30T10:00:00.000000Z",
        }  # fmt: skip

    question = answer_id[:-2] + "01"
    return {
        "format": "hushchat-export",
        "version": 3,
        "chats": [
            {
                "id": chat_id,
                "title": f"{tier} chat",
                "tier": tier,
                "created_at": "2026-11-30T10:00:00.000000Z",
                "updated_at": "2026-11-30T10:00:01.000000Z",
                "active_leaf_id": answer_id,
                "messages": [
                    message(question, None, "user", "How do I list files?"),
                    message(answer_id, question, "assistant", ANSWER),
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def running_speech() -> Iterator[SpeechServer]:
    with SpeechServer() as server:
        yield server


@pytest.fixture
def speech(running_speech: SpeechServer) -> SpeechServer:
    running_speech.requests.clear()
    return running_speech


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
    template_vault: TemplateVault,
    running_speech: SpeechServer,
) -> Env:
    """One profile for the module (the template vault with a Standard and a Private chat
    imported in-process): each ``hushchat`` run costs a start-up and an unlock."""
    root = tmp_path_factory.mktemp("speak")
    home = root / "home"
    (home / "tmp").mkdir(parents=True)
    found = Env(home, home / "profile", root / "config.yml", running_speech.url)
    found.config.write_text(
        f"""default_tts: cloud
tts:
  - type: openai
    name: cloud
    base_url: {running_speech.url}/v1
    locality: paid_cloud
  - type: openai
    name: local
    base_url: {running_speech.url}/v1
    voice: af_heart
""",
        encoding="utf-8",
    )
    shutil.copytree(template_vault.path, found.profile)
    vault = Vault.open(found.profile)
    try:
        vault.unlock_with_passphrase(template_vault.passphrase)
        library = Library(vault.connect(Tier.STANDARD), vault.connect(Tier.PRIVATE))
        try:
            for chat_id, answer, tier in (
                ("c" * 32, STANDARD_ANSWER, Tier.STANDARD),
                ("d" * 32, PRIVATE_ANSWER, Tier.PRIVATE),
            ):
                data = json.dumps(export(chat_id, answer, tier.value))
                assert import_chats(library, data, fmt="hushchat", tier=tier) == [chat_id]
        finally:
            library.close()
    finally:
        vault.close()
    return found


def speak(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return env.run("speak", *args, HUSHCHAT_PASSPHRASE=TEMPLATE_PASSPHRASE)


@pytest.mark.parametrize(
    "reference",
    [STANDARD_ANSWER, "c" * 32, "cccccc"],
    ids=["message id", "chat id", "chat id prefix"],
)
def test_a_standard_answer_is_written_as_audio(
    env: Env, speech: SpeechServer, tmp_path: Path, reference: str
) -> None:
    """By the answer's id, or by its chat's (people see chat ids in `hushchat chats
    list`): a chat names its last answer, and its first characters do when no other id
    starts with them (message id prefixes: tests/unit/store/test_chats.py)."""
    out = tmp_path / "out" / "answer.mp3"
    out.parent.mkdir()
    result = speak(env, reference, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == fake_openai_audio("mp3", SPOKEN)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert list(out.parent.iterdir()) == [out]  # the temporary file was renamed
    assert f"bytes of audio/mpeg to {out} (cloud)" in result.stderr  # default_tts
    assert "warning" not in result.stderr
    [request] = speech.requests
    assert request.body["input"] == SPOKEN


def test_a_private_answer_with_a_cloud_engine_is_exit_5_and_nothing_is_sent(
    env: Env, speech: SpeechServer, tmp_path: Path
) -> None:
    out = tmp_path / "private.mp3"
    result = speak(env, PRIVATE_ANSWER, "--engine", "cloud", "--out", str(out))
    assert result.returncode == 5, result.stderr
    assert "refused: Private chats only use on-prem models" in result.stderr
    assert speech.requests == []
    assert not out.exists()


def test_a_private_answer_uses_the_first_on_prem_engine_and_leaves_no_other_audio(
    env: Env, speech: SpeechServer, tmp_path: Path
) -> None:
    out = tmp_path / "private.mp3"
    result = speak(env, PRIVATE_ANSWER, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == fake_openai_audio("mp3", SPOKEN)
    assert "(local)" in result.stderr  # default_tts (cloud) is not allowed: the next one
    assert "warning:" in result.stderr and "not encrypted" in result.stderr
    assert [r.body["voice"] for r in speech.requests] == ["af_heart"]
    for path in files_under(env.home):  # the profile, HOME and TMPDIR
        assert b"FAKE-MP3" not in path.read_bytes(), path


def test_an_id_that_names_nothing_or_several_things_says_so(
    env: Env, speech: SpeechServer, tmp_path: Path
) -> None:
    out = tmp_path / "answer.mp3"
    # The question and the answer of the Standard chat both start with a1b2.
    several = speak(env, "a1b2", "--out", str(out))
    assert several.returncode == 2, several.stderr
    assert "matches several messages or chats; type more of the id" in several.stderr
    unknown = speak(env, "f00d", "--out", str(out))
    assert unknown.returncode != 0
    assert "no message or chat with id f00d" in unknown.stderr
    assert speech.requests == []
    assert not out.exists()
