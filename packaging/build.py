"""Build the installable app: ``python packaging/build.py TARGET [--variant cpu|gpu]``.

TARGET is ``linux`` (one-folder bundle, ``.deb``, AppImage when ``appimagetool`` is on PATH),
``windows`` (bundle + Inno Setup installer when ``iscc`` is on PATH) or ``macos`` (``.app`` +
``.dmg``). PyInstaller cannot cross-build: each target is built on its own OS (see
``.github/workflows/installers.yml``). Everything lands in ``dist/packaging/TARGET-VARIANT/`` with a
``build-report.json`` of step times and sizes, which is also printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    APP_NAME,
    APPSTREAM_ID,
    ASSETS_DIR,
    DISPLAY_NAME,
    PACKAGING_DIR,
    REPO_ROOT,
    VARIANTS,
    project_version,
)

HOST_TARGET = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
INSTALL_DIR = f"/opt/{APP_NAME}"
NODE_UNIT = f"{APP_NAME}-node@.service"


TARGET_FORMATS = {"linux": ("deb", "appimage"), "windows": ("installer",), "macos": ("dmg",)}
# Formats whose tools ship with the OS's standard build image; the others are skipped with a reason.
REQUIRED_FORMATS = {"deb", "dmg"}


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


@dataclass
class BuildReport:
    target: str
    variant: str
    version: str
    artifacts: dict[str, str] = field(default_factory=dict)
    sizes_mb: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    largest_in_bundle_mb: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def print(self) -> None:
        print(f"\n{DISPLAY_NAME} {self.version} - {self.target} ({self.variant})")
        for name, path in self.artifacts.items():
            print(f"  {name:10s} {self.sizes_mb[name]:9.1f} MB  {path}")
        for name, why in self.skipped.items():
            print(f"  {name:10s} not built: {why}")
        print("  time: " + ", ".join(f"{step} {secs:.0f} s" for step, secs in self.seconds.items()))
        print("  largest parts of the bundle: " +
              ", ".join(f"{name} {mb:.0f} MB" for name, mb in self.largest_in_bundle_mb.items()))


def _size_mb(path: Path) -> float:
    """Bytes on disk in MB; symbolic links (PyInstaller links shared libraries) count as links."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size / 1e6
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir()) / 1e6


def _largest_parts(internal: Path, count: int = 8) -> dict[str, float]:
    """Top-level entries of the bundle's ``_internal`` folder by size: where the megabytes go."""
    sizes = {entry.name: _size_mb(entry) for entry in internal.iterdir()} if internal.is_dir() else {}
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:count])


def _run(cmd: list[str], **kwargs: object) -> None:
    print("+ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise BuildError(f"{Path(cmd[0]).name} failed with exit status {result.returncode}")


@contextmanager
def _timed(report: BuildReport, step: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    report.seconds[step] = round(time.monotonic() - started, 1)


# --- freezing ---------------------------------------------------------------------------------------


def freeze(target: str, variant: str, out_dir: Path) -> Path:
    """Run PyInstaller on ``packaging/TARGET.spec``; returns the one-folder bundle (or the .app)."""
    work = out_dir / "pyinstaller-work"
    dist = out_dir / "bundle"
    _run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
          "--distpath", str(dist), "--workpath", str(work), str(PACKAGING_DIR / f"{target}.spec"),
          "--", "--variant", variant])
    bundle = dist / (f"{DISPLAY_NAME}.app" if target == "macos" else APP_NAME)
    if not bundle.exists():
        raise BuildError(f"PyInstaller finished but {bundle} is missing")
    return bundle


# --- Linux: .deb and AppImage -----------------------------------------------------------------------


def _elf_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    yield path


def _dynamic_needs(path: Path) -> tuple[set[str], set[tuple[int, ...]]]:
    """DT_NEEDED library names and the glibc symbol versions (GLIBC_2.x) an ELF file asks for."""
    out = subprocess.run(["readelf", "-d", "-V", str(path)], capture_output=True, text=True, check=False).stdout
    names = {line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line}
    glibc = {tuple(int(n) for n in m.split(".")) for m in re.findall(r"Name: GLIBC_(\d+(?:\.\d+)+)", out)}
    return names, glibc


def system_dependencies(bundle: Path) -> list[str]:
    """Debian dependencies of the bundle: packages of the libraries it links but does not carry.

    What ``dpkg-shlibdeps`` does for a source package: every DT_NEEDED name not in the bundle is
    looked up with ``ldconfig`` and ``dpkg -S``, and libc6 gets the newest GLIBC symbol version any
    binary asks for as its lower bound. Names nobody provides here (the NVIDIA driver's
    ``libcuda.so.1``) belong to optional features and are not declared.
    """
    bundled = {p.name for p in bundle.rglob("*")}
    needed: set[str] = set()
    glibc: set[tuple[int, ...]] = {(2, 17)}
    for elf in _elf_files(bundle):
        names, versions = _dynamic_needs(elf)
        needed |= names
        glibc |= versions
    missing = sorted(needed - bundled)
    arch_tag = {"amd64": "x86-64", "arm64": "AArch64"}.get(DEB_ARCH, "")
    paths: dict[str, str] = {}
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    for line in cache.splitlines():  # "\tlibxcb.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libxcb.so.1"
        entry, _, path = line.strip().partition(" => ")
        soname, _, flags = entry.partition(" (")
        if soname in missing and arch_tag in flags:
            paths.setdefault(soname, path)
    packages: set[str] = set()
    for soname in missing:
        if soname not in paths:
            continue
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(paths[soname])], capture_output=True, text=True,
                               check=False)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", paths[soname]], capture_output=True, text=True, check=False)
        if owner.returncode == 0:
            packages.add(owner.stdout.split(":", 1)[0].strip())
    packages.discard("libc6")
    floor = ".".join(str(n) for n in max(glibc))
    return [f"libc6 (>= {floor})", *sorted(packages)]


def _link_or_copy(source: str, dest: str) -> None:
    """Stage the multi-GB bundle with hard links where the file system allows (no second copy)."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def _install_metadata(share: Path, version: str) -> None:
    """Menu entry and AppStream metadata (software centres), from ``assets/metadata``."""
    metadata = ASSETS_DIR / "metadata"
    (share / "applications").mkdir(parents=True, exist_ok=True)
    shutil.copy2(metadata / f"{APP_NAME}.desktop", share / "applications" / f"{APP_NAME}.desktop")
    (share / "metainfo").mkdir(parents=True, exist_ok=True)
    template = (metadata / f"{APPSTREAM_ID}.metainfo.xml.in").read_text(encoding="utf-8")
    (share / "metainfo" / f"{APPSTREAM_ID}.metainfo.xml").write_text(
        template.format(version=version, date=datetime.date.today().isoformat()), encoding="utf-8")


def _install_icons(share: Path) -> None:
    icons = ASSETS_DIR / "icons"
    for size, name in ((64, f"{APP_NAME}-64.png"), (128, f"{APP_NAME}-128.png"), (256, f"{APP_NAME}.png"),
                       (512, f"{APP_NAME}-512.png")):
        dest = share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_NAME}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(icons / name, dest)
    scalable = share / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True, exist_ok=True)
    shutil.copy2(icons / f"{APP_NAME}.svg", scalable / f"{APP_NAME}.svg")


RELEASE_LEVELS = {"zstd": 9, "xz": 6, "gzip": 6, "none": 0}  # small packages; a test build may trade size for time


def build_deb(bundle: Path, variant: str, version: str, out_dir: Path, compression: str,
              level: int | None = None) -> Path:
    """A .deb that installs the bundle in /opt, a ``reid-desktop`` command, a menu entry and icons."""
    package = APP_NAME if variant == "cpu" else f"{APP_NAME}-gpu"
    other = f"{APP_NAME}-gpu" if variant == "cpu" else APP_NAME
    root = out_dir / "deb-root"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(bundle, root / INSTALL_DIR.lstrip("/"), symlinks=True, copy_function=_link_or_copy)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / APP_NAME).symlink_to(f"{INSTALL_DIR}/{APP_NAME}")
    share = root / "usr" / "share"
    _install_metadata(share, version)
    _install_icons(share)
    doc = share / "doc" / package
    doc.mkdir(parents=True)
    shutil.copy2(PACKAGING_DIR / "linux" / "copyright", doc / "copyright")
    units = root / "usr" / "lib" / "systemd" / "system"  # processing nodes as services (README: "Several machines")
    units.mkdir(parents=True)
    shutil.copy2(PACKAGING_DIR / "linux" / NODE_UNIT, units / NODE_UNIT)

    debian = root / "DEBIAN"
    debian.mkdir()
    installed_kb = int(sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir()) / 1024)
    depends = ", ".join(system_dependencies(bundle))
    control = (PACKAGING_DIR / "linux" / "control.in").read_text(encoding="utf-8").format(
        package=package, other=other, version=version, arch=DEB_ARCH, installed_kb=installed_kb, depends=depends,
        variant="NVIDIA GPU (CUDA)" if variant == "gpu" else "CPU")
    (debian / "control").write_text(control, encoding="utf-8")
    for script in ("postinst", "postrm"):
        shutil.copy2(PACKAGING_DIR / "linux" / script, debian / script)
        (debian / script).chmod(0o755)

    deb = out_dir / f"{package}_{version}_{DEB_ARCH}.deb"
    level = RELEASE_LEVELS[compression] if level is None else level
    _run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", f"-z{level}", "--build", str(root), str(deb)])
    shutil.rmtree(root)
    return deb


def build_appimage(bundle: Path, variant: str, version: str, out_dir: Path) -> Path:
    """An AppImage of the same bundle; needs ``appimagetool`` (github.com/AppImage/appimagetool)."""
    tool = shutil.which("appimagetool") or shutil.which("appimagetool-x86_64.AppImage")
    if tool is None:
        raise BuildError("appimagetool is not on PATH (it is not on PyPI, Debian or npm; the CI workflow "
                         "downloads it from github.com/AppImage/appimagetool)")
    appdir = out_dir / "AppDir"
    shutil.rmtree(appdir, ignore_errors=True)
    shutil.copytree(bundle, appdir / "usr" / "lib" / APP_NAME, symlinks=True, copy_function=_link_or_copy)
    (appdir / "AppRun").symlink_to(f"usr/lib/{APP_NAME}/{APP_NAME}")
    _install_metadata(appdir / "usr" / "share", version)
    (appdir / f"{APP_NAME}.desktop").symlink_to(f"usr/share/applications/{APP_NAME}.desktop")
    _install_icons(appdir / "usr" / "share")
    shutil.copy2(ASSETS_DIR / "icons" / f"{APP_NAME}.png", appdir / f"{APP_NAME}.png")
    (appdir / ".DirIcon").symlink_to(f"{APP_NAME}.png")
    suffix = "" if variant == "cpu" else "-gpu"
    image = out_dir / f"{DISPLAY_NAME}{suffix}-{version}-{platform.machine()}.AppImage"
    _run([tool, str(appdir), str(image)], env={**os.environ, "ARCH": platform.machine()})
    shutil.rmtree(appdir)
    return image


# --- Windows and macOS ------------------------------------------------------------------------------


def build_windows_installer(bundle: Path, variant: str, version: str, out_dir: Path) -> Path:
    iscc = shutil.which("iscc") or shutil.which(r"C:\Program Files (x86)\Inno Setup 6\ISCC.exe")
    if iscc is None:
        raise BuildError("Inno Setup's ISCC.exe is not installed (https://jrsoftware.org/isinfo.php)")
    suffix = "" if variant == "cpu" else "-gpu"
    _run([iscc, f"/DAppVersion={version}", f"/DBundleDir={bundle}", f"/DOutputDir={out_dir}",
          f"/DOutputBase={DISPLAY_NAME}{suffix}-{version}-setup",
          f"/DIconFile={ASSETS_DIR / 'icons' / 'reid-desktop.ico'}",
          str(PACKAGING_DIR / "windows" / "reid-desktop.iss")])
    return out_dir / f"{DISPLAY_NAME}{suffix}-{version}-setup.exe"


def build_dmg(app: Path, version: str, out_dir: Path) -> Path:
    """A compressed disk image with the .app and a link to /Applications to drag it onto."""
    staging = out_dir / "dmg"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copytree(app, staging / app.name, symlinks=True)
    (staging / "Applications").symlink_to("/Applications")
    dmg = out_dir / f"{DISPLAY_NAME}-{version}-{platform.machine()}.dmg"
    dmg.unlink(missing_ok=True)
    _run(["hdiutil", "create", "-volname", f"{DISPLAY_NAME} {version}", "-srcfolder", str(staging), "-ov",
          "-format", "UDZO", str(dmg)])
    shutil.rmtree(staging)
    return dmg


# --- driver -----------------------------------------------------------------------------------------


def build(target: str, variant: str, out_root: Path, formats: set[str], deb_compression: str,
          deb_level: int | None = None) -> BuildReport:
    if target != HOST_TARGET:
        raise BuildError(f"PyInstaller cannot cross-build: {target} is built on {target}, this is {HOST_TARGET}")
    if target == "macos" and variant != "cpu":
        raise BuildError("macOS has no NVIDIA GPU variant")
    version = project_version()
    out_dir = out_root / f"{target}-{variant}"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport(target, variant, version)

    with _timed(report, "freeze"):
        bundle = freeze(target, variant, out_dir)
    report.artifacts["bundle"] = str(bundle)
    internal = bundle / "Contents" / "Frameworks" if target == "macos" else bundle / "_internal"
    report.largest_in_bundle_mb = {k: round(v, 1) for k, v in _largest_parts(internal).items()}

    steps = {
        "deb": lambda: build_deb(bundle, variant, version, out_dir, deb_compression, deb_level),
        "appimage": lambda: build_appimage(bundle, variant, version, out_dir),
        "installer": lambda: build_windows_installer(bundle, variant, version, out_dir),
        "dmg": lambda: build_dmg(bundle, version, out_dir),
    }
    for name in sorted(formats & set(TARGET_FORMATS[target])):
        try:
            with _timed(report, name):
                report.artifacts[name] = str(steps[name]())
        except BuildError as exc:
            if name in REQUIRED_FORMATS:
                raise
            report.skipped[name] = str(exc)
    report.sizes_mb = {name: round(_size_mb(Path(path)), 1) for name, path in report.artifacts.items()}
    (out_dir / "build-report.json").write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=sorted(TARGET_FORMATS), help="the OS to build for (must be this one)")
    parser.add_argument("--variant", choices=VARIANTS, default="cpu",
                        help="cpu: no CUDA libraries where the app runs without them; gpu: NVIDIA CUDA included")
    parser.add_argument("--formats", default=None,
                        help="comma-separated subset of the target's packages (linux: deb,appimage); "
                             "'none' builds the bundle only")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "packaging", help="output folder")
    parser.add_argument("--deb-compression", choices=["zstd", "xz", "gzip", "none"], default="zstd",
                        help="dpkg-deb compressor (zstd: fast, needs dpkg >= 1.21.18 / Ubuntu 21.10 to install)")
    parser.add_argument("--deb-level", type=int, choices=range(0, 20), metavar="0-19", default=None,
                        help="compression level (default: the release level, zstd 9, xz and gzip 6); a lower one "
                             "builds faster and larger (zstd 3, dpkg's own default: a 4.5 %% larger .deb in a "
                             "quarter of zstd 9's time; what the packaging test builds)")
    args = parser.parse_args(argv)
    wanted = set(TARGET_FORMATS[args.target]) if args.formats is None else {
        f.strip() for f in args.formats.split(",") if f.strip() and f.strip() != "none"}
    unknown = wanted - set(TARGET_FORMATS[args.target])
    if unknown:
        parser.error(f"{args.target} builds {', '.join(TARGET_FORMATS[args.target])}, not {', '.join(unknown)}")
    try:
        report = build(args.target, args.variant, args.out.resolve(), wanted, args.deb_compression,
                       args.deb_level)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
