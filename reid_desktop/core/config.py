"""Pipeline configuration: packaged defaults -> user TOML file -> command-line overrides.

Every key is a dataclass field with a one-line ``help`` and, where it makes sense, a range. Unknown
keys are rejected with a suggestion, so a typo in a settings file never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_desktop.core import topology

SCHEMA_VERSION = 1


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key and what is allowed."""


def _opt(default: Any, help: str, *, min: float | None = None, max: float | None = None,
         choices: tuple[str, ...] | None = None, parse: typing.Callable[[str], object] | None = None) -> Any:
    """``parse``: a text setting with its own syntax is checked by reading it (it raises ValueError)."""
    return field(default=default, metadata={"help": help, "min": min, "max": max, "choices": choices, "parse": parse})


@dataclass
class SourceOptions:
    realtime: bool = _opt(False, "Read files at their own frame rate, dropping frames when behind (live-like)")
    loop: bool = _opt(False, "Restart files from the beginning when they end")
    reconnect_initial_delay_s: float = _opt(0.5, "First wait before reconnecting a lost stream", min=0.0)
    reconnect_max_delay_s: float = _opt(30.0, "Longest wait between reconnection attempts", min=0.0)
    reconnect_max_attempts: int = _opt(0, "Give up on a stream after this many failed attempts (0: never)", min=0)
    open_timeout_s: float = _opt(10.0, "How long opening a stream may take", min=0.1)
    read_timeout_s: float = _opt(10.0, "How long a stream may stay silent before it counts as lost", min=0.1)
    max_corrupt_frames: int = _opt(25, "Undecodable frames in a row a file may have before it counts as broken",
                                   min=1)
    queue_size: int = _opt(8, "Decoded frames buffered per file source", min=1, max=256)
    queue_max_mb: int = _opt(256, "Most memory (MB) the decoded frames buffered for one file source may take",
                             min=1, max=65536)
    max_frame_pixels: int = _opt(3840 * 2160, "Frames with more pixels than this are scaled down right after "
                                              "decoding (bounds memory and inference cost)", min=64 * 64)
    stable_after_s: float = _opt(5.0, "A stream must stay live this long before a drop restarts the reconnection "
                                      "back-off; shorter drops count as failed attempts", min=0.0)


@dataclass
class DetectorConfig:
    model: str = _opt("", "Ultralytics detector (.pt or exported .onnx); empty: bundled YOLO11n-pose")
    imgsz: int = _opt(1280, "Inference size in pixels; small people need about 1280", min=64, max=4096)
    confidence: float = _opt(0.1, "Lowest detection score kept; the tracker uses weak detections to bridge "
                                  "occlusions but opens tracks only on strong ones", min=0.0, max=1.0)
    iou: float = _opt(0.6, "Non-maximum-suppression IoU threshold", min=0.0, max=1.0)
    device: str = _opt("", "Torch device for the detector ('cpu', '0', ...); empty: GPU when present")


@dataclass
class TrackerConfig:
    kind: str = _opt("bytetrack", "Per-camera tracker from ultralytics", choices=("bytetrack", "botsort"))
    track_buffer: int = _opt(30, "Frames a lost track is kept before its id is retired", min=1)
    high_threshold: float = _opt(0.25, "Detections above this start or continue tracks", min=0.0, max=1.0)
    low_threshold: float = _opt(0.1, "Detections above this may continue existing tracks", min=0.0, max=1.0)
    new_track_threshold: float = _opt(0.3, "Confidence needed to open a new track", min=0.0, max=1.0)
    match_threshold: float = _opt(0.8, "Tracker association cost threshold", min=0.0, max=1.0)


@dataclass
class ReidConfig:
    model: str = _opt("", "Re-id ONNX model [N,3,H,W]->[N,D]; empty: the default ResNet-50")
    weights: str = _opt("", "ImageNet ResNet-50 .pth used to build the default model when offline")
    allow_download: bool = _opt(True, "Let torchvision download ImageNet weights for the default model")
    providers: str = _opt("auto", "ONNX Runtime execution providers",
                          choices=("auto", "cpu", "cuda", "tensorrt"))
    batch_size: int = _opt(32, "Crops per ONNX Runtime call", min=1, max=1024)
    embed_every: int = _opt(10, "Re-embed a track every this many frames", min=1)
    quality_gain: float = _opt(1.25, "Re-embed early when crop quality beats the best so far by this factor",
                               min=1.0)
    track_gallery_size: int = _opt(5, "Best embeddings kept per track", min=1, max=100)


@dataclass
class MatcherConfig:
    threshold: float = _opt(0.0, "Cosine similarity needed to link a track to an identity (0: calibrated on the "
                                 "footage, starting from the model's recommended value)", min=0.0, max=1.0)
    false_accept: float = _opt(0.01, "Calibration: share of people allowed to reach the threshold with someone "
                                     "else seen together with them in one camera", min=0.0001, max=0.5)
    identity_gallery_size: int = _opt(10, "Best embeddings kept per identity in the working set", min=1, max=100)
    active_identities: int = _opt(256, "Identities compared exactly on every frame (the most recently seen; "
                                       "targets and named people always); the others are found through the "
                                       "database's vector index", min=8, max=100_000)
    commit_crops: int = _opt(3, "Embeddings a new track needs before its identity is final; until then every better "
                                "crop decides again, and a change is corrected in the database", min=1, max=100)
    camera_links: str = _opt("", "Camera topology: 'A = B' cameras that overlap, 'A ~ B : 8' at least 8 s of "
                                 "walking between them; entries separated by ';'", parse=topology.parse)
    same_moment_s: float = _opt(0.5, "Sightings in two cameras this close in time are simultaneous: one person "
                                     "cannot be in both unless the cameras overlap", min=0.0, max=60.0)


@dataclass
class StorageConfig:
    commit_interval_s: float = _opt(1.0, "Longest time between commits to the sightings database", min=0.0)
    thumbnail_height: int = _opt(128, "Height of stored best-crop thumbnails", min=16, max=1024)
    retention_days: int = _opt(0, "Delete sightings older than this many days, at the start and every few minutes "
                                  "(0: keep all)", min=0)
    max_database_gb: float = _opt(0.0, "Delete the oldest sightings when the database holds more than this many GB "
                                       "(0: no limit)", min=0.0)
    sightings_per_second: float = _opt(2.0, "Positions stored per track and second, besides its first and last and "
                                            "those with an embedding or a better picture; targets: every frame "
                                            "(0: every frame for everyone)", min=0.0)
    embeddings_per_track: int = _opt(8, "Best embeddings stored per track; weaker ones give way", min=1, max=1000)


@dataclass
class PipelineConfig:
    sources: SourceOptions = field(default_factory=SourceOptions)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    reid: ReidConfig = field(default_factory=ReidConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}


def _sections() -> dict[str, type]:
    return {f.name: typing.get_type_hints(PipelineConfig)[f.name] for f in dataclasses.fields(PipelineConfig)}


def _check_value(section: str, f: dataclasses.Field[Any], value: Any, hint: Any) -> Any:
    key = f"{section}.{f.name}"
    base = hint
    if isinstance(hint, types.UnionType):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if base is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            value = value.lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
    elif base in (int, float):
        try:
            number = base(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a {base.__name__}, got {value!r}") from None
        if isinstance(value, bool) or (base is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected a {base.__name__}, got {value!r}")
        if not math.isfinite(number):  # `inf` would mean "never" (commit_interval_s = inf never commits)
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        value = number
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ConfigError(f"{key}: {value} is outside the allowed range {rng}")
    elif base is str:
        value = str(value)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        if f.metadata.get("parse"):
            try:
                f.metadata["parse"](value)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
    return value


def _unknown(kind: str, name: str, known: typing.Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint}")


def apply(config: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """Return a copy of ``config`` with nested ``{section: {key: value}}`` or dotted ``section.key`` values."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key == "schema_version":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"schema_version: expected a whole number, got {value!r}")
            if value > SCHEMA_VERSION:
                raise ConfigError(f"settings schema {value} is newer than this version understands ({SCHEMA_VERSION})")
            continue
        if isinstance(value, dict):
            nested.setdefault(key, {}).update(value)
        elif "." in key:
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = value
        else:
            raise _unknown("setting", key, [f"{s}.{n}" for s, c in _sections().items()
                                            for n in (f.name for f in dataclasses.fields(c))])
    sections = _sections()
    updated: dict[str, Any] = {}
    for section, items in nested.items():
        if section not in sections:
            raise _unknown("settings section", section, sections)
        cls = sections[section]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        changes = {}
        for name, value in items.items():
            if name not in fields:
                raise _unknown(f"setting in [{section}]", name, fields)
            changes[name] = _check_value(section, fields[name], value, hints[name])
        updated[section] = dataclasses.replace(getattr(config, section), **changes)
    return dataclasses.replace(config, **updated)


def load(path: Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then the TOML file at ``path`` (if given), then ``overrides``."""
    config = PipelineConfig()
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"settings file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None
        config = apply(config, data)
    if overrides:
        config = apply(config, overrides)
    return config


def describe() -> str:
    """The default settings as commented TOML: every key with its one-line explanation."""
    lines = [f"schema_version = {SCHEMA_VERSION}"]
    for section, cls in _sections().items():
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(cls):
            default = f.default
            literal = str(default).lower() if isinstance(default, bool) else repr(default).replace("'", '"')
            lines.append(f"# {f.metadata['help']}")
            lines.append(f"{f.name} = {literal}")
    return "\n".join(lines) + "\n"
