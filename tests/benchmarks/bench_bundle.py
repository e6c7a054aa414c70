"""The desktop bundle (``python3 packaging/bootstrap.py package``): build time, size, start.

Builds the bundle twice, each time from scratch into a folder of its own, with the running
environment (``package --venv``, as tests/e2e/test_bundle.py does), and compares the two
manifests' file lists (same lock, same file list: the reproducibility check, here rather
than in CI because a second build takes another 1.5 min). Then, on the first build:

a. the onedir's size (the manifest's total; budget: 150 MB on Linux);
b. frozen cold start: the bundled ``hushchat --debug`` with an initialised profile, from
   ``Popen`` to its log line "window shown on the unlock page" (closed at once by
   ``HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS``), the same child as bench_ui's (c) (budget 1 s);
c. ``hushchat --self-test`` wall time.

Medians over ``HUSHCHAT_BENCH_BUNDLE_RUNS`` runs (default 5). Linux only (the budgets are
for this machine); elsewhere ``BenchmarkUnavailableError``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks._table import BenchmarkUnavailableError, Row
from tests.benchmarks.bench_ui import PASSPHRASE, SHOWN_LINE, _Child, _median_ms, _run

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("HUSHCHAT_BENCH_BUNDLE_RUNS", "5"))
SIZE_BUDGET_MB = 150.0
START_BUDGET_MS = 1000.0


def _build(root: Path) -> tuple[float, Path]:
    """Build the bundle into ``root/dist``; seconds taken and the dist folder."""
    started = time.perf_counter()
    command = [
        sys.executable, str(ROOT / "packaging" / "bootstrap.py"), "package",
        "--venv", sys.prefix, "--dist", str(root / "dist"), "--work", str(root / "build"),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"bootstrap.py package failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started, root / "dist"


def _manifest(dist: Path) -> tuple[list[str], int]:
    lines = (dist / "hushchat-manifest.txt").read_text(encoding="utf-8").splitlines()
    total = int(lines[-1].split("\t")[1])
    return [line.split("\t")[0] for line in lines[:-1]], total


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUSHCHAT_", "XDG_"))}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "xdg-config"),
        XDG_DATA_HOME=str(home / "xdg-data"),
        XDG_CACHE_HOME=str(home / "xdg-cache"),
    )
    return env


def run() -> list[Row]:
    if not sys.platform.startswith("linux"):
        raise BenchmarkUnavailableError("the bundle budgets are for the Linux bundle")
    if importlib.util.find_spec("PyInstaller") is None:
        raise BenchmarkUnavailableError(
            "PyInstaller is not installed in this environment; install the bundle extra "
            "(requirements-bundle.lock) or run `python3 packaging/bootstrap.py package`"
        )
    from app.vault.kdf import FLOOR_PARAMS
    from app.vault.vault import Vault

    with tempfile.TemporaryDirectory(prefix="hushchat-bench-bundle-") as temp:
        root = Path(temp)
        build_seconds, dist = _build(root / "first")
        _second_seconds, second = _build(root / "second")
        paths, total = _manifest(dist)
        same_files = paths == _manifest(second)[0]

        home = root / "home"
        profile = home / "profile"
        vault, _code = Vault.create(profile, PASSPHRASE, kdf=FLOOR_PARAMS)
        vault.close()
        config = home / "config.yml"
        config.write_text(
            "llms:\n  - provider_name: local\n    type: openai\n"
            "    base_url: http://127.0.0.1:9/v1\n    model_name: m\n"
            "ui:\n  auto_lock_minutes: 0\n",
            encoding="utf-8",
        )
        executable = str(dist / "hushchat" / "hushchat")
        env = _env(home)
        window = _Child(
            "bundle",
            [executable, "--debug", "--config", str(config), "--profile", str(profile)],
            SHOWN_LINE,
        )
        self_test = _Child("self_test", [executable, "--self-test"], None)
        smoke_env = {**env, "HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS": "0"}
        _run(window, smoke_env)  # warm the file cache; a failing child fails here
        starts = [_run(window, smoke_env)[0] for _ in range(RUNS)]
        tests = [_run(self_test, env)[0] for _ in range(RUNS)]

    return [
        Row("bundle: build (bootstrap.py package, with its self-test)", build_seconds, "s"),
        Row(
            "bundle: onedir size (Linux)",
            total / 1e6,
            "MB",
            SIZE_BUDGET_MB,
            note=f"{len(paths)} files",
        ),
        Row(
            "bundle: frozen cold start to the unlock page",
            _median_ms(starts),
            "ms",
            START_BUDGET_MS,
        ),
        Row("bundle: --self-test wall time", _median_ms(tests), "ms"),
        Row(
            "bundle: two builds, same file list (1 = yes)",
            1.0 if same_files else 0.0,
            note="" if same_files else "the manifests differ",
        ),
    ]
