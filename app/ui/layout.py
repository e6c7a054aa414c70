"""Layout helpers: a centred column, label roles, and the chat area's side panels.

``PanelLayout`` shows and hides the side panels of a horizontal ``QSplitter`` (the
sidebar and the chat settings panel) so the chat column in the middle stays readable:

* each panel has a width breakpoint; below it the panel collapses by itself, and it
  comes back when the splitter is wide enough again;
* the user's explicit choice (the toggle buttons, Ctrl+B / Ctrl+Shift+B) is remembered
  separately from that automatic collapse: a panel the user hid stays hidden at every
  width (and across runs, in ``QSettings``); a panel the user opened while it was
  collapsed stays open until the width next crosses its breakpoint;
* the chat column keeps at least ``CHAT_MIN_WIDTH`` (``CHAT_FLOOR_WIDTH`` while a panel
  the user opened by hand needs the room): panels shown automatically give way first,
  then those the user opened longest ago.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

from PySide6.QtCore import QEvent, QObject, QSettings, Signal
from PySide6.QtGui import Qt as QtGui_Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

__all__ = [
    "CHAT_FLOOR_WIDTH",
    "CHAT_MIN_WIDTH",
    "PanelLayout",
    "PanelSpec",
    "centered_page",
    "clipped_widgets",
    "set_role",
]

#: The chat column is never narrower than this (px), whatever panels are shown.
CHAT_MIN_WIDTH: Final = 320
#: ... except while the user opened a panel by hand at a narrow width.
CHAT_FLOOR_WIDTH: Final = 240


def centered_page(content: QWidget, max_width: int = 560) -> QWidget:
    """``content`` centred in a page, at most ``max_width`` wide: calm, readable lines."""
    page = QWidget()
    outer = QHBoxLayout(page)
    outer.addStretch(1)
    column = QVBoxLayout()
    column.addStretch(1)
    column.addWidget(content)
    column.addStretch(2)
    content.setMaximumWidth(max_width)
    outer.addLayout(column, 100)
    outer.addStretch(1)
    return page


def set_role(label: QLabel, role: str) -> None:
    """Switch a label's style role (``error``/``hint``, see ``theme``) and repolish it."""
    label.setProperty("role", role)
    label.style().unpolish(label)
    label.style().polish(label)


def clipped_widgets(root: QWidget) -> list[str]:
    """Visible labels and buttons under ``root`` whose text does not fit them (for the
    layout tests and ``packaging/screenshots.py``); empty when nothing is cut off.

    A one-line label needs its text's advance (``QFontMetrics``) within its width; a
    wrapping or rich-text label its height for its width; a button its minimum size hint.
    """
    problems: list[str] = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible() or widget.width() <= 0:
            continue
        name = f"{type(widget).__name__} {widget.objectName() or widget.accessibleName()!r}"
        if isinstance(widget, QLabel) and widget.text() and widget.pixmap().isNull():
            rect = widget.contentsRect()
            if widget.wordWrap() or QtGui_Qt.mightBeRichText(widget.text()):
                needed = widget.heightForWidth(rect.width() + 2 * widget.margin())
                if needed > widget.height() + 1:
                    problems.append(f"{name}: needs {needed} px high, has {widget.height()}")
            else:
                text = widget.text()
                if widget.buddy() is not None:  # "&Name": the ampersand is not drawn
                    text = text.replace("&&", "\0").replace("&", "").replace("\0", "&")
                lines = text.splitlines() or [""]
                advance = max(widget.fontMetrics().horizontalAdvance(line) for line in lines)
                if advance > rect.width() + 1:
                    problems.append(f"{name} {widget.text()!r}: {advance} > {rect.width()} px")
        elif isinstance(widget, QAbstractButton) and widget.text():
            hint = widget.minimumSizeHint().width()
            if hint > widget.width() + 1:
                problems.append(f"{name} {widget.text()!r}: {hint} > {widget.width()} px")
    return problems


@dataclass(frozen=True)
class PanelSpec:
    """A side panel of the splitter: its name (``QSettings`` key), widget and widths."""

    name: str
    widget: QWidget
    #: Below this splitter width the panel collapses by itself.
    breakpoint: int
    #: The width it gets when it is shown again.
    preferred_width: int
    #: Never narrower (the widget's own minimum size hint counts too).
    min_width: int


@dataclass(eq=False)  # compared by identity
class _PanelState:
    spec: PanelSpec
    wanted: bool = True  # the user's explicit choice (persisted)
    opened_at: int = 0  # >0: opened by the user while collapsed (order of opening)
    collapsed: bool = False  # the splitter is narrower than the breakpoint
    shown: bool = True
    last_width: int = 0


class PanelLayout(QObject):
    """Shows, hides and sizes the side panels of ``splitter`` (see the module docstring)."""

    #: A panel was shown (True) or hidden (False): name, shown.
    visibility_changed = Signal(str, bool)

    def __init__(
        self,
        splitter: QSplitter,
        center: QWidget,
        panels: list[PanelSpec],
        settings: QSettings | None = None,
        *,
        chat_min_width: int = CHAT_MIN_WIDTH,
        chat_floor_width: int = CHAT_FLOOR_WIDTH,
    ) -> None:
        super().__init__(splitter)
        self._splitter = splitter
        self._center = center
        self._settings = settings
        self._chat_min = chat_min_width
        self._chat_floor = min(chat_floor_width, chat_min_width)
        self._order = itertools.count(1)
        self._states: dict[str, _PanelState] = {}
        center.setMinimumWidth(chat_min_width)
        splitter.setCollapsible(splitter.indexOf(center), False)
        splitter.setChildrenCollapsible(False)  # the toggles hide panels, not a drag to 0
        splitter.setHandleWidth(max(splitter.handleWidth(), 5))
        for spec in panels:
            state = _PanelState(spec, wanted=self._remembered(spec.name))
            state.last_width = spec.preferred_width
            self._states[spec.name] = state
        splitter.installEventFilter(self)
        splitter.splitterMoved.connect(self._dragged)
        self.update_layout()

    # --- the toggles' interface ---------------------------------------------------------

    def is_shown(self, name: str) -> bool:
        """Whether the panel ``name`` is shown now."""
        return self._states[name].shown

    def is_wanted(self, name: str) -> bool:
        """The user's explicit choice for ``name`` (True unless they hid it)."""
        return self._states[name].wanted

    def is_collapsed(self, name: str) -> bool:
        """Whether ``name`` is below its width breakpoint (collapsed unless opened)."""
        return self._states[name].collapsed

    def toggle(self, name: str) -> bool:
        """Hide ``name`` if shown, else show it (the user asked); returns whether shown."""
        return self.set_shown(name, not self._states[name].shown)

    def set_shown(self, name: str, shown: bool) -> bool:
        """Show or hide ``name`` because the user asked; returns whether it is shown."""
        state = self._states[name]
        if shown:
            state.wanted = True
            # Opened by hand: it wins over automatic panels until the next breakpoint.
            state.opened_at = next(self._order)
        else:
            if not state.collapsed or not state.opened_at:
                state.wanted = False  # hidden at a width where it would show: remember
            state.opened_at = 0
        self._remember(name, state.wanted)
        self.update_layout()
        if shown and not state.shown:  # no room even next to the narrowest chat
            state.opened_at = 0
        return state.shown

    def available_width(self) -> int:
        """The splitter's width now."""
        return self._splitter.width()

    def width_needed(self, name: str) -> int:
        """How wide the splitter must be to show ``name`` next to the chat column."""
        state = self._states[name]
        return self._min_width(state) + self._splitter.handleWidth() + self._chat_floor

    # --- layout ---------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._splitter and event.type() == QEvent.Type.Resize:
            self.update_layout()
        return False

    def update_layout(self) -> None:
        """Apply the breakpoints and the user's choices to the splitter's current width."""
        width = self._splitter.width()
        for state in self._states.values():
            collapsed = width < state.spec.breakpoint
            if collapsed != state.collapsed:
                state.opened_at = 0  # a breakpoint crossed: back to automatic
            state.collapsed = collapsed
        shown = [s for s in self._states.values() if s.opened_at or (s.wanted and not s.collapsed)]
        handle = self._splitter.handleWidth()

        def chat_min(shown: list[_PanelState]) -> int:
            by_hand = any(s.opened_at for s in shown)
            return self._chat_floor if by_hand else self._chat_min

        while shown and (sum(self._min_width(s) + handle for s in shown) + chat_min(shown) > width):
            automatic = [s for s in shown if not s.opened_at]
            victim = automatic[-1] if automatic else min(shown, key=lambda s: s.opened_at)
            shown.remove(victim)
        minimum = chat_min(shown)
        if minimum < self._center.minimumWidth():  # before a panel needs the room
            self._center.setMinimumWidth(minimum)
        changed = False
        for state in self._states.values():
            now = state in shown
            if now != state.shown:
                state.shown = now
                state.spec.widget.setVisible(now)
                changed = True
                self.visibility_changed.emit(state.spec.name, now)
        if minimum > self._center.minimumWidth():  # after the panels made room
            self._center.setMinimumWidth(minimum)
        if changed:
            self._resize_panels(width, minimum)

    @staticmethod
    def _min_width(state: _PanelState) -> int:
        """The panel's minimum: its spec's, or what its contents need (which can change)."""
        widget = state.spec.widget
        needed = max(widget.minimumWidth(), widget.minimumSizeHint().width())
        return min(max(state.spec.min_width, needed), widget.maximumWidth())

    def _dragged(self, _pos: int, _index: int) -> None:
        """The user dragged a handle: shown panels come back at the width they have now
        (a panel squeezed by a narrowing window keeps the width it was given)."""
        for state in self._states.values():
            if state.shown:
                state.last_width = state.spec.widget.width()

    def _resize_panels(self, width: int, chat_min: int) -> None:
        """Give the shown panels their last (or preferred) width, the chat the rest."""
        splitter = self._splitter
        sizes = [0] * splitter.count()
        room = width - chat_min - splitter.handleWidth() * (splitter.count() - 1)
        for state in self._states.values():
            index = splitter.indexOf(state.spec.widget)
            if state.shown and index >= 0:
                sizes[index] = max(self._min_width(state), state.last_width)
        panels = sum(sizes)
        if panels > room > 0:  # shrink proportionally, never below a minimum
            for state in self._states.values():
                index = splitter.indexOf(state.spec.widget)
                if index >= 0 and sizes[index]:
                    share = sizes[index] * room // panels
                    sizes[index] = max(self._min_width(state), share)
        center = splitter.indexOf(self._center)
        sizes[center] = max(chat_min, width - sum(sizes))
        splitter.setSizes(sizes)

    # --- persistence --------------------------------------------------------------------

    def _remembered(self, name: str) -> bool:
        if self._settings is None:
            return True
        value = self._settings.value(f"layout/{name}_shown", True)
        return str(value).lower() not in ("false", "0")

    def _remember(self, name: str, wanted: bool) -> None:
        if self._settings is not None:
            self._settings.setValue(f"layout/{name}_shown", wanted)
