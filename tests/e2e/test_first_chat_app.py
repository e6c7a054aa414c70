"""The README's app command on a fresh profile, driven with the keyboard under a real X
server: from first launch to a streamed answer of a detected llama-server in three screens.

``python3 packaging/bootstrap.py app --debug`` runs as a new user would start it, with a
home of its own (no config, no vault), under Xvfb; ``xdotool`` types into it. A
llama-server on llama.cpp's default port (8080) is the local server the first run detects
while the recovery code is on screen. Screens are read from the app's ``--debug`` log
("first run: the … page", "unlocked: the chats page"); the answer is read back with
``hushchat chats show`` through the window's own key server (no passphrase asked). Then
Ctrl+L locks (the command line loses the keys with the window), the passphrase typed on
the unlock page opens it again, and Ctrl+Q quits with exit status 0.

Needs Xvfb and xdotool (Debian packages ``xvfb``, ``xdotool``): skipped without them
locally, a failure in CI (``CI=true``), which must run it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.llama_server import LlamaServer

ROOT = Path(__file__).resolve().parents[2]
HUSHCHAT = Path(sys.executable).with_name("hushchat")
PASSPHRASE = "violet harbor lantern quietly"
LLAMA_CPP_DEFAULT_PORT = 8080  # where the first run looks for llama.cpp (app/provider_presets.py)
WAIT = 90.0  # the app's first start also imports everything and derives the vault key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.llama_server,
    pytest.mark.xvfb,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Xvfb is Linux only"),
]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: this test must run in CI)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def display(tmp_path: Path) -> Iterator[str]:
    """A private X server (Xvfb), its display name."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None or shutil.which("xdotool") is None:
        _missing("Xvfb or xdotool is not installed (apt-get install xvfb xdotool)")
    assert xvfb is not None
    read_end, write_end = os.pipe()
    with (tmp_path / "xvfb.log").open("wb") as xvfb_log:
        process = subprocess.Popen(
            [xvfb, "-displayfd", str(write_end), "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=xvfb_log,
        )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            number = reader.readline().strip().decode()
        assert number.isdigit(), f"Xvfb gave no display number; see {tmp_path / 'xvfb.log'}"
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def llama_on_its_default_port(
    llama_server_binary: Path, tiny_model_path: Path, tmp_path: Path
) -> Iterator[LlamaServer]:
    """llama-server where a user's would be: 127.0.0.1:8080, answers of 24 tokens."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", LLAMA_CPP_DEFAULT_PORT)) == 0:
            pytest.fail(
                f"port {LLAMA_CPP_DEFAULT_PORT} is taken: this test needs llama.cpp's default "
                "port for the server the first run detects",
                pytrace=False,
            )
    server = LlamaServer(
        llama_server_binary,
        tiny_model_path,
        tmp_path / "llama-server.log",
        port=LLAMA_CPP_DEFAULT_PORT,
        n_predict=24,  # the tiny model on one thread is slow; the chat sets no limit
    )
    with server:
        yield server


class App:
    """The app started by the README's command, its log, and the keyboard."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        python = shutil.which("python3") or sys.executable
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [python, str(ROOT / "packaging" / "bootstrap.py"), "app", "--debug"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(
        self,
        what: str | Callable[[str], bool],
        timeout: float = WAIT,
        what_else: Callable[[], str] = str,
    ) -> None:
        """Until the log has ``what`` (or ``what(log)`` holds); fails if the app exits
        (``what_else()`` adds to the failure what the test saw last)."""
        deadline = time.monotonic() + timeout
        test = what if callable(what) else (lambda log: what in log)
        while time.monotonic() < deadline:
            if test(self.log()):
                return
            if self.process.poll() is not None:
                pytest.fail(f"the app exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            time.sleep(0.1)
        pytest.fail(
            f"waited {timeout:.0f} s for {what!r} ({what_else()}); the app's log:\n"
            f"{self.log()[-4000:]}"
        )

    def xdotool(self, *args: str) -> str:
        result = subprocess.run(
            ["xdotool", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"xdotool {' '.join(args)}: {result.stderr}"
        return result.stdout

    def focus_window(self) -> None:
        """Give the window the keyboard (there is no window manager to do it)."""
        found = self.xdotool("search", "--sync", "--onlyvisible", "--name", "^Hushchat")
        window = found.split()[-1]
        self.xdotool("windowfocus", "--sync", window)

    def type(self, text: str) -> None:
        self.xdotool("type", "--delay", "15", text)

    def key(self, *keys: str) -> None:
        self.xdotool("key", "--delay", "50", *keys)

    def hushchat(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A ``hushchat`` command of this profile (it uses the window's keys)."""
        return subprocess.run(
            [str(HUSHCHAT), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _fresh_user(tmp_path: Path, display: str) -> dict[str, str]:
    """A new user's environment: an empty home, this X display, no keychain."""
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    for path in (home, runtime):
        path.mkdir(mode=0o700)
    keep = ("PATH", "LANG", "LC_ALL", "HUSHCHAT_VENV", "COVERAGE_PROCESS_START", "COVERAGE_FILE")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_RUNTIME_DIR": str(runtime),
            "DISPLAY": display,
            "QT_QPA_PLATFORM": "xcb",
            # The venv the tests run in: the README's command finds it installed.
            "HUSHCHAT_VENV": sys.prefix,
        }
    )
    return env


def test_readme_app_command_first_launch_to_a_streamed_answer_in_three_screens(
    tmp_path: Path, display: str, llama_on_its_default_port: LlamaServer
) -> None:
    app = App(_fresh_user(tmp_path, display), tmp_path / "app.log")
    try:
        # Screen 1: the passphrase (the field has the keyboard from the start).
        app.wait_for("window shown on the first_run page")
        app.focus_window()
        app.type(PASSPHRASE)
        app.key("Tab")
        app.type(PASSPHRASE)
        app.key("Return")

        # Screen 2: the recovery code; the llama-server is found while it is shown.
        app.wait_for("first run: the recovery code page")
        app.wait_for("first run: found the model tiny-llama on llama.cpp")
        app.key("alt+l")  # Remind me later

        # Screen 3: the chats, the composer has the keyboard; Enter sends.
        app.wait_for("unlocked: the chats page")
        app.type("Tell me about zebrafish please")
        app.key("Return")

        shown: list[str] = []

        def answered(_log: str) -> bool:
            listed = app.hushchat("chats", "list")
            shown[:] = [f"chats list: exit {listed.returncode}: {listed.stderr}"]
            if listed.returncode != 0 or not listed.stdout.strip():
                return False
            chat_id = listed.stdout.split()[0].rstrip("*")
            result = app.hushchat("chats", "show", chat_id)
            shown[:] = [result.stdout]
            # The answer is complete once it has no status mark such as "(streaming)" and
            # its stats line (time to first token, tokens/s) is under it. Its text is the
            # tiny random model's: any characters, spaces first perhaps.
            answer = re.search(
                r"^## Assistant \(tiny-llama\)\n\n(.+)\n\n_(.+)_$", result.stdout, re.M | re.S
            )
            return answer is not None and "tokens" in answer.group(2)

        app.wait_for(answered, what_else=lambda: shown[0] if shown else "")
        assert "## You\n\nTell me about zebrafish please" in shown[0]

        pages = re.findall(r"first run: the ([a-z ]+) page", app.log())
        assert pages == ["passphrase", "recovery code"], pages
        assert "provider page" not in app.log()  # the detected server made it unnecessary

        # Ctrl+L locks: the command line loses the window's keys with it; the passphrase
        # typed on the unlock page brings the chats back.
        app.key("ctrl+l")
        app.wait_for("vault locked")
        assert app.hushchat("chats", "list").returncode == 4  # locked, no passphrase given
        app.type(PASSPHRASE)
        app.key("Return")
        app.wait_for(lambda log: log.count("unlocked: the chats page") == 2)
        assert app.hushchat("chats", "list").returncode == 0

        app.key("ctrl+q")
        assert app.process.wait(timeout=60) == 0, app.log()[-4000:]
        assert "Traceback" not in app.log()
        assert PASSPHRASE not in app.log()
        assert "zebrafish" not in app.log()  # message text never reaches the log
    finally:
        app.stop()
