"""``hushchat chat`` and ``hushchat chats`` as subprocesses, against the real llama-server.

Covers the whole path a user takes: vault, store, chat service, provider, with
the tier policy, failures, Ephemeral leaving nothing on disk, no plaintext in
the profile, and crash safety under SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.store.library import Library
from app.store.models import MessageStatus
from app.vault.vault import Vault
from tests.homes import home_env
from tests.peers.llama_server import MODEL_ALIAS, LlamaServer

HUSHCHAT = Path(sys.executable).with_name("hushchat")
PASSPHRASE = "correct horse battery staple for tests"
FLOOR_KDF = ["--kdf-memory-mib", "64", "--kdf-iterations", "3", "--kdf-parallelism", "4"]

pytestmark = pytest.mark.llama_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Env:
    home: Path
    profile: Path
    config: Path
    base_url: str

    def vars(self, **extra: str) -> dict[str, str]:
        env = home_env(self.home, self.profile, self.config)
        env["HUSHCHAT_PASSPHRASE"] = PASSPHRASE
        env.update(extra)
        return env

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 90, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HUSHCHAT), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.vars(**extra),
            timeout=timeout,
            check=False,
        )


def write_config(path: Path, base_url: str, dead_port: int) -> None:
    path.write_text(
        f"""default_llm: local
llms:
  - provider_name: local
    type: openai
    base_url: {base_url}/v1
    model_name: {MODEL_ALIAS}
    context_size: 512
  - provider_name: cloud
    type: openai
    base_url: https://api.invalid.example/v1
    model_name: big
    locality: paid_cloud
  - provider_name: down
    type: openai
    base_url: http://127.0.0.1:{dead_port}/v1
    model_name: m
    max_retries: 0
"""
    )


def make_env(root: Path, base_url: str, *, init_vault: bool = True) -> Env:
    home = root / "home"
    (home / "tmp").mkdir(parents=True)
    env = Env(home, home / "profile", root / "config.yml", base_url)
    write_config(env.config, base_url, free_port())
    if init_vault:
        result = env.run("vault", "init", "--passphrase-stdin", *FLOOR_KDF, stdin=PASSPHRASE + "\n")
        assert result.returncode == 0, result.stderr
    return env


@pytest.fixture
def env(tmp_path: Path, llama_server: LlamaServer) -> Env:
    return make_env(tmp_path, llama_server.base_url)


def chat_id_of(stderr: str) -> str:
    match = re.search(r"^chat ([0-9a-f]{32}) ", stderr, re.MULTILINE)
    assert match, stderr
    return match.group(1)


@contextlib.contextmanager
def open_library(profile: Path) -> Iterator[Library]:
    vault = Vault.open(profile)
    try:
        vault.unlock_with_passphrase(PASSPHRASE)
        library = Library(vault.connect("standard"), vault.connect("private"))
        try:
            yield library
        finally:
            library.close()
    finally:
        vault.close()


def test_chat_streams_saves_and_titles(env: Env) -> None:
    result = env.run("chat", "--max-tokens", "16", "Tell me about hello world")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    chat_id = chat_id_of(result.stderr)
    listed = env.run("chats", "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert line.startswith(chat_id[:12])
    assert "New Chat" not in line  # the auto-title replaced it
    # Continue the chat by id prefix; the history is sent along.
    again = env.run("chat", "--chat", chat_id[:8], "--max-tokens", "8", "and more")
    assert again.returncode == 0, again.stderr
    assert chat_id_of(again.stderr) == chat_id
    shown = env.run("chats", "show", chat_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("## You") == 2
    assert "Tell me about hello world" in shown.stdout
    with open_library(env.profile) as library:
        thread = library.store_of(chat_id).full_thread(chat_id)
        assert [m.role for m in thread] == ["user", "assistant", "user", "assistant"]
        assert all(m.status is MessageStatus.COMPLETE for m in thread)
        assert thread[1].provider == "local" and thread[1].completion_tokens == 16


def test_chats_rename_search_export_delete(env: Env, tmp_path: Path) -> None:
    chat_id = chat_id_of(env.run("chat", "--max-tokens", "4", "quokka facts please").stderr)
    assert env.run("chats", "rename", chat_id[:10], "Marsupials").returncode == 0
    found = env.run("chats", "search", "quokk")
    assert found.returncode == 0 and chat_id[:12] in found.stdout and "[quokka]" in found.stdout
    found = env.run("chats", "search", "marsupial")
    assert "(title)" in found.stdout
    out = tmp_path / "export.json"
    exported = env.run("chats", "export", chat_id[:10], "--format", "json", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    data = json.loads(out.read_text())
    assert data["format"] == "hushchat-export" and data["chats"][0]["title"] == "Marsupials"
    markdown = env.run("chats", "export", "--format", "md", "--out", "-")
    assert "# Marsupials" in markdown.stdout and "quokka facts please" in markdown.stdout
    refused = env.run("chats", "delete", chat_id[:10])  # no TTY, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert env.run("chats", "delete", chat_id[:10], "--yes").returncode == 0
    assert env.run("chats", "list").stdout == ""
    imported = env.run("chats", "import", str(out))
    assert imported.returncode == 0, imported.stderr
    assert "Marsupials" in env.run("chats", "list").stdout


def test_wrong_passphrase_is_exit_4_and_changes_nothing(env: Env) -> None:
    before = {p.name: p.read_bytes() for p in env.profile.iterdir() if p.is_file()}
    result = env.run("chat", "hello", HUSHCHAT_PASSPHRASE="wrong passphrase")
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    after = {p.name: p.read_bytes() for p in env.profile.iterdir() if p.is_file()}
    assert after == before


def test_private_chat_refuses_cloud_provider_with_exit_5(env: Env) -> None:
    result = env.run("chat", "--tier", "private", "--provider", "cloud", "secret plans")
    assert result.returncode == 5, result.stderr
    assert "on-prem" in result.stderr
    assert env.run("chats", "list").stdout == ""
    result = env.run("chat", "--tier", "ephemeral", "--provider", "cloud", "secret plans")
    assert result.returncode == 5


def test_provider_down_is_exit_3_and_keeps_the_question(env: Env) -> None:
    result = env.run("chat", "--provider", "down", "are you there?")
    assert result.returncode == 3, result.stderr
    assert "partial answer is kept" in result.stderr
    chat_id = chat_id_of(result.stderr)
    with open_library(env.profile) as library:
        question, answer = library.store_of(chat_id).full_thread(chat_id)
        assert question.content == "are you there?"
        assert answer.status is MessageStatus.ERROR and answer.error


def test_message_from_stdin(env: Env) -> None:
    result = env.run("chat", "--max-tokens", "4", "-", stdin="from standard input\n")
    assert result.returncode == 0, result.stderr
    shown = env.run("chats", "show", chat_id_of(result.stderr))
    assert "from standard input" in shown.stdout


SENTINEL = "ZEBRAFISH-SENTINEL-7731"


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_ephemeral_leaves_nothing_on_disk(tmp_path: Path, llama_server: LlamaServer) -> None:
    env = make_env(tmp_path, llama_server.base_url, init_vault=False)
    before = set(files_under(tmp_path))
    result = env.run("chat", "--tier", "ephemeral", "--max-tokens", "8", f"{SENTINEL} hi")
    assert result.returncode == 0, result.stderr
    assert "(ephemeral)" in result.stderr
    created = set(files_under(tmp_path)) - before
    assert not created, f"an Ephemeral chat created files: {sorted(map(str, created))}"
    for path in files_under(tmp_path):
        assert SENTINEL.encode() not in path.read_bytes(), path
    assert not env.profile.exists()


@pytest.mark.parametrize("tier", ["standard", "private"])
def test_no_plaintext_in_the_profile(env: Env, tier: str) -> None:
    result = env.run("chat", "--tier", tier, "--max-tokens", "8", f"{SENTINEL} in {tier}")
    assert result.returncode == 0, result.stderr
    assert SENTINEL in env.run("chats", "show", chat_id_of(result.stderr)).stdout
    for path in files_under(env.home):
        data = path.read_bytes()
        assert SENTINEL.encode() not in data, path
        if path.suffix in {".db", ".db-wal"}:
            assert not data.startswith(b"SQLite format 3\0"), path


@pytest.mark.slow
def test_killed_at_random_moments_never_corrupts(env: Env) -> None:
    """SIGKILL during `hushchat chat`: integrity ok, question kept, answer whole or partial."""
    first = env.run("chat", "--max-tokens", "4", "start")
    chat_id = chat_id_of(first.stderr)
    rng = random.Random(4242)
    runs = 20
    for run in range(runs):
        process = subprocess.Popen(
            [str(HUSHCHAT), "chat", "--chat", chat_id, "--max-tokens", "3000", f"crash run {run}"],
            env=env.vars(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        line = process.stderr.readline()  # "chat <id> (...)": the question is saved
        assert line.startswith("chat "), line + process.stderr.read()
        time.sleep(rng.uniform(0.0, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stderr.close()
    with open_library(env.profile) as library:
        store = library.store_of(chat_id)
        assert store.integrity_problems() == []
        thread = store.full_thread(chat_id)
        questions = [m.content for m in thread if m.role == "user"]
        assert questions == ["start", *[f"crash run {run}" for run in range(runs)]]
        answers = [m for m in thread if m.role == "assistant"]
        assert {m.status for m in answers} <= {MessageStatus.COMPLETE, MessageStatus.PARTIAL}
        for answer in answers:
            answer.content.encode("utf-8")  # whole characters, no torn writes
