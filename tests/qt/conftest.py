"""Shared fixtures of the Qt tier: offscreen Qt, the qasync loop, a profile, a window.

The tier needs no peer: sessions answer from ``scripted_model`` (a ``ScriptedModel`` that
streams like the tiny local model). Tests that need the real llama-server use
``llama_config`` and carry ``@pytest.mark.llama_server``; collection refuses a test here
that asks for a llama-server fixture without that marker.

* ``qt_loop`` (autouse): a ``qasync.QEventLoop`` over pytest-qt's ``qapp``, marked
  running, so ``app.ui.tasks.start`` works and ``qtbot.waitUntil`` drives coroutines.
  Tests stay synchronous (pytest-asyncio is in auto mode: do not mark Qt tests async).
* ``memory_keyring`` (autouse): an in-memory ``keyring`` backend; nothing reaches the
  real OS keychain.
* ``qt_profile``: an empty profile directory; ``QT_PASSPHRASE`` is what the vault
  fixtures use, with Argon2id at the floor parameters.
* ``qt_config``: a config file with one on-prem provider, ``tiny`` (model ``tiny-llama``,
  context 512) at a closed loopback port; auto-lock off.
* ``scripted_model``: the model behind ``unlocked_session``'s providers (context 512);
  set its ``script`` for answers of the test's own.
* ``llama_config``: like ``qt_config`` with ``tiny`` at the real llama-server peer.
* ``unlocked_session``: a ``Session`` over ``qt_config`` and ``scripted_model`` whose
  vault was created in ``qt_profile`` and is unlocked, library and chat service open.
* ``main_window``: a shown ``MainWindow`` over ``unlocked_session`` on its main page.
* ``run_async(coro)``: run a coroutine on the loop and return its result.
* ``window_settings``: a ``QSettings`` file of the test's own for window state.
* helpers: ``make_session(config, profile, provider_factory=None)`` (KDF floor),
  ``shown_main_window(qtbot, session, settings)``, ``widget_texts(widget)`` (every text
  under a widget, item-view models included: assert a sentinel is gone after a lock),
  ``drain(qapp, until)``, ``write_config(path, base_url)``, ``MemoryKeyring``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
import shiboken6
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.chat.service import ProviderFactory
from app.config import LoadedConfig, load_config
from app.session import Session
from app.ui import tasks
from app.vault.kdf import FLOOR_PARAMS
from tests.peers.keychain import MemoryKeyring, replaced_keyring
from tests.peers.llama_server import LlamaServer, free_port
from tests.peers.scripted_provider import ScriptedModel

T = TypeVar("T")

QT_PASSPHRASE = "correct horse battery staple qt"

# The context size of ``tiny`` in the test config, as the tiny llama-server model has.
CONTEXT_SIZE = 512

# Fixtures that start the real llama-server: a test asking for one needs the marker.
LLAMA_SERVER_FIXTURES = frozenset(
    {"llama_server", "dedicated_llama_server", "llama_server_binary", "llama_config"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a Qt test that needs llama-server without ``@pytest.mark.llama_server``:
    ``-m "not llama_server"`` (the Windows job) must select only tests that need no peer."""
    here = Path(__file__).parent
    unmarked = [
        item.nodeid
        for item in items
        if here in item.path.parents
        and LLAMA_SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("llama_server") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use a llama-server fixture but are not marked "
            "@pytest.mark.llama_server: " + ", ".join(unmarked)
        )


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    """The OS keychain, replaced by a dict for the test."""
    with replaced_keyring() as backend:
        yield backend


def drain(qapp: QApplication, until: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Process Qt events (and so the loop's callbacks) until ``until()`` or the timeout."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            return False
        qapp.processEvents()
        time.sleep(0.001)
    return True


@pytest.fixture(autouse=True)
def qt_loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """A qasync loop on the test's QApplication, running while Qt processes events.

    Like ``asyncio.run``, it finalizes async generators on the loop (qasync installs no
    hooks) and, at the end, cancels what still runs and closes leftover generators.
    """
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    old_hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
        finalizer=loop._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
    )
    yield loop
    tasks.cancel_all()
    drain(qapp, lambda: tasks.running() == 0)
    finalizing = asyncio.ensure_future(loop.shutdown_asyncgens())
    drain(qapp, finalizing.done)
    sys.set_asyncgen_hooks(*old_hooks)
    # Not loop.stop(): that calls QApplication.exit(), which would end the next test's
    # waits early. The loop was never run by run_forever, so only the flag is reset.
    loop._QEventLoop__is_running = False  # type: ignore[attr-defined]
    asyncio.events._set_running_loop(None)
    loop.close()
    # qasync's close() only flags its timer object: the Qt timers of callbacks still
    # pending (the sleep of a cancelled task) stay registered with it. Deleted here, on the
    # GUI thread, they go with it; left to the garbage collector, a timer of a dead loop
    # later fired into freed memory (a segfault in QTimerInfoList::activateTimers).
    shiboken6.delete(loop._timer)  # type: ignore[attr-defined]
    asyncio.set_event_loop(None)


@pytest.fixture
def run_async(qtbot: QtBot) -> Callable[..., Any]:
    """``run_async(coro, timeout=10_000)``: run a coroutine on the loop, return its result."""

    def run(coro: Coroutine[Any, Any, T], timeout: int = 10_000) -> T:
        task = asyncio.ensure_future(coro)
        qtbot.waitUntil(task.done, timeout=timeout)
        return task.result()

    return run


@pytest.fixture
def qt_profile(tmp_path: Path) -> Path:
    """An empty profile directory (no vault yet)."""
    profile = tmp_path / "profile"
    profile.mkdir(mode=0o700)
    return profile


def write_config(path: Path, base_url: str, *, extra: str = "") -> Path:
    """A config file with one on-prem provider ``tiny`` at ``base_url`` (an /v1 URL)."""
    path.write_text(
        "# Test config: comments must survive the settings dialog's writes.\n"
        "default_llm: tiny\n"
        "llms:\n"
        "  # the tiny local model\n"
        "  - provider_name: tiny\n"
        "    type: openai\n"
        f"    base_url: {base_url}\n"
        "    model_name: tiny-llama\n"
        f"    context_size: {CONTEXT_SIZE}\n"
        "    max_retries: 0\n"
        "ui:\n"
        "  theme: light\n"
        "  auto_lock_minutes: 0\n" + extra,
        encoding="utf-8",
    )
    return path


def closed_port_url() -> str:
    """An /v1 URL on loopback where nothing listens (a request there fails at once)."""
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture
def qt_config(tmp_path: Path) -> LoadedConfig:
    """A config whose one provider ``tiny`` is at a closed port: sessions of this tier
    answer from ``scripted_model``, so no request reaches the network."""
    return load_config(write_config(tmp_path / "config.yml", closed_port_url()), {})


@pytest.fixture
def llama_config(tmp_path: Path, llama_server: LlamaServer) -> LoadedConfig:
    """A config whose one provider ``tiny`` is the real llama-server (``tiny-llama``)."""
    path = write_config(tmp_path / "config.yml", f"{llama_server.base_url}/v1")
    return load_config(path, {})


@pytest.fixture
def scripted_model() -> ScriptedModel:
    """The model behind every provider of ``unlocked_session`` (context 512 tokens)."""
    return ScriptedModel(context_size=CONTEXT_SIZE)


def make_session(
    config: LoadedConfig, profile: Path, *, provider_factory: ProviderFactory | None = None
) -> Session:
    """A session at the KDF floor (fast Argon2id)."""
    return Session(config, profile, kdf=FLOOR_PARAMS, provider_factory=provider_factory)


def unlock_new_vault(session: Session, run_async: Callable[..., Any]) -> Session:
    """Create the session's vault with ``QT_PASSPHRASE``; the session is then unlocked."""
    run_async(session.create_vault(QT_PASSPHRASE), timeout=30_000)
    return session


def close_session(session: Session) -> None:
    """Cancel the session's background work, let it end, close the session."""
    tasks.cancel_all()
    drain(QApplication.instance(), lambda: tasks.running() == 0)  # type: ignore[arg-type]
    session.close()


@pytest.fixture
def unlocked_session(
    qt_config: LoadedConfig,
    qt_profile: Path,
    scripted_model: ScriptedModel,
    run_async: Callable[..., Any],
) -> Iterator[Session]:
    """A session over ``scripted_model`` whose new vault (``QT_PASSPHRASE``) is unlocked."""
    session = make_session(qt_config, qt_profile, provider_factory=scripted_model)
    yield unlock_new_vault(session, run_async)
    close_session(session)


@pytest.fixture
def window_settings(tmp_path: Path) -> QSettings:
    """Window state in a file of this test's own (never the user's settings)."""
    return QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)


def shown_main_window(qtbot: QtBot, session: Session, settings: QSettings) -> Iterator[Any]:
    """A shown main window over an unlocked ``session``, on its main (chats) page."""
    from app.ui.main_window import MainWindow

    window = MainWindow(session, settings=settings)
    qtbot.addWidget(window)
    window._on_unlocked()
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()


@pytest.fixture
def main_window(
    qtbot: QtBot, unlocked_session: Session, window_settings: QSettings
) -> Iterator[Any]:
    """A shown main window over the unlocked session, on its main (chats) page."""
    yield from shown_main_window(qtbot, unlocked_session, window_settings)


def widget_texts(root: QWidget) -> list[str]:
    """Every text any widget under ``root`` shows or holds: labels, buttons, edits, combo
    items, tooltips, accessible names, and the data of every item-view model (display,
    tooltip, accessibility and the first user roles, whose objects are ``str()``-ed)."""
    from PySide6.QtCore import QModelIndex
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractItemView,
        QComboBox,
        QLabel,
        QLineEdit,
        QPlainTextEdit,
        QTextEdit,
    )

    roles = (0, 3, 4, 5, 11, 12, *range(0x0100, 0x0110))
    texts: list[str] = []
    for widget in [root, *root.findChildren(QWidget)]:
        if isinstance(widget, QLabel | QAbstractButton | QLineEdit):
            texts.append(widget.text())
        elif isinstance(widget, QPlainTextEdit | QTextEdit):
            texts.append(widget.toPlainText())
        elif isinstance(widget, QComboBox):
            texts.extend(widget.itemText(i) for i in range(widget.count()))
        if isinstance(widget, QAbstractItemView) and widget.model() is not None:
            model = widget.model()
            stack = [QModelIndex()]
            while stack:
                parent = stack.pop()
                if parent.isValid():
                    for role in roles:
                        value = model.data(parent, role)
                        if value is not None:
                            texts.append(str(value))
                try:
                    columns = model.columnCount(parent)
                except TypeError:  # QAbstractListModel hides it: one column
                    columns = 1
                stack.extend(
                    model.index(row, column, parent)
                    for row in range(model.rowCount(parent))
                    for column in range(columns)
                )
        texts.append(widget.toolTip())
        texts.append(widget.accessibleName())
        texts.append(widget.windowTitle())
    return texts


@pytest.fixture(scope="session")
def audio_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """PulseAudio (null sink) with a private runtime directory, set for this process
    (tests marked ``audio``: read aloud, tests/qt/test_voice*.py)."""
    from tests.peers.audio_stack import running_audio_stack

    runtime = tmp_path_factory.mktemp("xdg-runtime")
    old = os.environ.get("XDG_RUNTIME_DIR")
    with running_audio_stack(runtime):
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        try:
            yield runtime
        finally:
            if old is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = old
