"""Pipeline configuration: packaged defaults -> user TOML file -> command-line overrides.

Every key is declared once with :func:`~reid_desktop.core.options.option`: a one-line ``help`` and,
where it makes sense, a range, choices and a command-line flag. Unknown keys are rejected with a
suggestion, so a typo in a settings file never silently does nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_desktop.core import options, topology
from reid_desktop.core.options import ConfigError, option

__all__ = ["ConfigError", "PipelineConfig", "add_flags", "apply", "describe", "flag_overrides", "load"]

SCHEMA_VERSION = 1


@dataclass
class SourceOptions:
    realtime: bool = option(False, "Read files at their own frame rate, dropping frames when behind (live-like)",
                            flag="realtime")
    loop: bool = option(False, "Restart files from the beginning when they end", flag="loop")
    reconnect_initial_delay_s: float = option(0.5, "First wait before reconnecting a lost stream", min=0.0)
    reconnect_max_delay_s: float = option(30.0, "Longest wait between reconnection attempts", min=0.0)
    reconnect_max_attempts: int = option(0, "Give up on a stream after this many failed attempts (0: never)",
                                        min=0, flag="reconnect_attempts")
    open_timeout_s: float = option(10.0, "How long opening a stream may take", min=0.1)
    read_timeout_s: float = option(10.0, "How long a stream may stay silent before it counts as lost", min=0.1)
    max_corrupt_frames: int = option(25, "Undecodable frames in a row a file may have before it counts as broken",
                                   min=1)
    analysis_fps: float = option(0.0, "Most frames analysed per camera and second; the frames between are shown "
                                      "with the last boxes and the tracker predicts across them (0: as many as the "
                                      "machine manages)", min=0.0, max=1000.0, flag="analysis_fps",
                                 label="Analysis rate per camera", unit=" frames/s", zero_means="as fast as possible")
    queue_size: int = option(8, "Decoded frames buffered per file source", min=1, max=256)
    queue_max_mb: int = option(256, "Most memory (MB) the decoded frames buffered for one file source may take",
                             min=1, max=65536)
    max_frame_pixels: int = option(3840 * 2160, "Frames with more pixels than this are scaled down right after "
                                              "decoding (bounds memory and inference cost)", min=64 * 64)
    stable_after_s: float = option(5.0, "A stream must stay live this long before a drop restarts the reconnection "
                                      "back-off; shorter drops count as failed attempts", min=0.0)


@dataclass
class DetectorConfig:
    model: str = option("", "Ultralytics detector (.pt or exported .onnx); empty: bundled YOLO11n-pose",
                       flag="detector", label="Detector model", file_filter="Models (*.pt *.onnx)",
                       placeholder="bundled YOLO11n-pose")
    imgsz: int = option(1280, "Inference size in pixels; small people need about 1280, 640 is four times "
                                "cheaper", min=64, max=4096, flag="imgsz", label="Detector image size", step=32)
    confidence: float = option(0.1, "Lowest detection score kept; the tracker uses weak detections to bridge "
                                  "occlusions but opens tracks only on strong ones", min=0.0, max=1.0,
                               flag="conf", label="Detection confidence", step=0.05)
    iou: float = option(0.6, "Non-maximum-suppression IoU threshold", min=0.0, max=1.0)
    runtime: str = option("auto", "What runs the detector: 'auto' the fastest checked on this machine (prepare them "
                                  "with 'reid-desktop models prepare-detector'), or one named; a named one is exported "
                                  "and checked on first use", choices=("auto", "pytorch", "onnxruntime", "openvino",
                                                                        "tensorrt"),
                         flag="detector_runtime", label="Detector runtime")
    prepare_in_background: bool = option(True, "With runtime 'auto': prepare the faster runtimes in the background "
                                               "(low priority) the first time this detector and size run on this "
                                               "machine, and switch to the fastest without stopping the cameras",
                                         label="Prepare faster runtimes in the background")
    precision: str = option("fp32", "Arithmetic of a named runtime: fp32, fp16 (half; bf16 on CPUs that have it) or "
                                    "int8 (calibrated on the demo clip)", choices=("fp32", "fp16", "int8"),
                           flag="precision", label="Detector precision")
    motion_share: float = option(0.0, "Motion gate: skip detection on frames where less than this share of the "
                                      "picture changed since the last analysed one; they show the last boxes "
                                      "(0: off; 0.002 suits fixed cameras)", min=0.0, max=1.0, flag="motion",
                                 label="Motion gate", step=0.001, zero_means="analyse every frame")
    motion_keepalive_s: float = option(1.0, "Motion gate: a camera with people in view is analysed at least this "
                                            "often, so people standing still stay tracked", min=0.05, max=60.0)
    device: str = option("", "Torch device for the detector ('cpu', '0', ...); empty: GPU when present",
                        flag="device", label="Detector device",
                        suggestions=(("Automatic (GPU when present)", ""), ("CPU", "cpu"), ("GPU 0", "0"),
                                     ("GPU 1", "1")))


@dataclass
class TrackerConfig:
    kind: str = option("bytetrack", "Per-camera tracker from ultralytics", choices=("bytetrack", "botsort"),
                      flag="tracker")
    track_buffer: int = option(30, "Frames a lost track is kept before its id is retired", min=1)
    high_threshold: float = option(0.25, "Detections above this start or continue tracks", min=0.0, max=1.0)
    low_threshold: float = option(0.1, "Detections above this may continue existing tracks", min=0.0, max=1.0)
    new_track_threshold: float = option(0.3, "Confidence needed to open a new track", min=0.0, max=1.0)
    match_threshold: float = option(0.8, "Tracker association cost threshold", min=0.0, max=1.0)
    buffer_per_s: float = option(4.5, "Matching space per second between analysed frames: boxes are widened on every "
                                      "side by this share of their size per second the camera's analysed frames are "
                                      "more than 0.1 s apart (at most 1.0), so people keep their track at low "
                                      "analysis rates (0: off)", min=0.0, max=20.0, zero_means="plain IoU matching")
    relink_similarity: float = option(0.78, "A person's track lost for a moment, or at the picture's side, is "
                                            "continued only by a detection that looks at least this alike (colour-"
                                            "texture similarity), so someone coming in where another left does not "
                                            "take their track (0: motion alone)", min=0.0, max=1.0,
                                      zero_means="motion alone")


@dataclass
class ReidConfig:
    model: str = option("", "Re-id ONNX model [N,3,H,W]->[N,D]; empty: the default ResNet-50", flag="reid_model",
                       label="Re-id model", file_filter="ONNX models (*.onnx)", placeholder="default ResNet-50")
    weights: str = option("", "ImageNet ResNet-50 .pth to build the ImageNet default model from (no re-id "
                                "training: prefer 'reid-desktop models download')", flag="reid_weights")
    allow_download: bool = option(True, "Offer to download a re-id-trained model when none is installed (the "
                                        "window asks on first start; off for sites that stay offline)",
                                 flag="download")
    providers: str = option("auto", "ONNX Runtime execution providers",
                          choices=("auto", "cpu", "cuda", "tensorrt"), flag="providers", label="Re-id runtime")
    precision: str = option("auto", "Re-id arithmetic: auto = half precision on an NVIDIA GPU (checked against full "
                                     "precision on the demo clip), full precision on the CPU",
                            choices=("auto", "fp32", "fp16"), flag="reid_precision", label="Re-id precision")
    batch_size: int = option(32, "Crops per ONNX Runtime call", min=1, max=1024)
    embed_every: int = option(10, "Re-embed a track every this many frames", min=1, flag="embed_every")
    quality_gain: float = option(1.25, "Re-embed early when crop quality beats the best so far by this factor",
                               min=1.0)
    track_gallery_size: int = option(5, "Best embeddings kept per track", min=1, max=100)
    track_descriptor: str = option("all", "A track's appearance: the mean of all its sampled crops ('all'), or of its "
                                          "best ones only ('best')", choices=("all", "best"))
    occlusion_aware: bool = option(False, "Crops overlapped by another person's box count as worse (for the "
                                          "galleries and the thumbnails; off: no gain measured, bench/RESULTS.md)")


@dataclass
class MatcherConfig:
    threshold: float = option(0.0, "Cosine similarity needed to link a track to an identity (0: calibrated on the "
                                 "footage, starting from the model's recommended value)", min=0.0, max=1.0,
                              flag="threshold", label="Match threshold", step=0.01,
                              zero_means="calibrated on the footage")
    false_accept: float = option(0.01, "Calibration: share of people allowed to reach the threshold with someone "
                                     "else seen together with them in one camera", min=0.0001, max=0.5)
    identity_gallery_size: int = option(10, "Best embeddings kept per identity in the working set", min=1, max=100)
    active_identities: int = option(256, "Identities compared exactly on every frame (the most recently seen; "
                                       "targets and named people always); the others are found through the "
                                       "database's vector index", min=8, max=100_000)
    commit_crops: int = option(3, "Embeddings a new track needs before its identity is final; until then every better "
                                "crop decides again, and a change is corrected in the database", min=1, max=100)
    camera_links: str = option("", "Camera topology: 'A = B' cameras that overlap, 'A ~ B : 8' at least 8 s of "
                                 "walking between them; entries separated by ';'", parse=topology.parse)
    same_moment_s: float = option(0.5, "Sightings in two cameras this close in time are simultaneous: one person "
                                     "cannot be in both unless the cameras overlap", min=0.0, max=60.0)
    camera_normalisation: bool = option(True, "Take each camera's mean embedding (learned online, kept with the "
                                              "camera) out of its embeddings before matching")
    reassociation: bool = option(True, "Re-associate the tracks of the last minutes jointly in the background and "
                                       "correct their identities (never the operator's decisions)",
                                 label="Background re-association")
    reassociation_window_s: float = option(600.0, "Tracks that ended longer ago than this are no longer re-associated",
                                           min=10.0, max=86400.0)
    reassociation_interval_s: float = option(5.0, "Seconds between re-association passes", min=0.5, max=3600.0)
    place_links: bool = option(True, "Overlapping cameras: learn where one picture lies in the other, and link a "
                                     "person walking at the matching places in both however unlike the two "
                                     "cameras make them look (part of the background re-association)",
                               label="Link overlapping cameras by place")
    link_horizon_s: float = option(60.0, "Longest walk between cameras (or gap within one) the learned camera links "
                                         "consider", min=1.0, max=3600.0)
    search_reranking: bool = option(True, "Appearance search re-orders its best 100 candidates by query expansion "
                                          "and k-reciprocal re-ranking")
    link_prior: float = option(0.05, "How much the learned camera links add to (or take from) a new track's "
                                     "similarity to a person last seen in another camera (0: appearance only)",
                               min=0.0, max=1.0)


@dataclass
class StorageConfig:
    commit_interval_s: float = option(1.0, "Longest time between commits to the sightings database", min=0.0)
    thumbnail_height: int = option(128, "Height of stored best-crop thumbnails", min=16, max=1024)
    retention_days: int = option(0, "Delete sightings older than this many days, at the start and every few minutes "
                                  "(0: keep all; a followed or named person keeps their newest tracks; a shared "
                                  "database keeps to its own policy: reid-desktop db retention)", min=0, max=36500,
                                label="Keep sightings for", unit=" days", zero_means="keep everything")
    max_database_gb: float = option(0.0, "Delete the oldest sightings when the database holds more than this many GB "
                                       "(0: no limit)", min=0.0)
    sightings_per_second: float = option(2.0, "Positions stored per track and second, besides its first and last and "
                                            "those with an embedding or a better picture; targets: every frame "
                                            "(0: every frame for everyone)", min=0.0)
    embeddings_per_track: int = option(8, "Best embeddings stored per track; weaker ones give way", min=1, max=1000)


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

    def value(self, key: str) -> Any:
        """The value of a dotted key (``detector.imgsz``)."""
        section, name = key.split(".", 1)
        return getattr(getattr(self, section), name)


def sections() -> dict[str, type]:
    return {f.name: typing.get_type_hints(PipelineConfig)[f.name] for f in dataclasses.fields(PipelineConfig)}


def setting(key: str) -> options.Setting:
    """The declaration of a dotted key, for forms that show it."""
    section, name = key.split(".", 1)
    return options.setting(sections()[section], name)


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
            raise options.unknown("setting", key, [f"{s}.{x.name}" for s, c in sections().items()
                                                   for x in options.settings_of(c)])
    known = sections()
    updated: dict[str, Any] = {}
    for section, items in nested.items():
        if section not in known:
            raise options.unknown("settings section", section, known)
        updated[section] = options.replace(getattr(config, section), items, section)
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
    for section, cls in sections().items():
        lines += [f"\n[{section}]", *options.toml_lines(cls)]
    return "\n".join(lines) + "\n"


def add_flags(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """The command-line flags declared by the settings (those of the dotted keys ``only``, or all).

    An absent flag leaves the settings file's value alone (its help names the setting it overrides).
    """
    wanted = set(only) if only is not None else None
    for section, cls in sections().items():
        skip = [s.name for s in options.settings_of(cls) if wanted is not None and f"{section}.{s.name}" not in wanted]
        options.add_flags(parser, cls, f"setting.{section}.", only_flagged=True, key_prefix=f"{section}.", skip=skip)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted overrides for the flags given on the command line."""
    return {f"{section}.{name}": value for section, cls in sections().items()
            for name, value in options.flag_values(args, cls, f"setting.{section}.").items()}
