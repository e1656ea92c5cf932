"""Test set-up: offline Ultralytics, isolated user data, shared data located or skipped visibly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports ultralytics or the app: no downloads, no pip installs, no writes to $HOME.
_isolated = Path(tempfile.mkdtemp(prefix="reid-desktop-tests-"))
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"
os.environ["YOLO_CONFIG_DIR"] = str(_isolated / "ultralytics")
os.environ["REID_DESKTOP_DATA_DIR"] = str(_isolated / "data")
os.environ["REID_DESKTOP_BACKGROUND_PREPARE"] = "0"  # a minute of CPU per test; its own tests turn it on
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests: the same examples on every run (CI stays reproducible; no deadline on a loaded 2-core
# machine); HYPOTHESIS_PROFILE=explore searches afresh with ten times the examples.
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEMO_CLIP = ROOT / "assets" / "demo" / "vtest_excerpt.mp4"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--prebuilt", default=None, metavar="DIR",
                     help="packaging tests: use the build in DIR (packaging/build.py's --out) instead of building")
    parser.addoption("--package-variant", default="cpu", choices=["cpu", "gpu"],
                     help="packaging tests: which Linux variant to build or take from --prebuilt")


def shared_path(relative: str) -> Path:
    """A file from ../shared, or a visible skip when the shared folder is not there."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs ../shared/{relative} (shared test data not present)")
    return path


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "user-data"
    monkeypatch.setenv("REID_DESKTOP_DATA_DIR", str(data))
    return data


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    assert DEMO_CLIP.is_file(), "the demo clip is part of the repository"
    return DEMO_CLIP


@pytest.fixture(scope="session")
def demo_frames(demo_clip: Path) -> list[np.ndarray]:
    from reid_desktop.core.capture.sources import read_frames

    return read_frames(str(demo_clip))


@pytest.fixture(scope="session")
def pose_detector():
    from reid_desktop.core.config import DetectorConfig
    from reid_desktop.core.vision.detection import YoloDetector

    return YoloDetector(DetectorConfig(imgsz=1280, device="cpu"))


@pytest.fixture(scope="session")
def osnet_path() -> Path:
    return shared_path("models/osnet_x0_25_msmt17.onnx")


@pytest.fixture
def long_clip(tmp_path: Path, demo_clip: Path) -> Path:
    """The demo clip ten times over (80 s), for streams that must not end during a test."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to lengthen the demo clip")
    out = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-stream_loop", "9", "-i", str(demo_clip), "-c", "copy",
                    str(out)], check=True, timeout=60)
    return out


def memory_keyring_backend():
    """A real keyring backend that keeps secrets in memory (the test machine has no Secret Service)."""
    import keyring.backend

    class MemoryKeyring(keyring.backend.KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.secrets: dict[tuple[str, str], str] = {}

        def set_password(self, service: str, username: str, password: str) -> None:
            self.secrets[(service, username)] = password

        def get_password(self, service: str, username: str) -> str | None:
            return self.secrets.get((service, username))

        def delete_password(self, service: str, username: str) -> None:
            self.secrets.pop((service, username), None)

    return MemoryKeyring()


@pytest.fixture
def memory_keyring():
    import keyring

    previous = keyring.get_keyring()
    ring = memory_keyring_backend()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (tests/pg_server.py), or a visible skip saying why not."""
    import shutil

    from tests.pg_server import start_server

    folder = Path(tempfile.mkdtemp(prefix="reid-pg-"))  # not under pytest's root-only tmp: the server's user reads it
    try:
        server = start_server(folder)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield server
    try:
        server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server; its URL (no password in it)."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    return pg_server.create_database(name)
