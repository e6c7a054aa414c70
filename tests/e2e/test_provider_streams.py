"""``hushchat chat`` as a subprocess against provider servers that misbehave (issue 10).

* A server that stops mid-answer but keeps the connection open with keep-alives
  (``stalling_server``): the command ends with exit 3 within a few seconds once
  ``stream_idle_timeout`` passes, the partial answer kept (marked ``error``) where the
  tier keeps anything, and the error line says so only there (item 7).
* Proxies: with a logging proxy in ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``, chats with
  an on-prem server send it nothing; a Private chat through an entry's cloud ``proxy:`` is
  refused with exit 5 before anything is sent (item 1).

No llama-server: the servers are small Python ones on loopback.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.store.library import Library
from app.store.models import MessageStatus
from app.tiers import Tier
from app.vault.vault import Vault
from tests.homes import home_env
from tests.integration.providers.logging_proxy import LoggingProxy
from tests.integration.providers.stalling_server import PARTIAL_ANSWER, StallingServer

HUSHCHAT = Path(sys.executable).with_name("hushchat")
PASSPHRASE = "correct horse battery staple for tests"
FLOOR_KDF = ["--kdf-memory-mib", "64", "--kdf-iterations", "3", "--kdf-parallelism", "4"]
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
#: Idle timeout of the stalling entries, and how soon after it the command must have ended.
IDLE_S = 1
ENDS_WITHIN_S = 15  # start-up, vault unlock, the idle second, saving: a few seconds


@dataclass
class Profile:
    home: Path
    config: Path

    @property
    def profile(self) -> Path:
        return self.home / "profile"

    def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        variables = home_env(self.home, self.profile, self.config, drop=PROXY_VARIABLES)
        variables["HUSHCHAT_PASSPHRASE"] = PASSPHRASE
        variables.update(env or {})
        return subprocess.run(
            [str(HUSHCHAT), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=variables,
            timeout=60,
            check=False,
        )


def stalling_entry(name: str, server: StallingServer) -> str:
    api_key = "    api_key: ${STALLING_KEY:-not-checked}\n" if server.wire == "anthropic" else ""
    return (
        f"  - provider_name: {name}\n"
        f"    type: {server.wire}\n"
        f"    base_url: {server.base_url}\n"
        "    model_name: m\n"
        "    max_retries: 0\n"
        f"    stream_idle_timeout: {IDLE_S}\n" + api_key
    )


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, StallingServer]]:
    with contextlib.ExitStack() as stack:
        yield {
            wire: stack.enter_context(StallingServer(wire))
            for wire in ("openai", "ollama", "anthropic")
        }


@pytest.fixture(scope="module")
def named_proxy() -> Iterator[LoggingProxy]:
    with LoggingProxy() as proxy:
        yield proxy


@pytest.fixture(scope="module")
def profile(
    tmp_path_factory: pytest.TempPathFactory,
    servers: dict[str, StallingServer],
    named_proxy: LoggingProxy,
) -> Profile:
    """One initialised vault; a config with a stalling entry per wire format."""
    home = tmp_path_factory.mktemp("provider-streams") / "home"
    (home / "tmp").mkdir(parents=True)
    config = home / "config.yml"
    entries = "".join(stalling_entry(f"stalling-{wire}", s) for wire, s in servers.items())
    entries += stalling_entry("via-cloud-proxy", servers["openai"]) + (
        f"    proxy: {named_proxy.url}\n    proxy_locality: paid_cloud\n"
    )
    config.write_text(f"default_llm: stalling-openai\nllms:\n{entries}")
    found = Profile(home, config)
    result = found.run("vault", "init", "--passphrase-stdin", *FLOOR_KDF, stdin=PASSPHRASE + "\n")
    assert result.returncode == 0, result.stderr
    return found


@contextlib.contextmanager
def open_library(profile: Path) -> Iterator[Library]:
    vault = Vault.open(profile)
    try:
        vault.unlock_with_passphrase(PASSPHRASE)
        library = Library(vault.connect(Tier.STANDARD), vault.connect(Tier.PRIVATE))
        try:
            yield library
        finally:
            library.close()
    finally:
        vault.close()


def chat_id_of(stderr: str) -> str:
    match = re.search(r"^chat ([0-9a-f]{32}) ", stderr, re.MULTILINE)
    assert match, stderr
    return match.group(1)


@pytest.mark.parametrize("wire", ["openai", "ollama", "anthropic"])
def test_a_stream_of_keepalives_ends_with_exit_3_and_the_partial_answer_kept(
    profile: Profile, wire: str
) -> None:
    started = time.monotonic()
    result = profile.run("chat", "--provider", f"stalling-{wire}", "tell me about zebrafish")
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert elapsed < ENDS_WITHIN_S
    assert result.stdout.strip() == PARTIAL_ANSWER.strip()
    last_line = result.stderr.strip().splitlines()[-1]
    assert "stopped sending the answer" in last_line
    assert "partial answer is kept" in last_line
    assert "Traceback" not in result.stderr
    chat_id = chat_id_of(result.stderr)
    with open_library(profile.profile) as library:
        question, answer = library.store_of(chat_id).full_thread(chat_id)
    assert question.content == "tell me about zebrafish"
    assert answer.status is MessageStatus.ERROR
    assert answer.content == PARTIAL_ANSWER
    assert answer.error is not None and "stopped sending the answer" in answer.error


def test_an_ephemeral_chat_does_not_claim_to_keep_the_partial_answer(profile: Profile) -> None:
    result = profile.run("chat", "--tier", "ephemeral", "tell me about zebrafish")
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == PARTIAL_ANSWER.strip()
    last_line = result.stderr.strip().splitlines()[-1]
    assert "stopped sending the answer" in last_line
    assert "partial answer is kept" not in last_line
    assert last_line.endswith("(Ephemeral chat: nothing is kept)"), last_line


def test_on_prem_chats_send_the_environment_proxy_nothing(profile: Profile) -> None:
    with LoggingProxy() as proxy:
        env = dict.fromkeys(PROXY_VARIABLES, proxy.url)
        for tier in ("standard", "private", "ephemeral"):
            result = profile.run("chat", "--tier", tier, "private words", env=env)
            # The stalling server answers in part, then stalls: exit 3, but it was reached.
            assert result.returncode == 3, result.stderr
            assert result.stdout.strip() == PARTIAL_ANSWER.strip()
        assert proxy.received == b""


def test_private_chat_through_a_cloud_proxy_is_exit_5_before_anything_is_sent(
    profile: Profile, named_proxy: LoggingProxy, servers: dict[str, StallingServer]
) -> None:
    before = len(servers["openai"].requests)
    for tier in ("private", "ephemeral"):
        result = profile.run("chat", "--tier", tier, "--provider", "via-cloud-proxy", "secret")
        assert result.returncode == 5, result.stderr
        assert "on-prem" in result.stderr or "free" in result.stderr
    assert named_proxy.received == b""
    assert len(servers["openai"].requests) == before
