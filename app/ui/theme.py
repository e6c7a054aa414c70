"""Light and dark palettes, the base font size, and the app's SVG icons.

The window uses Qt's Fusion style everywhere so that both palettes look the same on
every platform; "system" follows the desktop's colour scheme (``QStyleHints``) and
switches live when the desktop does. Icons are SVG, so they stay sharp at any
device pixel ratio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from PySide6.QtGui import QColor, QFont, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

__all__ = ["ICON_DIR", "Scheme", "apply_theme", "effective_scheme", "icon"]

ICON_DIR = Path(__file__).with_name("icons")

Scheme = Literal["light", "dark"]

_LIGHT = {
    QPalette.ColorRole.Window: "#f6f7f9",
    QPalette.ColorRole.WindowText: "#1f2328",
    QPalette.ColorRole.Base: "#ffffff",
    QPalette.ColorRole.AlternateBase: "#f0f2f5",
    QPalette.ColorRole.ToolTipBase: "#ffffff",
    QPalette.ColorRole.ToolTipText: "#1f2328",
    QPalette.ColorRole.PlaceholderText: "#8a9099",
    QPalette.ColorRole.Text: "#1f2328",
    QPalette.ColorRole.Button: "#eceef1",
    QPalette.ColorRole.ButtonText: "#1f2328",
    QPalette.ColorRole.BrightText: "#d1242f",
    QPalette.ColorRole.Highlight: "#3b5bdb",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#2f4ac0",
    QPalette.ColorRole.Light: "#ffffff",
    QPalette.ColorRole.Midlight: "#e4e7eb",
    QPalette.ColorRole.Mid: "#c9ced6",
    QPalette.ColorRole.Dark: "#9aa1ab",
    QPalette.ColorRole.Shadow: "#6e7681",
}

_DARK = {
    QPalette.ColorRole.Window: "#1e2024",
    QPalette.ColorRole.WindowText: "#e6e8eb",
    QPalette.ColorRole.Base: "#16181b",
    QPalette.ColorRole.AlternateBase: "#23262b",
    QPalette.ColorRole.ToolTipBase: "#2b2f35",
    QPalette.ColorRole.ToolTipText: "#e6e8eb",
    QPalette.ColorRole.PlaceholderText: "#7d848e",
    QPalette.ColorRole.Text: "#e6e8eb",
    QPalette.ColorRole.Button: "#2b2f35",
    QPalette.ColorRole.ButtonText: "#e6e8eb",
    QPalette.ColorRole.BrightText: "#ff7b72",
    QPalette.ColorRole.Highlight: "#5c7cfa",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#91a7ff",
    QPalette.ColorRole.Light: "#3a3f46",
    QPalette.ColorRole.Midlight: "#30343a",
    QPalette.ColorRole.Mid: "#3d424a",
    QPalette.ColorRole.Dark: "#121417",
    QPalette.ColorRole.Shadow: "#000000",
}

# Small touches Fusion lacks: roomier inputs, a calm focus ring, the error label style,
# splitter handles one can see (and that light up under the pointer).
_STYLE_SHEET = """
QLineEdit, QPlainTextEdit, QTextEdit {
    padding: 4px 6px;
}
QLineEdit {
    border: 1px solid %(border)s;
    border-radius: 3px;
    background: palette(base);
}
QLineEdit:focus {
    border-color: palette(highlight);
}
QPushButton {
    padding: 5px 14px;
}
QLabel[role="error"] {
    color: %(error)s;
}
QLabel[role="hint"] {
    color: %(hint)s;
}
QLabel[role="title"] {
    font-size: %(title)spt;
    font-weight: 600;
}
QPlainTextEdit[role="code"] {
    font-family: monospace;
}
QSplitter::handle:horizontal {
    background: %(border)s;
    margin: 8px 2px;
    border-radius: 1px;
}
QSplitter::handle:horizontal:hover {
    background: palette(highlight);
}
"""


def effective_scheme(theme: str) -> Scheme:
    """``light``/``dark`` as chosen, or the desktop's scheme for ``system``."""
    if theme in ("light", "dark"):
        return "dark" if theme == "dark" else "light"
    # Asking costs tens of ms the first time: PySide6 sets up Qt's whole namespace.
    from PySide6.QtCore import Qt

    hints = QGuiApplication.styleHints()
    return "dark" if hints.colorScheme() == Qt.ColorScheme.Dark else "light"


def _palette(scheme: Scheme) -> QPalette:
    palette = QPalette()
    colours = _DARK if scheme == "dark" else _LIGHT
    for role, value in colours.items():
        palette.setColor(role, QColor(value))
    disabled = QColor("#6e7681" if scheme == "dark" else "#a0a6ae")
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return palette


def apply_theme(
    app: QApplication, theme: str, font_size: int, scheme: Scheme | None = None
) -> Scheme:
    """Apply the palette for ``theme`` (system/light/dark) and the base font size.

    ``scheme`` is the colour scheme to use, when the caller knows it already (default: the
    one ``theme`` means now, see :func:`effective_scheme`).
    """
    if app.style().name().lower() != "fusion":
        fusion = QStyleFactory.create("Fusion")
        if fusion is not None:
            app.setStyle(fusion)
    scheme = scheme or effective_scheme(theme)
    app.setPalette(_palette(scheme))
    font = QFont(app.font())
    font.setPointSize(font_size)
    app.setFont(font)
    app.setStyleSheet(
        _STYLE_SHEET
        % {
            "error": "#ff7b72" if scheme == "dark" else "#c62828",
            "border": "#4a505a" if scheme == "dark" else "#b9bfc8",
            "hint": "#9aa1ab" if scheme == "dark" else "#5f6670",
            "title": font_size + 7,
        }
    )
    app.setProperty("hushchat_scheme", scheme)
    return scheme


def icon(name: str) -> QIcon:
    """The SVG icon ``app/ui/icons/<name>.svg`` (sharp at every device pixel ratio)."""
    return QIcon(str(ICON_DIR / f"{name}.svg"))
