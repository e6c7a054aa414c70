"""Attachments in the window: the composer's chips and what the window asks the service.

A chip is one file waiting to be sent: its name, its size in human units, a remove
button, and, once the chat service has checked it (``check_attachments``), the problem
that keeps it from being sent (shown on the chip in the error colour and as its tooltip).
Chips hold the service's ``NewAttachment`` (a path, or the bytes of a pasted image; never
a temporary file).

``new_attachment`` builds a ``NewAttachment``; the window calls the chat service's
attachment API (``check_attachments``, ``attachments``, ``attachment_data``,
``save_attachment``) directly.

``AttachmentViewerDialog`` opens a file inside the window (an image, or the text Hushchat
reads from it): an attachment is decrypted into memory only, never into a temporary file
for another program.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QIODevice,
    QLocale,
    QMimeData,
    QSize,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QContextMenuEvent, QImage, QImageWriter, QKeyEvent, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.attachments import AttachmentCheck, NewAttachment

__all__ = [
    "AttachmentChipWidget",
    "AttachmentChipsWidget",
    "AttachmentViewerDialog",
    "card_name",
    "files_of",
    "human_size",
    "new_attachment",
    "png_bytes",
    "read_new",
    "size_of",
]

log = logging.getLogger(__name__)

ERROR_COLOR = "#c01c28"
REMOVE_MARK = "\u00d7"
#: A chip shows at most this many pixels of a long name (all of it in its tooltip).
CHIP_NAME_PX = 220
#: What the keys do on a chip (its accessible description).
CHIP_KEYS = "Enter opens it; Shift+F10 or the Menu key: Open, Save as, Remove; Delete removes it."
#: The chip with the keyboard focus is outlined (its problem's red border otherwise).
CHIP_FOCUS_STYLE = (
    "QFrame#attachmentChip:focus { border: 2px solid palette(highlight); border-radius: 4px; }"
)


def new_attachment(
    name: str, *, path: Path | None = None, data: bytes | None = None
) -> NewAttachment:
    """The service's ``NewAttachment`` for a file on disk (``path``) or bytes (``data``)."""
    if path is not None:
        return NewAttachment.from_path(path)
    return NewAttachment.from_bytes(name, data or b"")


def human_size(size: int) -> str:
    """``size`` bytes in human units (``12.3 KB``)."""
    return QLocale().formattedDataSize(size, 1, QLocale.DataSizeFormat.DataSizeTraditionalFormat)


def card_name(name: str, kind: str | None, size: int) -> str:
    """What a screen reader says for a file: ``report.pdf, PDF, 2.1 MB``."""
    return ", ".join(part for part in (name, kind, human_size(size)) if part)


def png_bytes(image: QImage) -> bytes:
    """``image`` encoded as PNG, in memory."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    QImageWriter(buffer, QByteArray(b"PNG")).write(image)
    buffer.close()
    return bytes(buffer.data().data())


def read_new(attachment: NewAttachment, max_bytes: int) -> tuple[bytes, bool, str]:
    """A waiting file's bytes (an image's; b"" otherwise), whether it is an image, and the
    text Hushchat reads from it ("" for an image). Blocking; ``AttachmentError`` says why
    it cannot be read (too large, empty, damaged...)."""
    from app.attachments import Kind, Limits, extract, extract_file

    limits = Limits(max_bytes=max_bytes)
    if attachment.path is not None:
        extracted = extract_file(attachment.path, limits)
        is_image = extracted.kind is Kind.IMAGE
        data = attachment.path.read_bytes() if is_image else b""
    else:
        data = attachment.data or b""
        extracted = extract(attachment.name, data, limits)
        is_image = extracted.kind is Kind.IMAGE
    return data, is_image, "" if is_image else extracted.text


def size_of(attachment: NewAttachment) -> int:
    """The size in bytes of a ``NewAttachment`` (0 when its file cannot be read: the
    service's check then says why)."""
    return attachment.size() or 0


def files_of(mime: QMimeData) -> list[Path]:
    """The local files a drop or a paste carries."""
    urls: list[QUrl] = mime.urls() if mime.hasUrls() else []
    return [Path(url.toLocalFile()) for url in urls if url.isLocalFile()]


@dataclass(slots=True)
class _Chip:
    attachment: NewAttachment
    size: int
    problem: str | None = None


class AttachmentChipWidget(QFrame):
    """One file waiting to be sent: name, size, remove button (Delete removes it too).

    From the keyboard: Enter or Space opens the file, the Menu key or Shift+F10 (or a
    right click) offers Open, Save as and Remove."""

    remove_requested = Signal()
    open_requested = Signal()
    save_requested = Signal()

    def __init__(self, name: str, size: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setObjectName("attachmentChip")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.file_size = size
        self.kind: str | None = None
        self.menu: QMenu | None = None
        self.setAccessibleName(card_name(name, None, size))
        self.name_label = QLabel(self)
        metrics = self.name_label.fontMetrics()
        self.name_label.setText(
            metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, CHIP_NAME_PX)
        )
        self.size_label = QLabel(human_size(size), self)
        self.size_label.setEnabled(False)
        self.remove_button = QToolButton(self)
        self.remove_button.setText(REMOVE_MARK)
        self.remove_button.setAutoRaise(True)
        self.remove_button.setAccessibleName(f"Remove {name}")
        self.remove_button.setToolTip(f"Remove {name} (Delete)")
        self.remove_button.clicked.connect(self.remove_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 2, 2)
        layout.setSpacing(4)
        layout.addWidget(self.name_label)
        layout.addWidget(self.size_label)
        layout.addWidget(self.remove_button)
        self.set_problem(None)

    @property
    def problem(self) -> str | None:
        return self._problem

    def set_problem(self, problem: str | None) -> None:
        """Show why this file cannot be sent (None: it can)."""
        self._problem = problem
        self.setToolTip(problem or self.name)
        self.setAccessibleDescription(f"{problem} {CHIP_KEYS}" if problem else CHIP_KEYS)
        color = f"color: {ERROR_COLOR};" if problem else ""
        self.name_label.setStyleSheet(color)
        self.setStyleSheet(
            (
                f"QFrame#attachmentChip {{ border: 1px solid {ERROR_COLOR}; border-radius: 4px; }}"
                if problem
                else "QFrame#attachmentChip { border-radius: 4px; }"
            )
            + CHIP_FOCUS_STYLE
        )

    def set_kind(self, kind: str | None) -> None:
        """Name the file's kind (as the service found it) for screen readers."""
        self.kind = kind
        self.setAccessibleName(card_name(self.name, kind, self.file_size))

    def chip_menu(self) -> QMenu:
        """Open, Save as and Remove, for this file."""
        menu = QMenu(self)
        menu.setAccessibleName(f"{self.name} actions")
        menu.addAction("&Open", self.open_requested.emit)
        menu.addAction("&Save as…", self.save_requested.emit)
        menu.addAction("&Remove", self.remove_requested.emit)
        return menu

    def show_menu(self) -> None:
        """Show the chip's menu under it (non-blocking)."""
        if self.menu is not None:
            self.menu.close()
            self.menu.deleteLater()
        self.menu = self.chip_menu()
        self.menu.popup(self.mapToGlobal(self.rect().bottomLeft()))

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        self.show_menu()
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.remove_requested.emit()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.open_requested.emit()
        elif key == Qt.Key.Key_Menu or (
            key == Qt.Key.Key_F10 and event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.show_menu()
        else:
            super().keyPressEvent(event)
            return
        event.accept()


class AttachmentChipsWidget(QWidget):
    """The row of chips above the message box (hidden while there are none)."""

    changed = Signal()  # a chip was added or removed
    open_requested = Signal(object)  # a chip's NewAttachment, to show
    save_requested = Signal(object)  # a chip's NewAttachment, to save a copy of

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentChips")
        self.setAccessibleName("Attachments")
        self._chips: list[_Chip] = []
        self._widgets: list[AttachmentChipWidget] = []
        # Many chips scroll sideways: they never widen the window.
        self._inner = QWidget()
        self._layout = QHBoxLayout(self._inner)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self._layout.addStretch(1)
        self._scroll = QScrollArea(self)
        self._scroll.setWidget(self._inner)
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._scroll.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._scroll)
        self.hide()

    # reading -----------------------------------------------------------------------------

    def attachments(self) -> list[NewAttachment]:
        """The ``NewAttachment`` of every chip, in order."""
        return [chip.attachment for chip in self._chips]

    def chips(self) -> list[AttachmentChipWidget]:
        return list(self._widgets)

    def problem(self) -> str:
        """Why the chips cannot be sent ("" when they can)."""
        for chip in self._chips:
            if chip.problem:
                return f"{chip.attachment.name}: {chip.problem}"
        return ""

    # changing ----------------------------------------------------------------------------

    def add(self, attachment: NewAttachment, size: int) -> None:
        """Add a chip for ``attachment`` (a ``NewAttachment`` of ``size`` bytes)."""
        chip = _Chip(attachment, size)
        widget = AttachmentChipWidget(attachment.name, size, self._inner)
        widget.remove_requested.connect(lambda: self.remove(chip))
        widget.open_requested.connect(lambda: self.open_requested.emit(chip.attachment))
        widget.save_requested.connect(lambda: self.save_requested.emit(chip.attachment))
        self._chips.append(chip)
        self._widgets.append(widget)
        self._layout.insertWidget(self._layout.count() - 1, widget)
        bar = self._scroll.horizontalScrollBar().sizeHint().height()
        self._scroll.setFixedHeight(widget.sizeHint().height() + bar + 2)
        self.show()
        self.changed.emit()

    def remove(self, chip: _Chip) -> None:
        if chip not in self._chips:
            return
        number = self._chips.index(chip)
        widget = self._widgets.pop(number)
        del self._chips[number]
        had_focus = widget.hasFocus() or widget.remove_button.hasFocus()
        widget.hide()
        widget.deleteLater()
        if had_focus and self._widgets:
            self._widgets[min(number, len(self._widgets) - 1)].setFocus()
        self.setVisible(bool(self._chips))
        self.changed.emit()

    def take(self) -> list[NewAttachment]:
        """Remove every chip; their attachments."""
        taken = self.attachments()
        for widget in self._widgets:
            widget.hide()
            widget.deleteLater()
        self._chips.clear()
        self._widgets.clear()
        self.hide()
        self.changed.emit()
        return taken

    def set_checks(
        self, attachments: Sequence[NewAttachment], checks: Sequence[AttachmentCheck]
    ) -> bool:
        """Show the problems the service found (``checks[i]`` for ``attachments[i]``);
        False when the chips changed since (the checks are for other files)."""
        if list(attachments) != self.attachments() or len(checks) != len(self._chips):
            return False
        for chip, widget, check in zip(self._chips, self._widgets, checks, strict=True):
            chip.problem = check.problem
            chip.size = check.size
            widget.set_problem(check.problem)
            widget.set_kind(_kind_name(check.kind))
        return True


#: How a chip names the kind the service found.
KIND_NAMES = {"pdf": "PDF", "docx": "Word", "html": "HTML", "markdown": "Markdown"}


def _kind_name(kind: str) -> str | None:
    """How a chip names the kind the service found (``PDF``, ``Image``...)."""
    value = str(kind or "")
    return KIND_NAMES.get(value, value.capitalize()) or None


class AttachmentViewerDialog(QDialog):
    """One file shown inside the window, never written to disk: an image scaled to fit,
    any other file as the text Hushchat reads from it (PDF pages headed ``[p. N]``).
    **Save as...** asks where to save a copy."""

    save_requested = Signal()

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setWindowTitle(name)
        self.setAccessibleName(f"Attachment {name}")
        self.status_label = QLabel("Opening…")
        self.status_label.setWordWrap(True)
        self.status_label.setAccessibleName("Attachment status")
        self.image_label = QLabel()
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setAccessibleName(f"Image {name}")
        self.image_area = QScrollArea()
        self.image_area.setWidget(self.image_label)
        self.image_area.setWidgetResizable(True)
        self.image_area.hide()
        self.text_view = QPlainTextEdit()
        self.text_view.setReadOnly(True)
        self.text_view.setAccessibleName(f"Text of {name}")
        self.text_view.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.save_button = QPushButton("&Save as…")
        self.save_button.setAccessibleName(f"Save {name} as")
        self.buttons.addButton(self.save_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.save_button.clicked.connect(self.save_requested)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status_label)
        layout.addWidget(self.image_area, 1)
        layout.addWidget(self.text_view, 1)
        layout.addWidget(self.buttons)
        self.resize(720, 560)

    def show_image(self, image: QImage) -> None:
        """Show ``image`` (scaled down to the dialog's size when larger)."""
        if image.isNull():
            self.show_problem(
                f"{self.name} could not be shown as an image; save a copy to open it elsewhere."
            )
            return
        pixmap = QPixmap.fromImage(image)
        room = self.size() - QSize(60, 120)
        if pixmap.width() > room.width() or pixmap.height() > room.height():
            pixmap = pixmap.scaled(
                room,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        self.image_label.setPixmap(pixmap)
        self.status_label.setText(f"{image.width()} by {image.height()} pixels")
        self.image_area.show()
        self.image_area.setFocus()

    def show_text(self, text: str) -> None:
        """Show the text read from the file."""
        self.text_view.setPlainText(text)
        self.status_label.setText("The text Hushchat reads from this file:")
        self.text_view.show()
        self.text_view.setFocus()

    def show_problem(self, text: str) -> None:
        """Say why the file cannot be shown (and what to do)."""
        self.status_label.setText(text)
        self.save_button.setFocus()
