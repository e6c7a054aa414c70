"""``hushchat chat --attach`` as a subprocess against the real llama-server.

The request the model gets is read through a logging proxy on the entry's ``proxy:``
(every byte the client sends), so the test sees the attached file's text arrive; the
profile is grepped for the file's sentinel afterwards (it must only exist encrypted).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store.models import Tier
from tests.e2e.test_chat_cli import FLOOR_KDF, PASSPHRASE, Env, chat_id_of, files_under
from tests.integration.providers.logging_proxy import LoggingProxy
from tests.peers.llama_server import MODEL_ALIAS, LlamaServer

pytestmark = pytest.mark.llama_server

CODE_WORD = "PERIWINKLE-SENTINEL-5150"


@pytest.fixture
def proxy() -> Iterator[LoggingProxy]:
    with LoggingProxy() as logging_proxy:
        yield logging_proxy


@pytest.fixture
def env(tmp_path: Path, llama_server: LlamaServer, proxy: LoggingProxy) -> Env:
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    found = Env(home, home / "profile", tmp_path / "config.yml", llama_server.base_url)
    found.config.write_text(
        f"""default_llm: local
llms:
  - provider_name: local
    type: openai
    base_url: {llama_server.base_url}/v1
    model_name: {MODEL_ALIAS}
    context_size: 512
    proxy: {proxy.url}
    proxy_locality: on_prem
  - provider_name: cloud
    type: openai
    base_url: https://api.invalid.example/v1
    model_name: big
    locality: paid_cloud
    embedding_model: text-embedding-3-small
"""
    )
    result = found.run("vault", "init", "--passphrase-stdin", *FLOOR_KDF, stdin=PASSPHRASE + "\n")
    assert result.returncode == 0, result.stderr
    return found


def test_an_attached_file_reaches_the_model_and_stays_encrypted(
    env: Env, proxy: LoggingProxy, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"  # outside the home: only its stored copy is checked
    notes.write_text(f"The code word is {CODE_WORD}.\n", encoding="utf-8")

    result = env.run("chat", "--attach", str(notes), "--max-tokens", "8", "what is the code word?")

    assert result.returncode == 0, result.stderr
    sent = proxy.received
    assert b"what is the code word?" in sent
    assert CODE_WORD.encode() in sent and b"```notes.txt" in sent
    chat_id = chat_id_of(result.stderr)
    shown = env.run("chats", "show", chat_id[:10])
    assert shown.returncode == 0, shown.stderr
    assert f"[attached: notes.txt, {notes.stat().st_size} bytes]" in shown.stdout
    for path in files_under(env.home):
        assert CODE_WORD.encode() not in path.read_bytes(), path

    out = tmp_path / "export" / "chat.md"
    out.parent.mkdir()
    exported = env.run("chats", "export", chat_id[:10], "--format", "md", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert (out.parent / "chat.md.attachments" / "notes.txt").read_bytes() == notes.read_bytes()
    assert "(<chat.md.attachments/notes.txt>)" in out.read_text(encoding="utf-8")


def test_a_file_that_cannot_be_attached_is_one_line_exit_2_and_nothing_saved(
    env: Env, proxy: LoggingProxy, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = env.run("chat", "--attach", str(empty), "look at this")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "empty.txt is empty" in result.stderr
    missing = env.run("chat", "--attach", str(tmp_path / "nope.pdf"), "look")
    assert missing.returncode == 2 and "cannot be read" in missing.stderr
    assert env.run("chats", "list").stdout == ""
    assert proxy.received == b""


def test_a_long_file_sends_its_relevant_excerpt_and_prints_the_sources(
    env: Env, proxy: LoggingProxy, tmp_path: Path
) -> None:
    """The model's context is 512 tokens: the excerpts are cut to fit beside the answer."""
    manual = tmp_path / "manual.txt"
    filler = "The pump needs no attention during normal operation.\n\n" * 600
    manual.write_text(filler + f"The reset password is {CODE_WORD}.\n" + filler, encoding="utf-8")

    result = env.run(
        "chat", "--attach", str(manual), "--max-tokens", "8", "what is the reset password?"
    )

    assert result.returncode == 0, result.stderr
    assert "sources: manual.txt" in result.stderr
    sent = proxy.received
    assert CODE_WORD.encode() in sent
    assert len(sent) < 20_000  # excerpts, not the 64 KB document
    shown = env.run("chats", "show", chat_id_of(result.stderr)[:10])
    assert "_sources: manual.txt_" in shown.stdout


def test_a_private_chat_with_a_cloud_embedding_model_is_exit_5(
    env: Env, proxy: LoggingProxy, tmp_path: Path
) -> None:
    report = tmp_path / "report.txt"
    report.write_text(("Quarterly figures. " * 2000) + CODE_WORD, encoding="utf-8")
    result = env.run(
        "chat", "--tier", "private", "--provider", "cloud", "--attach", str(report), "summary?"
    )
    assert result.returncode == 5, result.stderr
    assert env.run("chats", "list").stdout == ""
    assert proxy.received == b""
    for path in files_under(env.home):
        assert CODE_WORD.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_killed_while_a_50_mb_file_is_stored_leaves_all_or_nothing(
    env: Env, tmp_path: Path
) -> None:
    """SIGKILL while `hushchat chat --attach` writes a 50 MB file into the database: the
    database is sound, and the message is there with its whole attachment or not at all."""
    from tests.benchmarks.bench_attach_service import write_text_file
    from tests.e2e.test_chat_cli import HUSHCHAT, open_library

    big = tmp_path / "big.txt"
    write_text_file(big, 50 * 1024 * 1024)
    outcomes = set()
    killed: list[bool] = []
    for delay in (0.0, 1.5):
        process = subprocess.Popen(
            [str(HUSHCHAT), "chat", "--attach", str(big), "--max-tokens", "4", "the code?"],
            env=env.vars(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill once the write-ahead log grows: the attachment's chunks are being written.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            wal = sum(p.stat().st_size for p in env.profile.glob("*-wal"))
            if wal > 8 * 1024 * 1024:
                break
            time.sleep(0.02)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        killed.append(process.wait(timeout=30) == -signal.SIGKILL)
        with open_library(env.profile) as library:
            store = library.store(Tier.STANDARD)
            assert store.integrity_problems() == []
            for summary in store.list_chats():
                for message in store.all_messages(summary.id):
                    if message.role != "user":
                        continue
                    (attachment,) = store.attachments(message.id)
                    assert attachment.size == big.stat().st_size
                    digest = hashlib.sha256()
                    for chunk in store.read_attachment(attachment.id):
                        digest.update(chunk)
                    assert digest.hexdigest() == attachment.sha256
                    outcomes.add("stored")
            outcomes.add("checked")
    assert "checked" in outcomes
    assert killed[0], "the first run ended before it was killed"
