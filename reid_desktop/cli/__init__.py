"""The headless command line: ``reid-desktop process | node | search | models | db | config``.

Exit status of ``process``: 0 all sources processed; 1 some sources failed, the others were
processed; 2 bad command line or settings (or the database is in use or not ours); 3 a model could
not be loaded; 4 every source failed; 5 an internal error (a bug: the log has the traceback);
6 the database refused some sightings until the end (full, locked, damaged); 130 interrupted.

Stream passwords never need to be on the command line (``ps`` and shell history show it): give the
user in the URL and the password in ``REID_DESKTOP_PASSWORD_<NAME>`` or ``REID_DESKTOP_PASSWORD``,
or save the camera in the window (its OS keyring entry is used).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm

from reid_desktop import __version__
from reid_desktop.cli import db as db_cli
from reid_desktop.cli import models as models_cli
from reid_desktop.cli.common import (
    EXIT_ALL_FAILED,
    EXIT_CRASH,
    EXIT_INTERRUPTED,
    EXIT_MODEL,
    EXIT_NOT_SAVED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
)
from reid_desktop.cli.common import where as _where
from reid_desktop.core import config as config_mod
from reid_desktop.core import logs
from reid_desktop.core.capture.sources import DEMO_LINKS, SourceKind, SourceSpec, demo_sources, frame_count
from reid_desktop.core.credentials import complete_url
from reid_desktop.core.engine.engine_setup import assembled_pipeline
from reid_desktop.core.engine.node import load_node_file
from reid_desktop.core.engine.runner import PipelineControl, run
from reid_desktop.core.errors import ModelError
from reid_desktop.core.redaction import redact_text
from reid_desktop.core.store.database_url import (
    DatabaseUrlError,
    is_postgres_url,
    parse_postgres_url,
)
from reid_desktop.core.store.exports import export_csv, export_json
from reid_desktop.core.store.history import open_store
from reid_desktop.core.store.interface import HistoryStore, StorageHealth, StoreError
from reid_desktop.core.store.live_boxes import LivePublisher
from reid_desktop.core.store.node_health import NodeHealth
from reid_desktop.core.store.pg_schema import PgSchemaError
from reid_desktop.core.store.shared_changes import Heard, TargetChanged, TargetsNow
from reid_desktop.core.types import FrameResult, PipelineInfo, SourceState, SourceStatus, TargetSighted
from reid_desktop.core.vision.detector_preparation import DetectorPreparation
from reid_desktop.core.vision.models import load_embedder
from reid_desktop.core.wording import count
from trainer.default_model import default_embedder

log = logging.getLogger("reid_desktop")

_NAMED_SOURCE = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)=(?P<uri>.+)$")


def _parse_sources(values: Sequence[str], demo: bool) -> list[SourceSpec]:
    """The sources named on the command line; ``demo`` puts the window's two demo cameras first (processed once,
    as fast as the machine goes, unless ``--loop``)."""
    raw = list(values)
    specs = [dataclasses.replace(spec, loop=False, realtime=False) for spec in demo_sources()] if demo else []
    seen: dict[str, int] = {spec.source_id: 1 for spec in specs}
    for value in raw:
        match = _NAMED_SOURCE.match(value)
        spec = SourceSpec(match["uri"], match["name"]) if match else SourceSpec(value)
        if spec.source_id in seen:  # the same clip twice: keep both, as distinct cameras
            seen[spec.source_id] += 1
            spec = SourceSpec(spec.uri, f"{spec.source_id}#{seen[spec.source_id]}")
        seen[spec.source_id] = 1
        if spec.kind is SourceKind.STREAM:
            spec = SourceSpec(complete_url(spec.source_id, spec.uri), spec.name)
        specs.append(spec)
    return specs


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (declared in :mod:`reid_desktop.core.config`) and with ``--set KEY=VALUE``."""
    values = config_mod.flag_overrides(args)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise config_mod.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = value.strip()
    return values


def _fmt_time(seconds: float | None, media: float | None) -> str:
    if media is not None:
        minutes, secs = divmod(media, 60.0)
        return f"{int(minutes):02d}:{secs:05.2f}"
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


class _Progress:
    """What ``process`` shows while it runs (a progress bar, one line per problem) and keeps for its summary."""

    def __init__(self, specs: Sequence[SourceSpec], total: int, quiet: bool) -> None:
        self.bar = tqdm(total=total or None, unit="frame", desc="processing", disable=quiet, dynamic_ncols=True,
                        file=sys.stderr)
        self.info: PipelineInfo | None = None
        self.final: dict[str, SourceStatus] = {}  # the last lasting state of each source
        self.frames = dict.fromkeys((s.source_id for s in specs), 0)
        self.started = time.monotonic()

    def _say(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def handle(self, event: object) -> None:
        match event:
            case FrameResult():
                self.frames[event.source_id] += 1
                self.bar.update(1)
            case PipelineInfo() if self.info is not None and self.info.detector != event.detector:
                self.info = event
                self._say(f"detector: switched to {event.detector} without stopping (prepared in the background)")
            case PipelineInfo():
                self.info = event
                self._say(f"detector: {event.detector} ({event.detector_device}); re-id: {event.embedder} on "
                          f"{event.provider} ({event.embedder_precision.upper()}); "
                          f"match threshold {event.match_threshold:.2f}")
                for warning in event.warnings:
                    self._say(f"WARNING: {warning}")
            case SourceStatus():
                if event.state.is_final or event.state is SourceState.RECONNECTING:
                    self.final[event.source_id] = event
                if event.state is SourceState.FAILED:
                    self._say(f"error: source {event.source_id}: {event.reason}")
                elif event.state is SourceState.RECONNECTING:
                    self._say(f"warning: source {event.source_id}: reconnecting ({event.reason})")
                elif event.state is SourceState.ENDED and event.reason not in ("", "end of file"):
                    self._say(f"warning: source {event.source_id}: {event.reason}")
            case StorageHealth():
                self._say(f"error: {event.message}" if not event.ok else "database: saving sightings again")
            case DetectorPreparation():
                self._say(("warning: " if event.failed else "") + event.text)
            case TargetSighted():
                where = f" at {_fmt_time(None, event.media_time)}" if event.media_time is not None else ""
                self._say(f"alert: followed #{event.identity_id} on {event.source_id}{where}")

    def failed(self) -> list[str]:
        return [name for name, status in self.final.items() if status.state is SourceState.FAILED]


def _frames_to_process(specs: Sequence[SourceSpec], cfg: config_mod.PipelineConfig, max_frames: int | None) -> int:
    """The progress bar's total: known for files that are not looped (0: unknown)."""
    total = 0
    for spec in specs:
        if spec.kind is SourceKind.FILE and not cfg.sources.loop and Path(spec.uri).is_file():
            frames = frame_count(spec.uri)
            total += min(frames, max_frames) if max_frames else frames
    return total


def _print_summary(store: HistoryStore, progress: _Progress, sources: int) -> None:
    elapsed = time.monotonic() - progress.started
    info = progress.info
    identities = store.identities(info.run_id if info else None)
    processed = sum(progress.frames.values())
    print(f"\nProcessed {count(processed, 'frame')} from {count(sources, 'source')} in {elapsed:.1f} s "
          f"({processed / max(elapsed, 1e-9):.1f} frames/s); database: {_where(store)}")
    if info is not None and info.embedder_is_fallback:
        print("NOTE: identities below come from the colour-texture fallback descriptor, not a neural re-id model.")
    print(f"Identities found: {len(identities)}")
    if identities:
        print(f"  {'id':>4}  {'sightings':>9}  {'first seen':>19}  {'last seen':>19}  cameras")
        for ident in identities:
            print(f"  {ident.identity_id:>4}  {ident.sightings:>9}  "
                  f"{_fmt_time(ident.first_seen, ident.first_media_time):>19}  "
                  f"{_fmt_time(ident.last_seen, ident.last_media_time):>19}  {', '.join(ident.cameras)}")


def cmd_process(args: argparse.Namespace) -> int:
    if not args.sources and not args.demo:
        print("error: give at least one source (file, URL or webcam index) or --demo", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = config_mod.load(Path(args.config) if args.config else None, _overrides(args))
        if args.demo:  # the demo's cameras share a strip of ground, as in the window
            links = "; ".join(filter(None, (cfg.matcher.camera_links, DEMO_LINKS)))
            cfg = config_mod.apply(cfg, {"matcher.camera_links": links})
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    specs = _parse_sources(args.sources, args.demo)
    try:
        store = open_store(args.db, cfg.storage.commit_interval_s,
                           embeddings_per_track=cfg.storage.embeddings_per_track)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    progress = _Progress(specs, _frames_to_process(specs, cfg, args.max_frames), args.quiet)
    interrupted = False
    control = PipelineControl()
    try:
        embedder, warnings = default_embedder(cfg.reid)
        with assembled_pipeline(cfg, store, control, embedder, warnings) as pipeline:
            for event in run(specs, cfg, store, control, max_frames=args.max_frames, pipeline=pipeline):
                progress.handle(event)
    except (ModelError, StoreError) as exc:  # no model; or the database refused the run (locked, full)
        progress.bar.close()
        print(f"error: {_where(store)}: {exc}" if isinstance(exc, StoreError) else f"error: {exc}", file=sys.stderr)
        store.close()
        return EXIT_MODEL if isinstance(exc, ModelError) else EXIT_USAGE
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # a bug: the store is closed (flushed, unlocked) before saying so
        progress.bar.close()
        store.close()
        return _internal_error(exc, "processing stopped")
    finally:
        progress.bar.close()
    _print_summary(store, progress, len(specs))
    for path, writer in ((args.export_csv, export_csv), (args.export_json, export_json)):
        if path:
            print(f"Exported {count(writer(store, Path(path)), 'sighting')} to {path}")
    unsaved, health = store.pending, store.health
    store.close()
    if unsaved or health.dropped:
        print(f"error: {unsaved + health.dropped} sightings could not be saved ({health.message or 'refused'})",
              file=sys.stderr)

    failed = progress.failed()
    if interrupted:
        return EXIT_INTERRUPTED
    if unsaved or health.dropped:
        return EXIT_NOT_SAVED
    if failed and len(failed) == len(specs):
        return EXIT_ALL_FAILED
    if failed:
        return EXIT_SOME_FAILED
    return EXIT_OK


def cmd_node(args: argparse.Namespace) -> int:
    """A processing node: the cameras of ``--config`` into the shared database until SIGTERM (or Ctrl+C)."""
    if not is_postgres_url(args.db):
        print("error: a node writes to a shared PostgreSQL database: --db postgresql://user@host[:port]/database "
              "(for one machine and a SQLite file, use 'reid-desktop process')", file=sys.stderr)
        return EXIT_USAGE
    try:
        location = parse_postgres_url(args.db)
        node = load_node_file(Path(args.config), _overrides(args))
    except (DatabaseUrlError, config_mod.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = args.name or node.name
    cfg = node.config
    control = PipelineControl()

    def stop(signum: int, frame: object) -> None:
        """SIGTERM (systemd's stop) or Ctrl+C: the run ends after the frame in progress. Not an exception raised
        wherever the main thread is: one inside a native library's import or start leaves it half made, and the
        process aborted at exit ('terminate called without an active exception'). Asked twice: stop now."""
        if control.cancelled:
            raise KeyboardInterrupt
        log.warning("node %s: stopping", name)
        control.cancel("stopped")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    health = NodeHealth(location, name)
    try:
        for spec in node.cameras:
            health.add_camera(spec)
        health.start()  # first: it refuses a name that is running elsewhere, and closes this node's crashed runs
        store = open_store(location, cfg.storage.commit_interval_s,
                           embeddings_per_track=cfg.storage.embeddings_per_track, node=name)
    except (StoreError, PgSchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log.warning("node %s: %d cameras into %s", name, len(node.cameras), location)

    def applied(change: Heard) -> None:  # a target set or dropped on any station: now followed or not
        if isinstance(change, TargetChanged):
            health.follows(change.identity_id, change.is_target)
        elif isinstance(change, TargetsNow):
            health.follows_exactly(change.identity_ids)

    live = LivePublisher(location, name, {spec.source_id: spec.region for spec in node.cameras})
    live.start()  # stations watching these cameras draw the boxes it sends
    status = EXIT_OK
    try:
        embedder, warnings = default_embedder(cfg.reid)
        with assembled_pipeline(cfg, store, control, embedder, warnings, heard=applied) as pipeline:
            for event in run(node.cameras, cfg, store, control=control, pipeline=pipeline):
                if isinstance(event, FrameResult):
                    health.frame(event.source_id)
                    live.publish(event)
                elif isinstance(event, SourceStatus):
                    health.camera_state(event.source_id, event.state.value)
    except KeyboardInterrupt:
        log.warning("node %s: stopped at once", name)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = EXIT_MODEL
    except Exception as exc:
        status = _internal_error(exc, f"node {name} stopped")
    finally:
        live.stop()
        store.close()
        health.stop("stopped" if status == EXIT_OK else "failed")
    return status


def cmd_search(args: argparse.Namespace) -> int:
    try:
        cfg = config_mod.load(Path(args.config) if args.config else None, _overrides(args))
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    image = cv2.imread(args.image) if Path(args.image).is_file() else None
    if image is None:
        print(f"error: cannot read image {args.image} (missing or not an image)", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = open_store(args.db, readonly=True)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        embedder, warnings = load_embedder(cfg.reid)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    with store:
        hits = store.search(embedder.embed([image])[0], embedder.key, args.k)
        if not hits:
            used = sorted({r["model_key"] for r in store.runs()})
            print(f"No sightings in {_where(store)} were indexed with {embedder.key}; they use: "
                  f"{', '.join(used) or '-'}")
            return EXIT_OK
        print(f"Top {len(hits)} sightings like {Path(args.image).name} ({embedder.name}):")
        print(f"  {'score':>5}  {'sighting':>8}  {'identity':>8}  {'time':>19}  source")
        for hit in hits:
            s = hit.sighting
            print(f"  {hit.score:5.3f}  {s.id:>8}  {s.identity_id if s.identity_id is not None else '-':>8}  "
                  f"{_fmt_time(s.timestamp, s.media_time):>19}  {s.source} (frame {s.frame_index})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reid-desktop", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"reid-desktop {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("process", help="run the pipeline headless on files, streams or webcams",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="video file, rtsp/http URL or webcam index; NAME=SOURCE names the camera")
    p.add_argument("--demo", action="store_true", help="add the window's demo: two cameras cut from the bundled "
                                                       "clip (demo-left, demo-right), sharing a strip of ground")
    p.add_argument("--db", help="sightings database: a SQLite file (default: per-user data folder) or "
                                "postgresql://user@host[:port]/database (password: PGPASSWORD, ~/.pgpass or keyring)")
    p.add_argument("--config", help="settings file (TOML); see 'reid-desktop config'")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. detector.imgsz=960")
    config_mod.add_flags(p)
    p.add_argument("--max-frames", type=int, help="stop each source after N frames")
    p.add_argument("--export-csv", help="write all sightings to this CSV file")
    p.add_argument("--export-json", help="write identities, sightings and runs to this JSON file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_process)

    n = sub.add_parser("node", help="a processing node: run the cameras of a node file into a shared PostgreSQL "
                                    "database until stopped (SIGTERM)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    n.add_argument("--db", required=True, help="postgresql://user@host[:port]/database (password: PGPASSWORD, "
                                               "~/.pgpass or the OS keyring)")
    n.add_argument("--config", required=True, help="node file (TOML): [node] name, [[cameras]] name/uri/region/loop/"
                                                   "realtime, and any settings sections")
    n.add_argument("--name", help="this node's name in the database (default: [node] name, else the host name)")
    n.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting")
    n.set_defaults(func=cmd_node)

    se = sub.add_parser("search", help="appearance search: stored sightings that look like a person image",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    se.add_argument("image", help="a picture of one person (a crop), e.g. a snapshot from another camera")
    se.add_argument("--db", help="sightings database: a SQLite file (default: per-user data folder) or "
                                 "postgresql://user@host[:port]/database")
    se.add_argument("-k", type=int, default=10, help="how many sightings to list")
    se.add_argument("--config", help="settings file (TOML)")
    se.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting")
    config_mod.add_flags(se, only=("reid.model", "reid.weights", "reid.allow_download", "reid.providers"))
    se.set_defaults(func=cmd_search)

    models_cli.add_parser(sub)
    db_cli.add_parser(sub)

    cf = sub.add_parser("config", help="print every setting with its default and meaning (TOML)")
    cf.set_defaults(func=lambda args: print(config_mod.describe(), end="") or EXIT_OK)
    return parser


def _internal_error(exc: Exception, what: str) -> int:
    """A bug: one line for the operator, the traceback in the log for the report; its own exit status."""
    log.error("internal error", exc_info=exc)
    print(f"error: internal error, {what}: {type(exc).__name__}: {redact_text(str(exc))} (please report it with "
          "the traceback above)", file=sys.stderr)
    return EXIT_CRASH


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logs.configure(level, console_format="%(levelname)s %(name)s: %(message)s")
    # the pipeline reports these itself, once, in plain words
    logging.getLogger("reid_desktop.core.capture.sources").setLevel(max(level, logging.ERROR))
    logging.getLogger("reid_desktop.core.vision.models").setLevel(max(level, logging.ERROR))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    configure_logging(args.verbose)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: never the exit status of an ordinary outcome
        return _internal_error(exc, f"{args.command} stopped")
    return result
