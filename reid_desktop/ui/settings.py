"""The GUI's persistent settings: cameras, layout, database, and pipeline options.

Stored as JSON with a schema version in the per-user config folder. Stream passwords are never
written here: they go to the OS keyring (:mod:`reid_desktop.core.credentials`) or are not kept.
Pipeline options are stored as dotted overrides (``detector.imgsz``) and validated by the core's
config module, so the GUI and the CLI share one definition of every setting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_desktop.core import config as config_mod
from reid_desktop.core.paths import data_dir, default_database

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LAYOUTS = ("auto", "1", "2x2", "3x3")


@dataclass
class SavedSource:
    """A camera in the sources list. ``uri`` never holds a secret (see ``redaction.strip_secrets``)."""

    name: str
    uri: str
    username: str = ""  # settings of older versions: the user, whose password alone is in the keyring
    has_password: bool = False  # the camera's full URL (with its secrets) is in the OS keyring
    paused: bool = False


@dataclass
class AppSettings:
    sources: list[SavedSource] = field(default_factory=list)
    layout: str = "auto"
    database: str = ""  # empty: the default file in the user data folder
    pipeline: dict[str, Any] = field(default_factory=dict)  # dotted overrides of the core config
    search_top_k: int = 20

    @property
    def database_path(self) -> Path:
        return Path(self.database).expanduser() if self.database else default_database()

    def pipeline_config(self) -> config_mod.PipelineConfig:
        return config_mod.load(overrides=self.pipeline)


def settings_path() -> Path:
    """``settings.json`` in the per-user config folder (``REID_DESKTOP_DATA_DIR`` for tests and portable use)."""
    if os.environ.get("REID_DESKTOP_DATA_DIR"):
        return data_dir() / "settings.json"
    import platformdirs

    return Path(platformdirs.user_config_dir("reid-desktop", appauthor=False)) / "settings.json"


class SettingsError(ValueError):
    """The settings file cannot be used; the message says why."""


def _from_dict(data: dict[str, Any]) -> AppSettings:
    version = int(data.get("schema_version", SCHEMA_VERSION))
    if version > SCHEMA_VERSION:
        raise SettingsError(f"settings schema {version} is newer than this version understands ({SCHEMA_VERSION})")
    known = {f.name for f in dataclasses.fields(AppSettings)}
    unknown = set(data) - known - {"schema_version"}
    if unknown:
        log.warning("ignoring unknown settings: %s", ", ".join(sorted(unknown)))
    values = {k: v for k, v in data.items() if k in known}
    source_fields = {f.name for f in dataclasses.fields(SavedSource)}
    values["sources"] = [SavedSource(**{k: v for k, v in s.items() if k in source_fields})
                         for s in values.get("sources", [])]
    settings = AppSettings(**values)
    if settings.layout not in LAYOUTS:
        settings.layout = "auto"
    config_mod.load(overrides=settings.pipeline)  # raises ConfigError naming a bad key or value
    return settings


def load_settings(path: Path | None = None) -> tuple[AppSettings, str]:
    """The saved settings, or defaults plus a one-line reason when the file is unusable (it is kept aside)."""
    path = path or settings_path()
    if not path.exists():
        return AppSettings(), ""
    try:
        return _from_dict(json.loads(path.read_text(encoding="utf-8"))), ""
    except (OSError, ValueError, TypeError) as exc:
        backup = path.with_suffix(".json.bad")
        try:
            path.replace(backup)
        except OSError:
            backup = path
        return AppSettings(), (f"settings in {path} could not be used ({exc}); defaults loaded, "
                               f"old file kept as {backup}")


def save_settings(settings: AppSettings, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves half a settings file."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(settings)}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path
