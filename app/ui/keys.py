"""Key sequences the window's actions have and widgets name (in tooltips and menus).

Kept apart from the widgets so that the window can build its actions before the chat
widgets are imported (they load after the first frame). ``native`` writes a sequence
as the platform does (Ctrl is ⌘ on macOS).
"""

from __future__ import annotations

from typing import Final

from PySide6.QtGui import QKeySequence

__all__ = ["READ_ALOUD_SHORTCUT", "STOP_READING_KEY", "native"]

#: "Read aloud": the selected or focused answer, else the open chat's last one.
READ_ALOUD_SHORTCUT: Final = "Ctrl+Shift+R"
#: Stops reading aloud when no answer is arriving (else it stops the answer first).
STOP_READING_KEY: Final = "Esc"


def native(sequence: str) -> str:
    """``sequence`` ("Ctrl+Shift+R") as this platform's menus write it."""
    return QKeySequence(sequence).toString(QKeySequence.SequenceFormat.NativeText)
