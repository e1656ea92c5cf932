"""The house rules that tools can check: ruff clean everywhere, mypy clean core."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_ruff_is_clean() -> None:
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "reid_desktop", "trainer", "tests", "bench"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout


def test_mypy_is_clean_on_the_core() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout


def test_importing_the_app_leaves_the_environment_alone() -> None:
    """Variables for OpenCV and Ultralytics are set where a capture opens or ultralytics is imported.

    Libraries that set variables themselves when imported (OpenCV, PySide6, threadpoolctl) are imported
    before the snapshot: only our own modules are judged.
    """
    code = ("import os, pkgutil, importlib, cv2, threadpoolctl, PySide6.QtWidgets, reid_desktop, trainer\n"
            "before = dict(os.environ)\n"
            "for package in (reid_desktop, trainer):\n"
            "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
            "        if module.name != 'reid_desktop.__main__':\n"
            "            importlib.import_module(module.name)\n"
            "changed = {k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}\n"
            "print(sorted(changed))\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if not k.startswith(("OPENCV_", "YOLO_", "ULTRALYTICS_"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
