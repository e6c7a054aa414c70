"""Key sequences the window's actions have and widgets name (in tooltips and menus).

Kept apart from the widgets so that the window can build its actions before the chat
widgets are imported (they load after the first frame).
"""

from __future__ import annotations

from typing import Final

__all__ = ["READ_ALOUD_SHORTCUT", "STOP_READING_KEY"]

#: "Read aloud": the selected or focused answer, else the open chat's last one.
READ_ALOUD_SHORTCUT: Final = "Ctrl+Shift+R"
#: Stops reading aloud when no answer is arriving (else it stops the answer first).
STOP_READING_KEY: Final = "Esc"
