"""Render the app icon from ``assets/icons/reid-desktop.svg`` into the formats installers need.

PNG sizes for the Linux icon theme and the window icon, ``.ico`` for Windows, ``.icns`` for macOS.
Run it after editing the SVG; the outputs are committed so builds need no SVG renderer.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "assets" / "icons"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)


def render_png(svg: Path, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication(sys.argv[:1])
    svg = ICONS / "reid-desktop.svg"
    images = {}
    for size in PNG_SIZES:
        png = render_png(svg, size)
        images[size] = Image.open(io.BytesIO(png))
        if size in (64, 128, 512):  # 256 is reid-desktop.png below
            (ICONS / f"reid-desktop-{size}.png").write_bytes(png)
    (ICONS / "reid-desktop.png").write_bytes(render_png(svg, 256))  # the window icon
    images[256].save(ICONS / "reid-desktop.ico", sizes=[(s, s) for s in (16, 32, 48, 64, 128, 256)])
    images[512].save(ICONS / "reid-desktop.icns")
    for path in sorted(ICONS.iterdir()):
        print(f"{path.name:28s} {path.stat().st_size:8d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
