"""``hushchat unlock`` / ``hushchat lock`` as subprocesses: an unlock that lasts, then ends.

Every test has its own profile and ``$XDG_RUNTIME_DIR``; agents started here are locked
and, failing that, killed by the fixture's finalizer.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.agent import client
from app.agent.protocol import socket_path
from app.tiers import STORED_TIERS

ROOT = Path(__file__).resolve().parents[2]
# HUSHCHAT_E2E_COMMAND runs the tests against another build of the command.
HUSHCHAT = Path(
    os.environ.get("HUSHCHAT_E2E_COMMAND") or Path(sys.executable).with_name("hushchat")
)
PASSPHRASE = "correct horse battery staple for the agent"
FLOOR_KDF = ["--kdf-memory-mib", "64", "--kdf-iterations", "3", "--kdf-parallelism", "4"]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; the agent is Linux/macOS only"
)


def front_door_asks_the_agent() -> bool:
    """Whether the CLI's front door asks a running agent before a secret (app/session.py)."""
    return any(
        "request_keys" in (ROOT / "app" / name).read_text(encoding="utf-8")
        for name in ("session.py", "runtime.py")
    )


@dataclass
class Env:
    home: Path
    runtime: Path
    profile: Path
    pids: list[int] = field(default_factory=list)

    def vars(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUSHCHAT_", "XDG_"))}
        env.update(
            HOME=str(self.home),
            TMPDIR=str(self.home / "tmp"),
            XDG_RUNTIME_DIR=str(self.runtime),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            HUSHCHAT_PROFILE=str(self.profile),
        )
        env.update(extra)
        return env

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        timeout: float = 60,
        cwd: Path | None = None,
        **extra: str,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HUSHCHAT), *args],
            cwd=cwd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            env=self.vars(**extra),
            timeout=timeout,
            check=False,
        )

    def unlock(self, *args: str, via_environment: bool = False) -> int:
        """``hushchat unlock`` with the passphrase on stdin (or in the environment); the
        agent's pid."""
        if via_environment:
            result = self.run("unlock", *args, HUSHCHAT_PASSPHRASE=PASSPHRASE)
        else:
            result = self.run("unlock", *args, "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        assert result.returncode == 0, result.stderr
        match = re.search(r"agent pid (\d+)", result.stdout)
        assert match is not None, result.stdout
        pid = int(match.group(1))
        self.pids.append(pid)
        return pid


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)


@pytest.fixture(scope="module")
def template_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    usage = subprocess.run(
        [str(HUSHCHAT), "unlock", "--help"], capture_output=True, text=True, check=False
    )
    if usage.returncode != 0 or "--for DURATION" not in usage.stdout:
        pytest.skip("'hushchat unlock' is not registered in app/cli.py (COMMANDS) yet")
    base = tmp_path_factory.mktemp("agent-template")
    env = Env(base / "home", base / "run", base / "profile")
    result = env.run("vault", "init", "--passphrase-stdin", *FLOOR_KDF, stdin=PASSPHRASE + "\n")
    assert result.returncode == 0, result.stderr
    return env.profile


@pytest.fixture
def env(template_profile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    runtime = Path(tempfile.mkdtemp(prefix="hc-e2e-", dir="/tmp"))  # short socket paths
    runtime.chmod(0o700)
    (tmp_path / "home" / "tmp").mkdir(parents=True)
    shutil.copytree(template_profile, tmp_path / "profile")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # for the client calls in tests
    environment = Env(tmp_path / "home", runtime, tmp_path / "profile")
    yield environment
    environment.run("lock")
    for pid in environment.pids:
        if not wait_gone(pid, 2):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(runtime, ignore_errors=True)


def test_unlock_serves_commands_until_lock(env: Env) -> None:
    pid = env.unlock("--for", "1m")
    assert socket_path(env.profile).exists()
    if front_door_asks_the_agent():
        listed = env.run("chats", "list")  # no secret anywhere: the agent serves it
        assert listed.returncode == 0, listed.stderr
    locked = env.run("lock")
    assert locked.returncode == 0, locked.stderr
    assert "Locked" in locked.stdout
    assert wait_gone(pid, 5)
    assert not socket_path(env.profile).exists()
    refused = env.run("chats", "list")
    assert refused.returncode == 4, (refused.stdout, refused.stderr)
    again = env.run("lock")
    assert again.returncode == 0
    assert "No unlock agent was running" in again.stdout


def test_no_key_material_in_the_agents_argv_environment_or_fds(env: Env) -> None:
    pid = env.unlock("--for", "1m", via_environment=True)
    keys = client.request_keys(env.profile)
    assert keys is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"app.agent" in cmdline
    for blob in (cmdline, environ):
        assert PASSPHRASE.encode() not in blob
        for tier in STORED_TIERS:
            key = keys.key(tier)
            for form in (key, key.hex().encode(), base64.b64encode(key)):
                assert form not in blob
    assert b"HUSHCHAT_PASSPHRASE" not in environ
    keys.wipe()
    # Detached: its own session, no terminal, standard streams on /dev/null, cwd /.
    assert os.getsid(pid) != os.getsid(0)
    assert Path(f"/proc/{pid}/cwd").resolve() == Path("/")
    targets = {int(fd.name): str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    assert all(targets[fd] == "/dev/null" for fd in (0, 1, 2)), targets
    assert not [t for t in targets.values() if "/dev/pts" in t or "/dev/tty" in t]
    assert not [t for t in targets.values() if str(env.profile) in t]  # no profile lock
    status = env.run("vault", "status")
    assert "in use by another process: no" in status.stdout


def test_the_agent_does_not_hold_the_profile(env: Env) -> None:
    env.unlock("--for", "1m")
    verify = env.run("vault", "verify", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert verify.returncode == 0, verify.stderr  # takes the profile lock: free


def test_socket_refuses_after_lock(env: Env) -> None:
    pid = env.unlock("--for", "1m")
    path = socket_path(env.profile)
    assert env.run("lock").returncode == 0
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):
        sock.connect(str(path))
    assert client.request_keys(env.profile) is None
    assert wait_gone(pid, 5)


def test_agent_exits_after_the_idle_timeout(env: Env) -> None:
    pid = env.unlock("--for", "2s")
    assert client.status(env.profile) is not None
    assert wait_gone(pid, 8), "the agent outlived its idle timeout"
    assert not socket_path(env.profile).exists()
    assert client.request_keys(env.profile) is None


def test_rekey_makes_the_agent_stale(env: Env) -> None:
    pid = env.unlock("--for", "1m")
    rekey = env.run("vault", "rekey", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert rekey.returncode == 0, rekey.stderr
    assert client.request_keys(env.profile) is None  # stale: ignored and told to lock
    assert wait_gone(pid, 5)
    pid = env.unlock("--for", "1m")
    assert client.request_keys(env.profile) is not None


def test_unlock_twice_keeps_the_running_agent(env: Env) -> None:
    pid = env.unlock("--for", "1m")
    second = env.run("unlock")  # no secret needed: nothing is asked
    assert second.returncode == 0, second.stderr
    assert f"Already unlocked (unlock agent pid {pid}" in second.stdout
    assert is_alive(pid)


def test_wrong_passphrase_starts_no_agent(env: Env) -> None:
    result = env.run("unlock", "--passphrase-stdin", stdin="not the passphrase\n")
    assert result.returncode == 4, result.stderr
    assert not socket_path(env.profile).exists()
    assert client.status(env.profile) is None


def test_bad_duration_is_a_usage_error(env: Env) -> None:
    result = env.run("unlock", "--for", "soon", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert result.returncode == 2
    assert "90s, 15m, 1h" in result.stderr


def test_a_relative_profile_path_finds_the_same_agent(env: Env) -> None:
    relative = ["--profile", env.profile.name]
    result = env.run(
        *relative, "unlock", "--passphrase-stdin", stdin=PASSPHRASE + "\n", cwd=env.profile.parent
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"agent pid (\d+)", result.stdout)
    assert match is not None
    env.pids.append(int(match.group(1)))
    assert client.status(env.profile) is not None  # the absolute path names the same socket
    assert "Locked" in env.run(*relative, "lock", cwd=env.profile.parent).stdout
