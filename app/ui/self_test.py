"""The window part of ``hushchat --self-test`` (``app.self_test`` prepares the process).

Offscreen Qt, a throw-away vault in ``root``, the main window, one chat whose answer (a
heading, a list, a code block and math, streamed by a provider in this process) is rendered
and read back from the chat view's documents, then a lock. Raises ``SelfTestError`` with
one line saying what failed; returns the timings of the steps in milliseconds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Final

if TYPE_CHECKING:
    from app.session import Session
    from providers import ChatEvent, ChatRequest, ModelInfo, ProviderSpec

__all__ = ["ANSWER", "SelfTestError", "run_window_check"]

HEADING: Final = "Self-test heading"
ANSWER: Final = (
    f"# {HEADING}\n\n"
    "A list:\n\n"
    "- first item\n"
    "- second item\n\n"
    "```python\n"
    "def square(x):\n"
    "    return x * x\n"
    "```\n\n"
    "Math: $\\alpha + \\beta$\n"
)
#: What the rendered answer must show: the heading, a list item, the code, math as Unicode.
EXPECTED: Final = (HEADING, "second item", "return x * x", "\N{GREEK SMALL LETTER ALPHA}")
PASSPHRASE: Final = "self-test passphrase, thrown away with its vault"  # noqa: S105
#: Words inside the attached PDF and Word files that must reach the model's request.
PDF_WORD: Final = "PELICAN-PDF-7"
DOCX_WORD: Final = "HERON-DOCX-3"
TIMEOUT: Final = 60.0


class SelfTestError(Exception):
    """A step of the self-test failed (the message says which, in one line)."""


class _ScriptedProvider:
    """Satisfies ``providers.Provider``: streams ``ANSWER`` in small deltas, no network;
    keeps the last user message of each request (``questions``)."""

    questions: ClassVar[list[str]] = []

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec

    async def __aenter__(self) -> _ScriptedProvider:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def list_models(self) -> list[ModelInfo]:
        from providers import ModelInfo

        return [ModelInfo(self.spec.model)]

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        from providers import FinishEvent, TextDelta, Usage, UsageEvent

        self.questions.append(request.messages[-1].content)

        pieces = [ANSWER[i : i + 16] for i in range(0, len(ANSWER), 16)]
        for piece in pieces:
            await asyncio.sleep(0.001)
            yield TextDelta(piece)
        yield UsageEvent(Usage(None, len(pieces)))
        yield FinishEvent("stop")


def _config_text() -> str:
    # The provider's address is never used: the scripted provider answers in-process.
    return (
        "default_llm: self-test\n"
        "llms:\n"
        "  - provider_name: self-test\n"
        "    type: openai\n"
        "    base_url: http://127.0.0.1:9/v1\n"
        "    model_name: self-test\n"
        "    context_size: 4096\n"
        "    max_retries: 0\n"
        "ui:\n"
        "  auto_lock_minutes: 0\n"
    )


async def _until(what: str, check: Callable[[], bool], seconds: float = TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SelfTestError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


def run_window_check(root: Path) -> dict[str, float]:
    """Run the window steps with the profile, config and settings inside ``root``."""
    started = time.perf_counter()
    import qasync
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.config import load_config
    from app.session import Session
    from app.ui import tasks
    from app.ui.app import create_application
    from app.vault.kdf import FLOOR_PARAMS

    app = create_application()
    assert isinstance(app, QApplication)
    timings: dict[str, float] = {"qt": (time.perf_counter() - started) * 1000}
    config_path = root / "config.yml"
    config_path.write_text(_config_text(), encoding="utf-8")
    profile = root / "profile"
    profile.mkdir(mode=0o700)
    session = Session(
        load_config(config_path, {}), profile, kdf=FLOOR_PARAMS, provider_factory=_ScriptedProvider
    )
    settings = QSettings(str(root / "window.ini"), QSettings.Format.IniFormat)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook,
        finalizer=loop._asyncgen_finalizer_hook,
    )
    try:
        with loop:
            loop.run_until_complete(_steps(session, settings, timings))
            tasks.cancel_all()
            loop.run_until_complete(_until("background tasks to end", lambda: not tasks.running()))
            loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        sys.set_asyncgen_hooks(*hooks)
        session.close()
    timings["total"] = (time.perf_counter() - started) * 1000
    return timings


async def _attachments_step(session: Session, view: object, answered: Callable[[], bool]) -> None:
    """Attach a PDF and a Word file made in memory: their text reaches the model (pypdf,
    python-docx and lxml are in the build), both are stored, and vector search loads."""
    from app.attachments.samples import minimal_docx, pdf_bytes
    from app.chat.attachments import NewAttachment
    from app.ui.chat_view import ChatViewWidget

    assert isinstance(view, ChatViewWidget)
    chat_id = view.chat_id
    files = [
        NewAttachment.from_bytes("self-test.pdf", pdf_bytes([[f"The bird is {PDF_WORD}."]])),
        NewAttachment.from_bytes("self-test.docx", minimal_docx([f"The other is {DOCX_WORD}."])),
    ]
    before = len(_ScriptedProvider.questions)
    if chat_id is None or not view.send("What do the files say?", attachments=files):
        raise SelfTestError("the chat view refused to send the attached files")
    await _until("the answer about the files", lambda: answered() and len(view.model.messages) >= 4)
    # Every request since: the chat's title may be asked for in between (the first
    # turn's), so the question with the files is not always the last one.
    asked = "\n".join(_ScriptedProvider.questions[before:])
    missing = [word for word in (PDF_WORD, DOCX_WORD) if word not in asked]
    if missing:
        raise SelfTestError(f"the attached files' text did not reach the model: {missing!r}")
    stored = await session.service.attachments(chat_id)
    if sorted(a.name for files in stored.values() for a in files) != [
        "self-test.docx",
        "self-test.pdf",
    ]:
        raise SelfTestError("the attached files were not stored with their message")
    if not session.service.vector_search_available:
        raise SelfTestError("vector search (the sqlite-vec extension) does not load")


def _unlocked(session: Session) -> bool:
    return session.is_unlocked


async def _steps(session: object, settings: object, timings: dict[str, float]) -> None:
    from PySide6.QtCore import QSettings

    from app.session import Session
    from app.ui import tasks
    from app.ui.main_window import MainWindow

    assert isinstance(session, Session) and isinstance(settings, QSettings)
    mark = time.perf_counter()
    await session.create_vault(PASSPHRASE)
    if not session.is_unlocked:
        raise SelfTestError("the new vault is not unlocked")
    timings["vault"] = (time.perf_counter() - mark) * 1000

    session.lock()  # the window unlocks it as a person does, on its unlock page

    mark = time.perf_counter()
    window = MainWindow(session, settings=settings)
    window.resize(1000, 700)
    window.show()
    await _until("the vault to open", lambda: window.chat_area is not None)
    await _until("start-up tasks", lambda: not tasks.running())
    if window.current_page != "unlock":
        raise SelfTestError(f"the window shows its {window.current_page} page, not unlock")
    window.unlock_page.passphrase_edit.setText(PASSPHRASE)
    window.unlock_page.unlock()
    await _until("the main page", lambda: window.current_page == "main")
    await _until("start-up tasks", lambda: not tasks.running())
    timings["window"] = (time.perf_counter() - mark) * 1000

    mark = time.perf_counter()
    area = window.chat_area
    if area is None:
        raise SelfTestError("the main window has no chat area")
    area.new_chat("standard")
    await _until("a new chat", lambda: area.chat_view.chat is not None)
    if not area.chat_view.send("Show me some markdown."):
        raise SelfTestError("the chat view refused to send")
    view = area.chat_view
    model = view.model

    def answered() -> bool:
        shown = model.messages
        return not view.is_streaming() and len(shown) >= 2 and shown[-1].role == "assistant"

    await _until("the answer", answered)
    answer = model.messages[-1]
    if answer.error:
        raise SelfTestError(f"the answer failed: {answer.error}")
    number = model.row_number(answer.id)
    if number is None:
        raise SelfTestError("the answer is not in the chat view")
    delegate = view.list.message_delegate
    layout = delegate.layout(model.row(number), model)
    rendered = "\n".join(part.document.toPlainText() for part in layout.parts)
    missing = [text for text in EXPECTED if text not in rendered]
    if missing:
        raise SelfTestError(f"the rendered answer lacks {missing!r}")
    if any("# " + HEADING in part.document.toPlainText() for part in layout.parts):
        raise SelfTestError("the answer's markdown was shown as plain text, not rendered")
    timings["answer"] = (time.perf_counter() - mark) * 1000

    mark = time.perf_counter()
    await _attachments_step(session, view, answered)
    timings["attachments"] = (time.perf_counter() - mark) * 1000

    await session.service.wait_for_titles(10)
    await _until("background tasks", lambda: not tasks.running())
    mark = time.perf_counter()
    if not window.lock(confirm=False):
        raise SelfTestError("the window did not lock")
    if _unlocked(session) or window.current_page != "unlock":
        raise SelfTestError(
            "after locking, the vault is still open or the unlock page is not shown"
        )
    timings["lock"] = (time.perf_counter() - mark) * 1000
    window.close()
    window.deleteLater()
