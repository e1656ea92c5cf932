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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_desktop.core import config as config_mod
from reid_desktop.core.paths import data_dir, open_private
from reid_desktop.core.store.history import History, history_of

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LAYOUTS = ("auto", "1", "2x2", "3x3")
FOLLOW_MODES = ("maximise", "first", "off")


@dataclass
class SavedSource:
    """A camera in the sources list. ``uri`` never holds a secret (see ``redaction.strip_secrets``)."""

    name: str
    uri: str
    username: str = ""  # settings of older versions: the user, whose password alone is in the keyring
    has_password: bool = False  # the camera's full URL (with its secrets) is in the OS keyring
    paused: bool = False
    analyse_every_frame: bool = False  # a video file: analyse all its frames (slower than its own pace)
    analysis_fps: float | None = None  # most frames analysed a second (None: the setting for all cameras)


@dataclass
class WatchedPerson:
    """A watch-list entry: pictures of a person (files; embedded at every engine start) and its threshold."""

    name: str
    pictures: list[str] = field(default_factory=list)
    threshold: float = 0.6


@dataclass
class AppSettings:
    sources: list[SavedSource] = field(default_factory=list)
    layout: str = "auto"
    database: str = ""  # a SQLite file or a postgresql:// URL (no password); empty: the default file
    pipeline: dict[str, Any] = field(default_factory=dict)  # dotted overrides of the core config
    search_top_k: int = 20
    watch_list: list[WatchedPerson] = field(default_factory=list)
    follow_mode: str = "maximise"  # what the wall does on an alert: maximise | first | off
    alert_sound: bool = False
    pictures_in_step: bool = True  # pictures wait (up to 2 s) for their analysis, so the boxes stay on the people
    alert_notify: bool = True  # a desktop notification, where the desktop has a notification area
    window_geometry: str = ""  # Qt's saveGeometry(), base64: where the window was and how large
    window_state: str = ""  # Qt's saveState(), base64: the docks' places and sizes
    watched_node_cameras: list[str] = field(default_factory=list)  # "node/camera" shown live, opened again at start
    reid_model_offered: bool = False  # the first start without a re-id model offered one (asked once)

    @property
    def history(self) -> History:
        """Where sightings go: the SQLite file (by default the per-user one) or a shared PostgreSQL database.
        Raises DatabaseUrlError for a value that names neither (the Settings dialog refuses those)."""
        return history_of(self.database)

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


_KINDS: dict[Any, tuple[type | tuple[type, ...], str]] = {
    str: (str, "text"), bool: (bool, "true or false"), int: (int, "a whole number"),
    float: ((int, float), "a number"), float | None: ((int, float, type(None)), "a number or null"),
    dict[str, Any]: (dict, "a table"), list[str]: (list, "a list of text")}
_RECORDS = {list[SavedSource]: SavedSource, list[WatchedPerson]: WatchedPerson}  # lists of tables


def _fields(cls: type, data: object, where: str) -> dict[str, Any]:
    """The known fields of ``data`` for dataclass ``cls``, each checked against its type (SettingsError if not)."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where} must be a table of settings, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SettingsError(f"{where} lacks its {f.name}")
            continue
        value, hint = data[f.name], hints[f.name]
        if hint in _RECORDS:
            if not isinstance(value, list):
                raise SettingsError(f"{where}.{f.name} must be a list, not {type(value).__name__}")
            record = _RECORDS[hint]
            value = [record(**_fields(record, item, f"{f.name}[{i}]")) for i, item in enumerate(value)]
        elif (not isinstance(value, _KINDS[hint][0]) or (hint in (int, float) and isinstance(value, bool))
              or (isinstance(value, list) and not all(isinstance(v, str) for v in value))):
            raise SettingsError(f"{where}.{f.name} must be {_KINDS[hint][1]}, not {value!r}"[:200])
        values[f.name] = value
    unknown = set(data) - set(hints) - {"schema_version"}
    if unknown:
        log.warning("ignoring unknown settings in %s: %s", where, ", ".join(sorted(map(repr, unknown)))[:200])
    return values


def _from_dict(data: object) -> AppSettings:
    """Settings from parsed JSON of any shape: the right shape or :class:`SettingsError` naming what is wrong."""
    if not isinstance(data, dict):
        raise SettingsError(f"the file must hold a table of settings, not {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SettingsError(f"schema_version must be a whole number, not {version!r}")
    if version > SCHEMA_VERSION:
        raise SettingsError(f"settings schema {version} is newer than this version understands ({SCHEMA_VERSION})")
    settings = AppSettings(**_fields(AppSettings, data, "settings"))
    if settings.layout not in LAYOUTS:
        settings.layout = "auto"
    if settings.follow_mode not in FOLLOW_MODES:
        settings.follow_mode = AppSettings.follow_mode
    if not 1 <= settings.search_top_k <= 500:
        settings.search_top_k = AppSettings.search_top_k
    for i, source in enumerate(settings.sources):
        if source.analysis_fps is not None and not 0 <= source.analysis_fps <= 1000:
            raise SettingsError(f"sources[{i}].analysis_fps must be 0 to 1000 frames a second or null, "
                                f"not {source.analysis_fps!r}")
    for i, person in enumerate(settings.watch_list):
        if not 0.0 < person.threshold <= 1.0:
            raise SettingsError(f"watch_list[{i}].threshold must be in (0, 1], not {person.threshold!r}")
    names = [p.name for p in settings.watch_list]
    if len(set(names)) != len(names):
        raise SettingsError("watch_list: two people have the same name")
    config_mod.load(overrides=settings.pipeline)  # raises ConfigError naming a bad key or value
    history_of(settings.database)  # raises DatabaseUrlError (a password in a URL, an unknown scheme)
    return settings


def load_settings(path: Path | None = None) -> tuple[AppSettings, str]:
    """The saved settings, or defaults plus a one-line reason when the file is unusable (it is kept aside)."""
    path = path or settings_path()
    if not path.exists():
        return AppSettings(), ""
    try:
        return _from_dict(json.loads(path.read_text(encoding="utf-8"))), ""
    except (OSError, ValueError, RecursionError) as exc:
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
    with open_private(tmp) as fh:  # camera addresses and names: the user's only
        fh.write(json.dumps(payload, indent=2, allow_nan=False))
    tmp.replace(path)
    return path
