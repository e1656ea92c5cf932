"""Where user data lives: the OS's per-user data folder, never the install folder.

``REID_DESKTOP_DATA_DIR`` overrides it (tests, portable installs). What the app records is
biometric data (faces, bodies, movements): on POSIX the data folder is 0700 and the database,
exports, reports, settings and logs are 0600, whatever the user's umask.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private(path: Path) -> None:
    """Restrict an existing file (0600) or folder (0700) to its owner; a no-op on Windows or when missing."""
    if os.name != "posix" or not path.exists():
        return
    mode = PRIVATE_DIR_MODE if path.is_dir() else PRIVATE_FILE_MODE
    with contextlib.suppress(PermissionError):  # not ours (a shared folder the user chose): leave it
        os.chmod(path, mode)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed; the folder itself is made 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    make_private(path)
    return path


@contextmanager
def open_private(path: Path, mode: str = "w", newline: str | None = None) -> Iterator[IO[str]]:
    """Open a text file for writing that only its owner can read, created that way (no window of 0644)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    make_private(path)  # an existing file keeps its mode through os.open
    with os.fdopen(fd, mode, encoding="utf-8", newline=newline) as handle:
        yield handle


def data_dir() -> Path:
    override = os.environ.get("REID_DESKTOP_DATA_DIR")
    if override:
        path = Path(override)
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("reid-desktop", appauthor=False))
    return private_dir(path)


def models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_database() -> Path:
    return data_dir() / "sightings.sqlite"


def build_description() -> str:
    """Which build is running: the frozen bundle's variant (written by packaging/) or a Python install."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root is None:
        return "Python package"
    marker = Path(frozen_root) / "BUILD_VARIANT"
    variant = marker.read_text(encoding="ascii").strip() if marker.is_file() else "unknown variant"
    return f"bundle {variant} in {Path(sys.executable).parent}"


def app_command(*args: str) -> tuple[str, list[str]]:
    """Program and arguments that run ``reid-desktop ARGS`` with this very installation (frozen or not)."""
    if getattr(sys, "frozen", False):
        # The Windows bundle's window program has no standard streams; its console twin does.
        console_twin = Path(sys.executable).with_name("reid-desktop-cli.exe")
        program = console_twin if console_twin.is_file() else Path(sys.executable)
        return str(program), list(args)
    return sys.executable, ["-m", "reid_desktop", *args]


def assets_dir() -> Path:
    """Bundled assets: next to the package in a source checkout, or inside a frozen bundle."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    candidates = [Path(frozen_root) / "assets"] if frozen_root else []
    candidates.append(Path(__file__).resolve().parents[2] / "assets")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[-1]


def shipped_detectors_dir() -> Path:
    """Detector exports a packaged build ships (machine-independent: the ONNX export every runtime starts from),
    laid out as the user's cache (``models/detectors``); absent in a source checkout."""
    return assets_dir() / "detectors"


def demo_clip() -> Path:
    return assets_dir() / "demo" / "vtest_excerpt.mp4"
