"""Where user data lives: the OS's per-user data folder, never the install folder.

``REID_DESKTOP_DATA_DIR`` overrides it (tests, portable installs).
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    override = os.environ.get("REID_DESKTOP_DATA_DIR")
    if override:
        path = Path(override)
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("reid-desktop", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_database() -> Path:
    return data_dir() / "sightings.sqlite"


def build_description() -> str:
    """Which build is running: the frozen bundle's variant (written by packaging/) or a Python install."""
    import sys

    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root is None:
        return "Python package"
    marker = Path(frozen_root) / "BUILD_VARIANT"
    variant = marker.read_text(encoding="ascii").strip() if marker.is_file() else "unknown variant"
    return f"bundle {variant} in {Path(sys.executable).parent}"


def assets_dir() -> Path:
    """Bundled assets: next to the package in a source checkout, or inside a frozen bundle."""
    import sys

    frozen_root = getattr(sys, "_MEIPASS", None)
    candidates = [Path(frozen_root) / "assets"] if frozen_root else []
    candidates.append(Path(__file__).resolve().parents[2] / "assets")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[-1]


def demo_clip() -> Path:
    return assets_dir() / "demo" / "vtest_excerpt.mp4"
