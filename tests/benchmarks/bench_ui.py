"""The window shell: cold start to an unlocked window versus a bare PySide6 + qasync window.

Each sample is a fresh process (offscreen Qt), timed by this process from ``Popen`` to the
child's "shown" line, so interpreter start-up and imports count on both sides:

* bare: import PySide6 and qasync, create the application, the qasync loop and a window
  with one label, show it, and report after the first paint;
* hushchat: the real start-up path (``create_application``, ``Session``, ``MainWindow``),
  open an existing vault, unlock it with the passphrase (Argon2id at the floor
  parameters), load the chat area and report after the unlocked window painted.

Budget (shared DESIGN §8): ≤ 2x the bare window, KDF excluded. Both figures are reported:
the raw ratio (floor KDF included, nothing subtracted) and the ratio with the KDF time the
child measured subtracted. Also reported, without budgets: how long locking takes (to the
unlock page, widgets cleared) and opening the settings dialog, in the same child.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tests.benchmarks._table import BenchmarkUnavailableError, Row

RUNS = 5
BUDGET_RATIO = 2.0
PASSPHRASE = "benchmark passphrase for the window"

_BARE = textwrap.dedent(
    """
    import asyncio, sys
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
    import qasync

    app = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = QMainWindow()
    window.setCentralWidget(QLabel("Hello"))
    window.resize(1100, 720)
    done = asyncio.Event()

    def shown():
        print("SHOWN", flush=True)
        done.set()

    window.show()
    QTimer.singleShot(0, shown)
    with loop:
        loop.run_until_complete(done.wait())
    """
)

_HUSHCHAT = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from app.ui.app import create_application
    from PySide6.QtCore import QSettings, QTimer
    import qasync
    from app.config import load_config
    from app.ui.main_window import MainWindow
    from app.session import Session
    from app.vault.kdf import FLOOR_PARAMS

    profile, config_path, settings_path = sys.argv[1:4]
    passphrase = sys.stdin.readline().rstrip("\\n")
    app = create_application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    session = Session(load_config(config_path, {}), Path(profile), kdf=FLOOR_PARAMS)
    window = MainWindow(session, settings=QSettings(settings_path, QSettings.Format.IniFormat))
    done = asyncio.Event()
    kdf = {}

    original = session.runner.blocking
    async def timed_blocking(fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await original(fn, *args, **kwargs)
        finally:
            if getattr(fn, "__name__", "") == "unlock_with_passphrase":
                kdf["seconds"] = time.perf_counter() - started
    session.runner.blocking = timed_blocking

    def painted():
        print(f"SHOWN {kdf.get('seconds', 0.0):.6f}", flush=True)
        started = time.perf_counter()
        window.lock(confirm=False)
        app.processEvents()
        locked = time.perf_counter() - started
        print(f"LOCK {locked:.6f}", flush=True)
        window.unlock_page.passphrase_edit.setText(passphrase)
        window.unlock_page.unlock()

    def settings():
        started = time.perf_counter()
        dialog = window.open_settings()
        app.processEvents()
        print(f"SETTINGS {time.perf_counter() - started:.6f}", flush=True)
        dialog.close()
        window.close()
        done.set()

    unlocks = []

    def on_unlocked():
        unlocks.append(1)
        QTimer.singleShot(0, painted if len(unlocks) == 1 else settings)

    window.unlocked.connect(on_unlocked)
    window.show()
    window.unlock_page.passphrase_edit.setText(passphrase)
    window.unlock_page.unlock()
    with loop:
        loop.run_until_complete(done.wait())
    session.close()
    """
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _time_child(script: str, args: list[str], stdin: str = "") -> tuple[float, dict[str, float]]:
    """Seconds from Popen to the SHOWN line, and the other figures the child printed."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(stdin + "\n")
    child.stdin.flush()
    shown_at: float | None = None
    figures: dict[str, float] = {}
    for line in child.stdout:
        word, *rest = line.split()
        if word == "SHOWN" and shown_at is None:
            shown_at = time.perf_counter() - started
        if rest:
            figures[word] = float(rest[0])
    _out, err = child.communicate(timeout=60)
    if child.returncode != 0 or shown_at is None:
        raise RuntimeError(f"child failed ({child.returncode}): {err[-2000:]}")
    return shown_at, figures


def run() -> list[Row]:
    """Cold-start figures (medians of ``RUNS`` alternating runs)."""
    try:
        import PySide6  # noqa: F401
        import qasync  # noqa: F401
    except ImportError as error:
        raise BenchmarkUnavailableError(f"PySide6/qasync missing: {error}") from error
    from app.vault.kdf import FLOOR_PARAMS
    from app.vault.vault import Vault

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
        settings = str(root / "window.ini")
        # Warm the OS file cache for both, then alternate.
        _time_child(_BARE, [])
        _time_child(_HUSHCHAT, [str(profile), str(config), settings], PASSPHRASE)
        bare: list[float] = []
        app: list[float] = []
        kdf: list[float] = []
        lock: list[float] = []
        open_settings: list[float] = []
        for _ in range(RUNS):
            bare.append(_time_child(_BARE, [])[0])
            seconds, figures = _time_child(
                _HUSHCHAT, [str(profile), str(config), settings], PASSPHRASE
            )
            app.append(seconds)
            kdf.append(figures.get("SHOWN", 0.0))
            lock.append(figures.get("LOCK", 0.0))
            open_settings.append(figures.get("SETTINGS", 0.0))

    bare_ms = statistics.median(bare) * 1000
    app_ms = statistics.median(app) * 1000
    kdf_ms = statistics.median(kdf) * 1000
    without_kdf_ms = statistics.median(a - k for a, k in zip(app, kdf, strict=True)) * 1000
    return [
        Row("ui: bare PySide6+qasync window shown", bare_ms, "ms"),
        Row(
            "ui: cold start to unlocked window (floor KDF incl.)",
            app_ms,
            "ms",
            note=f"Argon2id floor unlock {kdf_ms:.0f} ms of it",
        ),
        Row(
            "ui: cold start / bare, KDF included",
            app_ms / bare_ms,
            "x",
            budget=BUDGET_RATIO,
        ),
        Row(
            "ui: cold start / bare, KDF excluded",
            without_kdf_ms / bare_ms,
            "x",
            budget=BUDGET_RATIO,
            note=f"{without_kdf_ms:.0f} ms without the unlock KDF",
        ),
        Row("ui: lock to unlock page", statistics.median(lock) * 1000, "ms"),
        Row("ui: open settings dialog", statistics.median(open_settings) * 1000, "ms"),
    ]
