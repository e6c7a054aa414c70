"""Render the app's SVG icon as the hicolor PNG sizes (run by ``bootstrap.py package``).

    python packaging/linux/render_icons.py SVG HICOLOR_DIR

Writes ``HICOLOR_DIR/<n>x<n>/apps/hushchat.png`` for each size and
``HICOLOR_DIR/scalable/apps/hushchat.svg``, with Qt (offscreen), in the build environment.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def main(svg: Path, hicolor: Path) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication([])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        print(f"render_icons: {svg} is not a valid SVG", file=sys.stderr)
        return 1
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        target = hicolor / f"{size}x{size}" / "apps" / "hushchat.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(target)):  # PNG, by the suffix
            print(f"render_icons: could not write {target}", file=sys.stderr)
            return 1
    scalable = hicolor / "scalable" / "apps"
    scalable.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable / "hushchat.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
