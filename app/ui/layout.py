"""Two small layout helpers shared by the pages: a centred column and label roles."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

__all__ = ["centered_page", "set_role"]


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
