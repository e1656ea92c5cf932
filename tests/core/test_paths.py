"""Where the app looks for its assets and says which build it is, from a checkout and when frozen."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reid_desktop.core import paths


def test_a_source_install_finds_the_repository_assets() -> None:
    assert paths.build_description() == "Python package"
    assert paths.demo_clip().is_file()


def test_a_frozen_bundle_uses_its_own_assets_and_names_its_variant(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    internal = tmp_path / "reid-desktop" / "_internal"
    (internal / "assets" / "demo").mkdir(parents=True)
    (internal / "BUILD_VARIANT").write_text("linux-cpu\n")
    monkeypatch.setattr(sys, "_MEIPASS", str(internal), raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "reid-desktop" / "reid-desktop"))
    assert paths.assets_dir() == internal / "assets"
    assert paths.build_description() == f"bundle linux-cpu in {tmp_path / 'reid-desktop'}"
