"""The settings file: any content, however broken or hostile, gives defaults and one line saying why; what is
written is private and never holds a secret."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reid_desktop.ui.settings import AppSettings, SavedSource, load_settings, save_settings

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=20)
FIELDS = st.fixed_dictionaries({}, optional={
    "schema_version": JSON, "sources": st.lists(st.fixed_dictionaries({}, optional={
        "name": JSON, "uri": JSON, "username": JSON, "has_password": JSON, "paused": JSON}), max_size=3) | JSON,
    "layout": JSON, "database": JSON, "pipeline": JSON | st.dictionaries(st.sampled_from(
        ["detector.imgsz", "storage.commit_interval_s", "reid.model"]), JSON), "search_top_k": JSON})


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(JSON, FIELDS))
def test_any_json_gives_settings_or_defaults_with_a_reason(tmp_path: Path, data: object) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    loaded, warning = load_settings(path)
    assert isinstance(loaded, AppSettings)
    assert all(isinstance(s, SavedSource) and isinstance(s.name, str) for s in loaded.sources)
    loaded.pipeline_config()  # whatever was kept is valid
    if warning:
        assert loaded == AppSettings() and "\n" not in warning and "defaults loaded" in warning
        assert path.with_suffix(".json.bad").exists() and not path.exists()
        path.with_suffix(".json.bad").unlink()


@pytest.mark.parametrize(("content", "reason"), [
    ("[]", "must hold a table of settings, not list"),
    ('{"sources": ["x"]}', "sources[0] must be a table of settings, not str"),
    ('{"sources": [{"name": "gate"}]}', "uri"),
    ('{"pipeline": {"storage.commit_interval_s": Infinity}}', "expected a finite number"),
    ('{"layout": 2}', "settings.layout must be text"),
    ('{"sources": [{"name": "gate", "uri": "x", "analysis_fps": "fast"}]}', "analysis_fps must be a number or null"),
    ('{"sources": [{"name": "gate", "uri": "x", "analysis_fps": -2}]}', "analysis_fps must be 0 to 1000"),
    ("{", "Expecting property name"),
])
def test_wrong_shapes_are_put_aside_with_one_line(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content, encoding="utf-8")
    loaded, warning = load_settings(path)
    assert loaded == AppSettings() and reason in warning
    assert path.with_suffix(".json.bad").read_text(encoding="utf-8") == content


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_settings_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = save_settings(AppSettings(sources=[SavedSource("gate", "rtsp://cam/s")]), tmp_path / "s.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings(path)[0].sources[0].name == "gate"
