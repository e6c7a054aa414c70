"""Screenshots of the real app's main states, for the user guide and CI artifacts.

Run under a virtual X server (or with ``QT_QPA_PLATFORM=offscreen``)::

    xvfb-run -a -s "-screen 0 2700x1000x24" .venv/bin/python packaging/screenshots.py

It drives the real window (first run, unlock, main, chat, settings) in a throwaway
profile, once per theme (light and dark), then shows the chat at each width of
``WIDTHS`` (``layout-<width>-<theme>.png``), and writes PNGs to ``artifacts/screenshots/``
(``--out`` to change; ``--update-docs`` also copies the ones docs/user-guide.md shows to
``docs/images/``). Answers come from a scripted provider (``--live`` is not offered: a
real model's text would differ on every run), streamed through the real chat service.
Every PNG is checked to be non-blank (enough distinct colours), and at each width no
label or button may be cut off (``app.ui.layout.clipped_widgets``) and the chat column
must keep its minimum; the exit status is non-zero when a check fails, or when a state
could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MIN_COLOURS = 24
PASSPHRASE = "velvet harbour seventy lantern"  # noqa: S105 (a throwaway profile)
WINDOW_SIZE = (1280, 860)
#: The widths the layout is shown (and checked) at, px.
WIDTHS = (480, 700, 1024, 1440, 2560)
DOCS = ROOT / "docs"

QUESTION = "How do I read a large CSV file in Python without loading it all into memory?"
ANSWER = """Read it **row by row** with the standard library's `csv` module — the file object \
is an iterator, so only one line is in memory at a time:

```python
import csv

with open("sales.csv", newline="") as f:
    for row in csv.DictReader(f):
        total += float(row["amount"])
```

If you need pandas, read it in chunks instead:

| approach | memory | speed |
|---|---|---|
| `csv.DictReader` | one row | moderate |
| `pandas.read_csv(chunksize=...)` | one chunk | fast |

Both work on files far larger than your RAM."""

#: The attachments picture: a PDF (searched: the answer cites its page) and a PNG chart.
ATTACH_QUESTION = "What does the report say about costs, and what does the chart show?"
ATTACH_ANSWER = """Costs rose by **12 percent** in the third quarter, almost all of it cloud \
hosting; the report suggests moving the build servers on-premises to save about \
40,000 EUR a year.

The chart shows the same thing per quarter: hosting (blue) climbs from Q1 to Q3 while \
staff and office costs stay flat."""
REPORT_PAGES = (
    ["Quarterly report, Q3", "", "Summary of the quarter for the board."]
    + [f"Revenue line {n}: sales in the northern region grew steadily." for n in range(30)],
    ["Sales by region"]
    + [f"Region {n}: orders, returns and new customers were as planned." for n in range(30)],
    ["Costs", "", "Costs rose by 12 percent in the third quarter.", "Cloud hosting costs doubled."]
    + [f"Cost note {n}: hosting and build servers drove the increase." for n in range(25)]
    + ["Moving build servers on-premises would save about 40,000 EUR a year."],
    ["Outlook"] + [f"Plan {n}: hiring stays flat; the office lease is renewed." for n in range(30)],
)

OTHER_CHATS = (
    ("Trip to Lisbon — packing list", "What should I pack for four days in Lisbon in May?"),
    ("Regex for ISO dates", "Give me a regex for ISO 8601 dates."),
    ("Birthday poem for Mia", "Write a short birthday poem for my niece Mia."),
)

TITLES = {
    QUESTION: "Streaming a large CSV in Python",
}


class ScriptedProvider:
    """Streams canned answers word by word, like a fast local model."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    async def __aenter__(self) -> ScriptedProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to release."""

    async def list_models(self) -> list[Any]:
        from providers import ModelInfo

        return [ModelInfo(id=self.spec.model)]

    async def stream_chat(self, request: Any) -> AsyncIterator[Any]:
        from providers import FinishEvent, TextDelta

        last = request.messages[-1].content
        if last.startswith("Write a title"):
            question = last.split("User: ", 1)[-1].split("\nAssistant:", 1)[0]
            text = TITLES.get(question, "")
        elif last == QUESTION:
            text = ANSWER
        elif last.startswith(ATTACH_QUESTION):
            text = ATTACH_ANSWER
        else:
            text = "Here is a short answer to that. " * 3
        for index in range(0, len(text), 6):
            yield TextDelta(text[index : index + 6])
            await asyncio.sleep(0.002)
        yield FinishEvent("stop")


async def wait_until(condition: Callable[[], bool], seconds: float = 20.0, what: str = "") -> None:
    """Let the event loop run until ``condition()`` holds (at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


async def settle(seconds: float = 0.3) -> None:
    """Let layouts, paints and animations finish before a grab."""
    await asyncio.sleep(seconds)


def distinct_colours(path: Path) -> int:
    """How many distinct colours the PNG has (sampled on a grid)."""
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    if image.isNull():
        return 0
    step = max(1, min(image.width(), image.height()) // 200)
    seen: set[int] = set()
    for y in range(0, image.height(), step):
        for x in range(0, image.width(), step):
            seen.add(image.pixel(x, y))
    return len(seen)


def save(widget: Any, out_dir: Path, name: str, written: list[Path]) -> None:
    """Grab ``widget`` (at the screen's device pixel ratio) into ``out_dir/name.png``."""
    path = out_dir / f"{name}.png"
    if not widget.grab().save(str(path), "PNG"):
        raise RuntimeError(f"could not write {path}")
    written.append(path)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def write_config(path: Path, theme: str) -> None:
    path.write_text(
        "default_llm: local-llama\n"
        "llms:\n"
        "  - provider_name: local-llama\n"
        "    type: openai\n"
        "    base_url: http://127.0.0.1:8080/v1\n"
        "    model_name: llama-3.2-3b-instruct\n"
        "    context_size: 8192\n"
        "    vision: true\n"
        "  - provider_name: openai\n"
        "    type: openai\n"
        "    base_url: https://api.openai.com/v1\n"
        "    model_name: gpt-4o-mini\n"
        "    locality: paid_cloud\n"
        f"ui:\n  theme: {theme}\n  font_size: 11\n  auto_lock_minutes: 0\n"
        # The report is searched (not sent whole) and its one best page cited.
        "attachments:\n  inline_max_chars: 2000\n  retrieval_chunks: 1\n"
        # Settings, Voice: a speech server on this computer, and the system's voices.
        "default_tts: kokoro\n"
        "tts:\n"
        "  - type: openai\n"
        "    name: kokoro\n"
        "    base_url: http://127.0.0.1:8880/v1\n"
        "    model: kokoro\n"
        "    voice: af_heart\n"
        "  - type: system\n"
        "    name: system-voices\n",
        encoding="utf-8",
    )


#: The voices Settings, Voice lists for the picture (Kokoro-FastAPI's names), without a
#: speech server: the window's speaker is asked for its voices and gives these.
KOKORO_VOICES = ["af_heart", "af_bella", "af_nicole", "am_adam", "am_michael", "bf_emma"]


def listing_speaker(session: Any, parent: Any) -> Any:
    """The window's speaker, its engine's voices listed from ``KOKORO_VOICES``."""
    from app.ui.voice import Speaker

    class ListingSpeaker(Speaker):
        async def voices(self, entry: Any) -> list[str]:
            return list(KOKORO_VOICES)

    return ListingSpeaker(session, parent)


async def capture_widths(
    window: Any, theme: str, out_dir: Path, written: list[Path], problems: list[str]
) -> None:
    """The open chat at each of ``WIDTHS``; what is cut off goes to ``problems``."""
    from app.ui.layout import CHAT_MIN_WIDTH, clipped_widgets

    height = window.height()
    for width in WIDTHS:
        window.resize(width, height)

        def resized(width: int = width) -> bool:
            return bool(window.width() == width)

        await wait_until(resized, what=f"{width} px wide")
        await settle()
        save(window, out_dir, f"layout-{width}-{theme}", written)
        where = f"layout-{width}-{theme}"
        problems.extend(f"{where}: {problem}" for problem in clipped_widgets(window))
        chat = window.chat_area.chat_view.width()
        if chat < CHAT_MIN_WIDTH:
            problems.append(f"{where}: the chat column is {chat} px (< {CHAT_MIN_WIDTH})")
        for action in (window.toggle_sidebar_action, window.toggle_chat_settings_action):
            button = window.layout_bar.widgetForAction(action)
            if not button.isVisible():
                problems.append(f"{where}: the {action.text()!r} toggle is not visible")
    window.resize(*WINDOW_SIZE)
    await settle()


async def capture_theme(
    theme: str, out_dir: Path, written: list[Path], problems: list[str]
) -> None:
    """Drive a fresh profile through every state in ``theme`` and save the grabs."""
    from PySide6.QtCore import QSettings

    from app.config import load_config
    from app.session import Session
    from app.ui import main_window, tasks
    from app.ui.main_window import MainWindow
    from app.vault.kdf import FLOOR_PARAMS

    main_window.make_speaker = listing_speaker

    with tempfile.TemporaryDirectory(prefix=f"hushchat-shots-{theme}-") as temp:
        root = Path(temp)
        config_path = root / "config.yml"
        write_config(config_path, theme)
        session = Session(
            load_config(config_path, {}),
            root / "profile",
            kdf=FLOOR_PARAMS,
            provider_factory=ScriptedProvider,
        )
        window = MainWindow(
            session, settings=QSettings(str(root / "window.ini"), QSettings.Format.IniFormat)
        )
        window.resize(*WINDOW_SIZE)
        window.show()
        try:
            await run_states(window, session, theme, out_dir, written, problems)
        finally:
            tasks.cancel_all()
            await settle(0.1)
            window.close()
            session.close()


async def run_states(
    window: Any, session: Any, theme: str, out_dir: Path, written: list[Path], problems: list[str]
) -> None:
    from app.store.models import Tier
    from app.ui import tasks

    first_run = window.first_run
    assert first_run is not None
    first_run.local_servers = []  # no detection noise in the pictures
    first_run.passphrase_fields.passphrase_edit.setText(PASSPHRASE)
    first_run.passphrase_fields.confirm_edit.setText(PASSPHRASE)
    await wait_until(lambda: first_run.passphrase_fields.strength is not None, what="strength")
    await settle()
    save(window, out_dir, f"first-run-{theme}", written)
    first_run.create_vault()
    await wait_until(
        lambda: first_run.currentWidget() is first_run.recovery_page, 60, "recovery page"
    )
    first_run.recovery.stored_check.setChecked(True)
    await settle()
    save(window, out_dir, f"recovery-code-{theme}", written)
    first_run.show_provider_page()
    await wait_until(lambda: first_run.detect_button.isEnabled(), what="detection")
    await settle()
    save(window, out_dir, f"first-run-provider-{theme}", written)
    first_run.completed.emit()  # keep the prepared config: "Skip for now"
    await wait_until(lambda: window.current_page == "main", what="main page")
    await settle()
    save(window, out_dir, f"main-empty-{theme}", written)

    service = session.service
    for title, question in OTHER_CHATS:
        chat = await service.create_chat(Tier.STANDARD)
        async for _event in service.send(chat.id, question):
            pass
        await service.rename(chat.id, title)
    private = await service.create_chat(Tier.PRIVATE)
    await service.rename(private.id, "Health notes")
    await service.wait_for_titles(5)

    area = window.chat_area
    chat = await service.create_chat(Tier.STANDARD)
    area.open_chat(chat.id)
    await wait_until(lambda: area.composer.editor.isEnabled(), what="the chat")
    await settle()
    area.composer.editor.setPlainText(QUESTION)
    area.composer.submit()
    await wait_until(lambda: tasks.running() == 0, 30, "the answer")
    await service.wait_for_titles(5)
    await settle(0.8)
    save(window, out_dir, f"chatting-{theme}", written)
    await capture_widths(window, theme, out_dir, written, problems)

    await capture_attachments(window, session, theme, out_dir, written)

    dialog = window.open_settings()
    assert dialog is not None
    dialog.resize(680, 500)
    await settle()
    save(dialog, out_dir, f"settings-{theme}", written)
    dialog.tabs.setCurrentIndex(3)
    await settle()
    save(dialog, out_dir, f"settings-security-{theme}", written)
    dialog.show_page("attachments")
    dialog.resize(680, 560)  # the whole page, without its scroll bar
    await settle()
    save(dialog, out_dir, f"settings-attachments-{theme}", written)
    dialog.show_page("voice")
    dialog.resize(680, 500)
    voices = dialog.voice_page.voice_combo
    await wait_until(lambda: voices.count() == len(KOKORO_VOICES), what="the voice list")
    await settle()
    save(dialog, out_dir, f"settings-voice-{theme}", written)
    dialog.close()

    window.lock(confirm=False)
    await settle()
    save(window, out_dir, f"unlock-{theme}", written)
    window.unlock_page.passphrase_edit.setText("not my passphrase")
    window.unlock_page.unlock()
    await wait_until(lambda: window.unlock_page.error_label.text() != "", what="error")
    await settle()
    save(window, out_dir, f"unlock-wrong-{theme}", written)


def chart_png(path: Path) -> None:
    """A small bar chart (costs per quarter), as a PNG file at ``path``."""
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QImage, QPainter

    image = QImage(420, 240, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setPen(QColor("#333333"))
    painter.drawText(QRect(0, 6, 420, 20), Qt.AlignmentFlag.AlignCenter, "Costs per quarter")
    painter.drawLine(40, 210, 400, 210)
    for number, (hosting, staff) in enumerate(((50, 80), (70, 80), (130, 82), (120, 81))):
        left = 60 + number * 88
        painter.fillRect(left, 210 - hosting, 30, hosting, QColor("#3465a4"))
        painter.fillRect(left + 32, 210 - staff, 30, staff, QColor("#f5a623"))
        painter.drawText(QRect(left, 214, 62, 20), Qt.AlignmentFlag.AlignCenter, f"Q{number + 1}")
    painter.end()
    if not image.save(str(path), "PNG"):
        raise RuntimeError(f"could not write {path}")


async def capture_attachments(
    window: Any, session: Any, theme: str, out_dir: Path, written: list[Path]
) -> None:
    """A chat with a PDF and a PNG attached, answered with the page it was given."""
    from app.attachments.samples import pdf_bytes
    from app.store.models import Tier
    from app.ui import tasks

    area = window.chat_area
    chat = await session.service.create_chat(Tier.STANDARD)
    await session.service.rename(chat.id, "Q3 report and chart")
    area.open_chat(chat.id)
    await wait_until(lambda: area.composer.editor.isEnabled(), what="the chat")
    with tempfile.TemporaryDirectory(prefix="hushchat-shots-files-") as temp:
        report, chart = Path(temp) / "report.pdf", Path(temp) / "chart.png"
        report.write_bytes(pdf_bytes(REPORT_PAGES))
        chart_png(chart)
        area.composer.add_files([report, chart])
        await wait_until(lambda: area.composer.send_button.isEnabled(), what="checked files")
        area.composer.editor.setPlainText(ATTACH_QUESTION)
        area.composer.submit()
        await wait_until(lambda: tasks.running() == 0, 30, "the answer")
    view = area.chat_view
    answers = [m for m in view.model.messages if m.role == "assistant"]
    if not answers or "report.pdf, p. 3" not in answers[-1].sources:
        raise RuntimeError(f"the answer cites {answers[-1].sources if answers else None}")
    delegate = view.list.message_delegate
    images = [
        f.id for files in view.model.attachments.values() for f in files if f.name == "chart.png"
    ]
    await wait_until(lambda: all(delegate.has_thumbnail(i) for i in images), what="thumbnail")
    view.scroll_to_newest()
    await settle(0.5)
    # The report's card as Tab leaves it: outlined (the keyboard's way to the files).
    window.activateWindow()
    cards = view.list.cards_shown()
    if not cards or not view.list.focus_card(cards[0][0], cards[0][1]):
        raise RuntimeError("the report's card could not take the keyboard focus")
    await settle(0.5)
    save(window, out_dir, f"attachments-{theme}", written)
    view.list.leave_card()


def check_pngs(paths: list[Path]) -> list[str]:
    """Problems with the written PNGs (blank or unreadable), empty when all are fine."""
    problems = []
    for path in paths:
        colours = distinct_colours(path)
        if colours < MIN_COLOURS:
            problems.append(f"{path.name}: only {colours} distinct colours (blank?)")
    return problems


def update_docs(out_dir: Path) -> list[Path]:
    """Copy the screenshots docs/user-guide.md shows (``images/<name>.png``) to
    ``docs/images/``; returns the copies."""
    guide = (DOCS / "user-guide.md").read_text(encoding="utf-8")
    copied = []
    for name in sorted(set(re.findall(r"\(images/([\w.-]+\.png)\)", guide))):
        source = out_dir / name
        if source.is_file():
            target = DOCS / "images" / name
            shutil.copyfile(source, target)
            copied.append(target)
        else:
            print(f"not taken, left as it was: docs/images/{name}", file=sys.stderr)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "screenshots")
    parser.add_argument("--themes", nargs="+", default=["light", "dark"])
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="copy the screenshots docs/user-guide.md shows to docs/images/",
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    import qasync

    from app.ui.app import create_application

    app = create_application([sys.argv[0]])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    written: list[Path] = []
    clipped: list[str] = []

    async def everything() -> None:
        for theme in args.themes:
            await capture_theme(theme, out_dir, written, clipped)

    with loop:
        loop.run_until_complete(everything())
    problems = check_pngs(written)
    for problem in problems:
        print(f"BLANK {problem}", file=sys.stderr)
    for problem in clipped:
        print(f"CLIPPED {problem}", file=sys.stderr)
    print(f"{len(written)} screenshots, {len(problems)} blank, {len(clipped)} clipped")
    if args.update_docs and not problems and not clipped:
        for path in update_docs(out_dir):
            print(f"updated {path.relative_to(ROOT)}")
    return 1 if problems or clipped or not written else 0


if __name__ == "__main__":
    sys.exit(main())
