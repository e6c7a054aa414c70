"""Start-up of the window and of the command line, against bare Qt windows (cold, paired runs).

Every sample is a fresh process (offscreen Qt), timed by this process from ``Popen`` to the
line the child prints when its window is shown (the first event-loop turn after the window's
first paint), so interpreter start-up and imports count on every side (with
bytecode cached, as in an installed app). One round runs each child once, in an order that
rotates from round to round; the figures are medians over ``RUNS`` rounds
(``HUSHCHAT_BENCH_UI_RUNS`` overrides), ratios are medians of the per-round ratios:

a. bare PySide6 + qasync: import both, create the application, the qasync loop and a window
   with one label, show it;
b. bare PySide6: the same without qasync (``app.exec()``);
c. ``hushchat --debug`` (the console script's code) with an initialised profile, to its log
   line "window shown on the unlock page", closed at once by ``HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS``;
d. the same command in a child that, once the unlock page is shown and the vault opened
   (a person takes longer than that to type), submits the passphrase and times from the
   submission to the first paint of the main page, minus the Argon2id time measured in that
   run (floor parameters; the KDF is subtracted, so its parameters do not matter). The same
   child also times locking (to the unlock page, widgets cleared) and opening the settings
   dialog, without budgets;
e. ``hushchat --help`` and ``hushchat --version`` to exit, next to ``python -c pass``.

Budgets (shared DESIGN §8): c ≤ 1.5x a; d ≤ KDF + 0.3 s.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks._table import BenchmarkUnavailableError, Row

RUNS = int(os.environ.get("HUSHCHAT_BENCH_UI_RUNS", "11"))
START_BUDGET_RATIO = 1.5
UNLOCK_BUDGET_MS = 300.0
PASSPHRASE = "benchmark passphrase for the window"
SHOWN_LINE = "window shown on the unlock page"
CHILD_TIMEOUT = 120.0  # seconds before a hung child is killed (and the benchmark fails)

# Both bare windows report as ``hushchat`` does: on the first event-loop turn after their
# first paint (``MainWindow.first_painted``).
_BARE_QASYNC = textwrap.dedent(
    """
    import asyncio, sys
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
    import qasync

    class Window(QMainWindow):
        def paintEvent(self, event):
            super().paintEvent(event)
            QTimer.singleShot(0, shown)

    app = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = Window()
    window.setCentralWidget(QLabel("Hello"))
    window.resize(1100, 720)
    done = asyncio.Event()

    def shown():
        if not done.is_set():
            print("SHOWN", flush=True)
            done.set()

    window.show()
    with loop:
        loop.run_until_complete(done.wait())
    """
)

_BARE_QT = textwrap.dedent(
    """
    import sys
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    class Window(QMainWindow):
        def paintEvent(self, event):
            super().paintEvent(event)
            QTimer.singleShot(0, shown)

    app = QApplication(sys.argv[:1])
    window = Window()
    window.setCentralWidget(QLabel("Hello"))
    window.resize(1100, 720)

    def shown():
        print("SHOWN", flush=True)
        app.quit()

    window.show()
    sys.exit(app.exec())
    """
)

# What the ``hushchat`` console script runs.
_HUSHCHAT = "import sys\nfrom app.cli import main\nsys.exit(main())\n"

# The real ``hushchat`` start-up, driven from a log handler once the unlock page is shown.
_UNLOCK = textwrap.dedent(
    """
    import logging, sys, time

    passphrase = sys.stdin.readline().rstrip("\\n")
    marks = {}

    def report(word, seconds):
        print(f"{word} {seconds:.6f}", flush=True)

    def drive():
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        import app.vault.vault as vault_module
        from app.ui import tasks
        from app.ui.main_window import MainWindow

        shown_at = time.perf_counter()
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        kdf = []
        derive = vault_module.derive_passphrase_secret

        def timed_derive(*args, **kwargs):
            started = time.perf_counter()
            try:
                return derive(*args, **kwargs)
            finally:
                kdf.append(time.perf_counter() - started)

        vault_module.derive_passphrase_secret = timed_derive
        unlocks = []

        def submit():
            if window.chat_area is None or tasks.running():
                QTimer.singleShot(5, submit)  # the vault is still opening
                return
            if not unlocks:
                report("READY", time.perf_counter() - shown_at)
            kdf.clear()
            window.unlock_page.passphrase_edit.setText(passphrase)
            marks["submitted"] = time.perf_counter()
            window.unlock_page.unlock()

        def main_page_painted():
            assert window.current_page == "main", window.current_page
            if len(unlocks) == 1:
                report("UNLOCKED", time.perf_counter() - marks["submitted"])
                report("KDF", sum(kdf))
                started = time.perf_counter()
                window.lock(confirm=False)
                QApplication.processEvents()
                report("LOCK", time.perf_counter() - started)
                QTimer.singleShot(0, submit)
                return
            started = time.perf_counter()
            dialog = window.open_settings()
            QApplication.processEvents()
            report("SETTINGS", time.perf_counter() - started)
            dialog.close()
            window.close()

        def on_unlocked():
            unlocks.append(1)
            QTimer.singleShot(0, main_page_painted)

        window.unlocked.connect(on_unlocked)
        submit()

    class Shown(logging.Handler):
        def emit(self, record):
            if record.getMessage() == "window shown on the unlock page":
                drive()

    logging.getLogger("app.ui.app").addHandler(Shown())
    from app.cli import main

    sys.exit(main())
    """
)


@dataclass(frozen=True)
class _Child:
    """One kind of child process and how to read its figures."""

    name: str
    argv: list[str]
    #: The stdout or stderr line whose arrival is the child's "shown" time, or None: wall time.
    shown: str | None
    stdin: str = ""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    # Compiled bytecode is cached, as in an installed app (the warm-up run writes it), in
    # the benchmark's directory rather than next to the sources.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    # Window state and QSettings go to the benchmark's directory, not the user's.
    env["XDG_CONFIG_HOME"] = str(home / "xdg-config")
    env["XDG_DATA_HOME"] = str(home / "xdg-data")
    env["XDG_CACHE_HOME"] = str(home / "xdg-cache")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(child: _Child, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Seconds from Popen to the child's shown line (or its exit), and its printed figures."""
    started = time.perf_counter()
    process = subprocess.Popen(
        child.argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    watchdog = threading.Timer(CHILD_TIMEOUT, process.kill)
    watchdog.start()
    process.stdin.write(child.stdin + "\n")
    process.stdin.close()
    shown_at: float | None = None
    figures: dict[str, float] = {}
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        if child.shown is not None and shown_at is None and child.shown in line:
            shown_at = time.perf_counter() - started
        word, *rest = line.split() or [""]
        if word.isupper() and len(rest) == 1:
            with contextlib.suppress(ValueError):
                figures[word] = float(rest[0])
    code = process.wait()
    ended = time.perf_counter() - started
    watchdog.cancel()
    if code != 0 or (child.shown is not None and shown_at is None):
        tail = "".join(output)[-3000:]
        raise RuntimeError(f"{child.name} failed (exit {code}):\n{tail}")
    return (ended if child.shown is None else shown_at or 0.0), figures


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _paired_ratio(top: list[float], bottom: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(top, bottom, strict=True))


def run() -> list[Row]:
    """Cold-start figures: medians of ``RUNS`` rounds of interleaved fresh processes."""
    try:
        import PySide6  # noqa: F401
        import qasync  # noqa: F401
    except ImportError as error:
        raise BenchmarkUnavailableError(f"PySide6/qasync missing: {error}") from error
    from app.vault.kdf import FLOOR_PARAMS
    from app.vault.vault import Vault

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="hushchat-bench-ui-") as temp:
        root = Path(temp)
        profile = root / "profile"
        vault, _code = Vault.create(profile, PASSPHRASE, kdf=FLOOR_PARAMS)
        vault.close()
        config = root / "config.yml"
        config.write_text(
            "llms:\n  - provider_name: local\n    type: openai\n"
            "    base_url: http://127.0.0.1:9/v1\n    model_name: m\n"
            "ui:\n  auto_lock_minutes: 0\n",
            encoding="utf-8",
        )
        env = _env(root)
        window_args = ["--debug", "--config", str(config), "--profile", str(profile)]
        children = [
            _Child("bare_qasync", [python, "-c", _BARE_QASYNC], "SHOWN"),
            _Child("bare_qt", [python, "-c", _BARE_QT], "SHOWN"),
            _Child("hushchat", [python, "-c", _HUSHCHAT, *window_args], SHOWN_LINE),
            _Child("unlock", [python, "-c", _UNLOCK, *window_args], SHOWN_LINE, PASSPHRASE),
            _Child("help", [python, "-c", _HUSHCHAT, "--help"], None),
            _Child("version", [python, "-c", _HUSHCHAT, "--version"], None),
            _Child("python", [python, "-c", "pass"], None),
        ]
        smoke_env = {**env, "HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS": "0"}
        envs: dict[str, dict[str, str]] = {"hushchat": smoke_env}
        for child in children:  # warm the file and bytecode caches; a failing child fails here
            _run(child, envs.get(child.name, env))
        seconds: dict[str, list[float]] = {child.name: [] for child in children}
        figures: dict[str, list[float]] = {}
        for round_number in range(RUNS):
            shift = round_number % len(children)
            for child in children[shift:] + children[:shift]:
                took, printed = _run(child, envs.get(child.name, env))
                seconds[child.name].append(took)
                for word, value in printed.items():
                    figures.setdefault(word, []).append(value)

    bare, hushchat = seconds["bare_qasync"], seconds["hushchat"]
    unlocked, kdf = figures["UNLOCKED"], figures["KDF"]
    without_kdf = [u - k for u, k in zip(unlocked, kdf, strict=True)]

    def ms(name: str) -> float:
        return _median_ms(seconds[name])

    return [
        Row("ui start: (a) bare PySide6+qasync window shown", ms("bare_qasync"), "ms"),
        Row("ui start: (b) bare PySide6 window shown", ms("bare_qt"), "ms"),
        Row(
            "ui start: (c) hushchat to the unlock page",
            ms("hushchat"),
            "ms",
            note=f"{len(bare)} paired cold runs",
        ),
        Row(
            "ui start: (c)/(a) unlock page vs bare PySide6+qasync",
            _paired_ratio(hushchat, bare),
            "x",
            budget=START_BUDGET_RATIO,
        ),
        Row(
            "ui start: (c)/(b) unlock page vs bare PySide6",
            _paired_ratio(hushchat, seconds["bare_qt"]),
            "x",
        ),
        Row(
            "ui start: unlock page shown -> vault open, chat area built",
            _median_ms(figures["READY"]),
            "ms",
            note="in the background, before a passphrase can be typed",
        ),
        Row(
            "ui unlock: (d) passphrase -> main page shown, minus KDF",
            _median_ms(without_kdf),
            "ms",
            budget=UNLOCK_BUDGET_MS,
            note=f"{_median_ms(unlocked):.0f} ms with the floor KDF of {_median_ms(kdf):.0f} ms",
        ),
        Row("ui: lock to unlock page", _median_ms(figures["LOCK"]), "ms"),
        Row("ui: open settings dialog", _median_ms(figures["SETTINGS"]), "ms"),
        Row("cli: hushchat --help", ms("help"), "ms"),
        Row("cli: hushchat --version", ms("version"), "ms"),
        Row("cli: python -c pass (interpreter floor)", ms("python"), "ms"),
    ]
