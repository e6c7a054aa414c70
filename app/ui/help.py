"""The Help menu: the keyboard shortcuts overlay, the user guide, and "Report a problem".

* ``ShortcutsDialog`` lists the window's actions and their key sequences as registered,
  so the list cannot go stale; it also names the keys that are not actions (Esc).
* ``UserGuideDialog`` shows ``docs/user-guide.md`` (from a checkout, or the copy installed
  with the app) in a browser that follows links to the other guides; without the file,
  ``user_guide_path`` is ``None`` and the window says where it looked.
* ``problem_report`` is what "Report a problem" copies: version, platform, Qt, PySide and
  Python versions and the last log lines kept by ``RecentLogHandler``. The log never
  holds message content; the lines pass ``app.logs.redact`` and a filter for anything
  else that looks like a secret (long random strings), and the home directory is
  shortened to ``~``.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QUrl
from PySide6.QtGui import QAction, QImageReader, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.logs import REDACTED, RedactingFilter, redact
from app.ui.composer import ATTACH_SHORTCUT

__all__ = [
    "WIDGET_KEYS",
    "RecentLogHandler",
    "ShortcutsDialog",
    "UserGuideDialog",
    "install_recent_log",
    "problem_report",
    "recent_log",
    "scrub",
    "shortcut_rows",
    "user_guide_path",
]

log = logging.getLogger(__name__)

#: Log lines "Report a problem" copies at most.
REPORT_LOG_LINES: Final = 50
USER_GUIDE: Final = "user-guide.md"

# Long runs of key-like characters (hex keys, base64 tokens, recovery material) that
# ``redact`` does not know by shape: at least 24 characters with a digit in them.
_RANDOM_LOOKING = re.compile(r"(?<![\w/.-])(?=[A-Za-z0-9+/_=-]*\d)[A-Za-z0-9+/_=-]{24,}(?![\w/.-])")


# --- shortcuts -----------------------------------------------------------------------------


def _plain(text: str) -> str:
    """A menu text without its mnemonic ampersands and trailing ellipsis."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip(".…")


#: Keys a widget handles itself (no window action has them): listed after the actions'.
WIDGET_KEYS: Final[tuple[tuple[str, str], ...]] = (
    ("Attach files (in the message box)", ATTACH_SHORTCUT),
    ("Move between a message's file cards (in the messages)", "Tab, Shift+Tab"),
    ("Open the file card that has the focus", "Enter, Space"),
    ("File card menu: Open, Save as", "Menu, Shift+F10"),
    ("Remove the attachment chip that has the focus", "Delete"),
)


def shortcut_rows(actions: Iterable[QAction]) -> list[tuple[str, str]]:
    """``(what, keys)`` for every action with a shortcut, in the given order.

    Keys come from the action's registered shortcuts (in the platform's notation), plus
    a key named after a tab in its text (``"Stop\\tEsc"``: handled outside the action).
    """
    rows: list[tuple[str, str]] = []
    for action in actions:
        text, _tab, hint = action.text().partition("\t")
        keys = [
            s.toString(QKeySequence.SequenceFormat.NativeText)
            for s in action.shortcuts()
            if not s.isEmpty()
        ]
        if hint:
            keys.append(hint)
        if keys and text:
            rows.append((_plain(text), ", ".join(dict.fromkeys(keys))))
    return rows


class ShortcutsDialog(QDialog):
    """Every keyboard shortcut of the window, filterable as you type (Ctrl+/)."""

    def __init__(self, actions: Iterable[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.rows = shortcut_rows(actions) + list(WIDGET_KEYS)
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter")
        self.filter.setAccessibleName("Filter shortcuts")
        self.filter.setClearButtonEnabled(True)
        self.table = QTableWidget(len(self.rows), 2, self)
        self.table.setAccessibleName("Keyboard shortcuts")
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        for row, (what, keys) in enumerate(self.rows):
            self.table.setItem(row, 0, QTableWidgetItem(what))
            self.table.setItem(row, 1, QTableWidgetItem(keys))
        note = QLabel("On macOS, Ctrl is the Command key.", self)
        note.setWordWrap(True)
        note.setProperty("role", "hint")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.filter.textChanged.connect(self._filter)
        self.resize(460, 520)
        self.filter.setFocus(Qt.FocusReason.PopupFocusReason)

    def _filter(self, text: str) -> None:
        words = text.casefold().split()
        for row, (what, keys) in enumerate(self.rows):
            haystack = f"{what} {keys}".casefold()
            self.table.setRowHidden(row, not all(word in haystack for word in words))

    def visible_rows(self) -> list[tuple[str, str]]:
        """The rows the filter leaves (for tests)."""
        return [r for i, r in enumerate(self.rows) if not self.table.isRowHidden(i)]


# --- the user guide ------------------------------------------------------------------------


def user_guide_candidates() -> list[Path]:
    """Where the user guide may be: the checkout's ``docs/``, a frozen bundle's ``docs/``,
    the installed copy under ``share/doc/hushchat``; ``$HUSHCHAT_DOCS_DIR`` first."""
    places: list[Path] = []
    override = os.environ.get("HUSHCHAT_DOCS_DIR")
    if override:
        places.append(Path(override))
    places.append(Path(__file__).resolve().parents[2] / "docs")
    bundle = getattr(sys, "_MEIPASS", None)
    if isinstance(bundle, str):
        places.append(Path(bundle) / "docs")
    places.append(Path(sys.prefix) / "share" / "doc" / "hushchat")
    return [place / USER_GUIDE for place in places]


def user_guide_path() -> Path | None:
    """The first user guide that exists (see :func:`user_guide_candidates`), or None."""
    for path in user_guide_candidates():
        if path.is_file():
            return path
    return None


class UserGuideDialog(QDialog):
    """The user guide, rendered from its Markdown; links to the other guides work."""

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hushchat user guide")
        self.browser = QTextBrowser(self)
        self.browser.setAccessibleName("User guide")
        self.browser.setOpenExternalLinks(True)  # web links go to the browser
        self.browser.setSearchPaths([str(path.parent)])
        self._sizes: dict[str, QSize] = {}
        self._fitted_width = 0
        self.browser.sourceChanged.connect(lambda _url: self.fit_images(force=True))
        self.browser.viewport().installEventFilter(self)
        self.browser.setSource(QUrl.fromLocalFile(str(path)))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        self.resize(820, 680)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and watched is self.browser.viewport():
            self.fit_images()
        return False

    def fit_images(self, *, force: bool = False) -> None:
        """Scale the screenshots down to the browser's width (no sideways scrolling)."""
        document = self.browser.document()
        width = self.browser.viewport().width() - int(2 * document.documentMargin()) - 8
        if width <= 0 or (width == self._fitted_width and not force):
            return
        self._fitted_width = width
        base = self.browser.source()
        cursor = QTextCursor(document)
        block = document.begin()
        while block.isValid():
            fragments = block.begin()
            while not fragments.atEnd():
                fragment = fragments.fragment()
                image = fragment.charFormat().toImageFormat()
                if fragment.charFormat().isImageFormat() and image.name():
                    size = self._natural_size(base.resolved(QUrl(image.name())).toLocalFile())
                    if size.isValid() and size.width() > 0:
                        scale = min(1.0, width / size.width())
                        image.setWidth(size.width() * scale)
                        image.setHeight(size.height() * scale)
                        cursor.setPosition(fragment.position())
                        cursor.setPosition(
                            fragment.position() + fragment.length(),
                            QTextCursor.MoveMode.KeepAnchor,
                        )
                        cursor.setCharFormat(image)
                fragments += 1
            block = block.next()

    def _natural_size(self, path: str) -> QSize:
        if not path:  # not a local file: left as it is
            return QSize()
        if path not in self._sizes:
            self._sizes[path] = QImageReader(path).size()  # reads the header only
        return self._sizes[path]


# --- report a problem ----------------------------------------------------------------------


class RecentLogHandler(logging.Handler):
    """Keeps the last ``capacity`` log lines in memory (already redacted) for reports."""

    def __init__(self, capacity: int = 200) -> None:
        super().__init__()
        self._lines: deque[str] = deque(maxlen=capacity)
        self._guard = threading.Lock()
        self.addFilter(RedactingFilter())
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except (TypeError, ValueError):  # a bad format string in some library's record
            line = f"{record.levelname} {record.name}: (unformattable record)"
        with self._guard:
            self._lines.extend(line.splitlines())

    def lines(self) -> list[str]:
        """The kept lines, oldest first."""
        with self._guard:
            return list(self._lines)


_recent: RecentLogHandler | None = None


def install_recent_log() -> RecentLogHandler:
    """Keep recent log lines for "Report a problem" (installed once, on the root logger).

    It records what the configured log level lets through (warnings and errors unless
    ``logging.level`` is lower).
    """
    global _recent  # one handler per process
    if _recent is None:
        _recent = RecentLogHandler()
        logging.getLogger().addHandler(_recent)
    return _recent


def recent_log() -> list[str]:
    """The recent log lines kept since :func:`install_recent_log` (none before)."""
    return _recent.lines() if _recent is not None else []


def scrub(line: str) -> str:
    """``line`` with secrets (``redact``), key-like strings and the home directory removed."""
    line = _RANDOM_LOOKING.sub(REDACTED, redact(line))
    home = str(Path.home())
    if len(home) > 1:
        line = line.replace(home, "~")
    return line


def problem_report(log_lines: Iterable[str] | None = None) -> str:
    """The text "Report a problem" copies (see the module docstring)."""
    import PySide6
    from PySide6.QtCore import qVersion

    from app import __version__

    lines = list(recent_log() if log_lines is None else log_lines)[-REPORT_LOG_LINES:]
    head = [
        f"Hushchat {__version__}",
        f"Platform: {platform.platform()} ({platform.machine() or 'unknown machine'})",
        f"Qt {qVersion()}, PySide6 {PySide6.__version__}",
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        "",
    ]
    if lines:
        head.append(f"Last {len(lines)} log lines (no message content; secrets removed):")
        head.extend(scrub(line) for line in lines)
    else:
        head.append("No warnings or errors were logged in this session.")
    return "\n".join(head) + "\n"
