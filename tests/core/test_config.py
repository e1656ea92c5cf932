from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from reid_desktop.core import config, options


def test_defaults_then_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("schema_version = 1\n[detector]\nimgsz = 960\nconfidence = 0.5\n")
    cfg = config.load(path, {"detector.confidence": "0.25", "sources.realtime": "true"})
    assert cfg.detector.imgsz == 960
    assert cfg.detector.confidence == 0.25
    assert cfg.sources.realtime is True
    assert cfg.tracker.kind == "bytetrack"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"detector.imgsize": 640}, "did you mean 'imgsz'"),
        ({"detectr.imgsz": 640}, "did you mean 'detector'"),
        ({"detector.imgsz": 10}, "outside the allowed range"),
        ({"detector.confidence": "high"}, "expected a float"),
        ({"tracker.kind": "sort"}, "not one of bytetrack, botsort"),
        ({"sources.realtime": "maybe"}, "expected true or false"),
        ({"schema_version": 99}, "newer than this version"),
        ({"schema_version": "two"}, "schema_version: expected a whole number"),
        ({"storage.commit_interval_s": float("inf")}, "expected a finite number, got inf"),
        ({"sources.read_timeout_s": float("nan")}, "expected a finite number, got nan"),
        ({"detector.imgsz": float("inf")}, "expected a int, got inf"),
        ({"detector.imgsz": "1e999"}, "expected a int"),
    ],
)
def test_bad_settings_are_rejected_with_a_clear_message(values: dict, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.apply(config.PipelineConfig(), values)


def test_broken_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[detector\nimgsz = ")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(path)
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml")


def test_described_defaults_are_valid_toml_that_loads_back(tmp_path: Path) -> None:
    text = config.describe()
    assert text.count("# ") >= 30  # every key has its one-line comment
    parsed = tomllib.loads(text)
    assert parsed["detector"]["imgsz"] == 1280
    path = tmp_path / "defaults.toml"
    path.write_text(text)
    assert config.load(path) == config.PipelineConfig()


def test_non_finite_numbers_in_a_toml_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("[storage]\ncommit_interval_s = inf\n")  # TOML has inf and nan literals
    with pytest.raises(config.ConfigError, match=r"storage\.commit_interval_s: expected a finite number"):
        config.load(path)


def test_command_line_flags_override_the_settings_file_only_when_given(tmp_path: Path) -> None:
    from reid_desktop import cli

    path = tmp_path / "settings.toml"
    path.write_text("schema_version = 1\n[sources]\nreconnect_max_attempts = 3\n")
    args = cli.build_parser().parse_args(["process", "cam.mp4"])
    assert config.load(path, cli._overrides(args)).sources.reconnect_max_attempts == 3
    args = cli.build_parser().parse_args(["process", "cam.mp4", "--reconnect-attempts", "7"])
    assert config.load(path, cli._overrides(args)).sources.reconnect_max_attempts == 7


def test_every_declared_flag_reaches_its_setting() -> None:
    """The CLI's flags come from the declarations: each one, given, sets exactly its own key."""
    from reid_desktop import cli

    for section, cls in config.sections().items():
        for s in options.settings_of(cls):
            if not s.option.flag:
                continue
            key = f"{section}.{s.name}"
            if s.kind is bool:
                argv, expected = [options.flag_name(s) if not s.default else "--no-" + options.flag_name(s)[2:]], \
                    not s.default
            else:
                lo = s.option.min or 0
                number = s.kind((lo + s.option.max) / 2 if s.option.max is not None else lo + 1)
                expected = s.option.choices[-1] if s.option.choices else "x.onnx" if s.kind is str else number
                assert expected != s.default
                argv = [options.flag_name(s), str(expected)]
            overrides = cli._overrides(cli.build_parser().parse_args(["process", "cam.mp4", *argv]))
            assert overrides == {key: expected}, key
            assert config.load(overrides=overrides).value(key) == expected
    args = cli.build_parser().parse_args(["search", "me.jpg", "--no-download", "--reid-model", "m.onnx"])
    assert cli._overrides(args) == {"reid.allow_download": False, "reid.model": "m.onnx"}
