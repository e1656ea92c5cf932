"""Drawn-box fidelity in the window's own display path: ``python bench/box_fidelity.py [--seconds 60]``.

The real window runs the demo (two looping cameras at the clip's pace, analysis at whatever this machine manages)
on an offscreen screen. Every half second each feed's displayed picture and the boxes drawn on it (where the
window paints them, motion-shifted) are kept. Afterwards plain Ultralytics finds the people on those same pictures:

- coverage: of the people it finds (score >= 0.5), the share that carry a drawn box (IoU >= 0.5); a person who
  was not there half a second earlier (nobody within their height of their place, or the looping clip started
  again) is not counted yet: they have 0.5 s to get a box;
- precision: of the drawn boxes, the share that lie on a person it finds (any score >= 0.25, IoU >= 0.5).

``--runtime`` picks the detector (``pytorch``: a first start; ``openvino``: after preparation). Figures only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("REID_DESKTOP_DATA_DIR", str(ROOT / "bench" / ".cache"))  # prepared runtimes kept
os.environ.setdefault("REID_DESKTOP_BACKGROUND_PREPARE", "0")  # the runtime measured is the one asked for

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from reid_desktop.core.capture.sources import DEMO_LINKS, demo_sources  # noqa: E402
from reid_desktop.core.config import DetectorConfig  # noqa: E402
from reid_desktop.core.types import Frame  # noqa: E402
from reid_desktop.core.vision.detection import YoloDetector  # noqa: E402
from reid_desktop.core.vision.detector_runtimes import box_iou  # noqa: E402
from reid_desktop.ui.feeds import FeedView  # noqa: E402
from reid_desktop.ui.main_window import MainWindow  # noqa: E402
from reid_desktop.ui.settings import AppSettings  # noqa: E402

SAMPLE_MS = 500
GRACE_S = 0.5  # a person who just appeared has this long to get a box
FOUND = 0.5  # the reference's people that must carry a box
PRESENT = 0.25  # the reference's boxes a drawn box may lie on


@dataclass
class Sample:
    picture: np.ndarray
    media_time: float | None  # its place in the file: going back, the looping demo started again
    drawn: np.ndarray  # N x 4, where the window draws them on this picture


@dataclass
class Fidelity:
    covered: int = 0
    people: int = 0
    on_person: int = 0
    drawn: int = 0
    excused: int = 0

    @property
    def coverage(self) -> float:
        return self.covered / self.people if self.people else float("nan")

    @property
    def precision(self) -> float:
        return self.on_person / self.drawn if self.drawn else float("nan")


@dataclass
class Recorder:
    """Keeps each feed's displayed picture (wrapping ``show_picture``) and samples it with its drawn boxes."""

    feeds: list[FeedView]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    analysed: dict[str, int] = field(default_factory=dict)
    _given: dict[str, deque[Frame]] = field(default_factory=dict)  # the pictures given to each feed, newest last

    def __post_init__(self) -> None:
        for feed in self.feeds:
            self.samples[feed.source_id] = []
            self._wrap(feed)

    def _wrap(self, feed: FeedView) -> None:
        show_picture, show_result = feed.show_picture, feed.show_result

        def picture(frame: Frame) -> None:
            self._given.setdefault(feed.source_id, deque(maxlen=100)).append(frame)
            show_picture(frame)

        def result(result: object) -> None:
            self.analysed[feed.source_id] = self.analysed.get(feed.source_id, 0) + 1
            show_result(result)  # type: ignore[arg-type]

        feed.show_picture = picture  # type: ignore[method-assign]
        feed.show_result = result  # type: ignore[method-assign]

    def sample(self) -> None:
        for feed in self.feeds:  # the picture on screen now (it may have waited for its analysis)
            picture = next((f for f in self._given.get(feed.source_id, ()) if f.timestamp == feed.picture_time), None)
            if picture is None or feed.result is None:
                continue
            drawn = np.array([box for _, box in feed.shown_persons()], np.float32).reshape(-1, 4)
            self.samples[feed.source_id].append(Sample(picture.image, picture.media_time, drawn))


def _was_there(person: np.ndarray, before: np.ndarray) -> bool:
    """Someone was near this person's place half a second earlier (walking people move less than their height)."""
    if not len(before):
        return False
    centre = (person[:2] + person[2:4]) / 2
    centres = (before[:, :2] + before[:, 2:4]) / 2
    return bool((np.linalg.norm(centres - centre, axis=1) <= person[3] - person[1]).any())


def score(samples: list[Sample], reference: YoloDetector) -> Fidelity:
    """Coverage and precision of one feed's samples (in order, half a second apart)."""
    out = Fidelity()
    before = np.zeros((0, 5), np.float32)
    last_media_time = None
    for sample in samples:
        if None not in (sample.media_time, last_media_time) and sample.media_time < last_media_time:
            before = before[:0]  # the file started again: everyone in it appears anew
        last_media_time = sample.media_time
        found = reference.detect([sample.picture])[0].boxes
        people = found[found[:, 4] >= FOUND]
        for person in people:
            if not _was_there(person, before):
                out.excused += 1
                continue
            out.people += 1
            out.covered += bool(len(sample.drawn) and box_iou(person[None, :4], sample.drawn).max() >= 0.5)
        present = found[found[:, 4] >= PRESENT, :4]
        out.drawn += len(sample.drawn)
        if len(sample.drawn) and len(present):
            out.on_person += int((box_iou(sample.drawn, present).max(axis=1) >= 0.5).sum())
        before = people
    return out


def record(seconds: float, pipeline: dict[str, object], workdir: Path) -> Recorder:
    """Run the window on the demo for ``seconds`` (after its first analysed frame) and sample it."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = AppSettings(database=str(workdir / "sightings.sqlite"), pipeline=dict(pipeline))
    window = MainWindow(settings, workdir / "settings.json", demo_sources(), session_links=DEMO_LINKS)
    window.resize(1400, 860)
    window.show()
    recorder = Recorder([window.grid.feeds["demo-left"], window.grid.feeds["demo-right"]])
    timer = QTimer()
    timer.timeout.connect(recorder.sample)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not all(f.result is not None for f in recorder.feeds):
        app.processEvents()
        time.sleep(0.01)
    timer.start(SAMPLE_MS)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        app.processEvents()
        time.sleep(0.005)
    timer.stop()
    recorder.analysed = {k: round(v / seconds, 2) for k, v in recorder.analysed.items()}  # per second
    window.close()
    while window.engine.running:
        app.processEvents()
        time.sleep(0.01)
    return recorder


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runtime", default="pytorch", help="detector runtime (auto, pytorch, openvino, ...)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other setting")
    args = parser.parse_args()
    pipeline: dict[str, object] = {"detector.runtime": args.runtime, "detector.precision": args.precision}
    pipeline.update(dict(item.split("=", 1) for item in args.set))
    with tempfile.TemporaryDirectory() as tmp:
        recorder = record(args.seconds, pipeline, Path(tmp))
    reference = YoloDetector(DetectorConfig(runtime="pytorch"))
    print(f"drawn-box fidelity, window demo, {args.seconds:.0f} s, detector {args.runtime} {args.precision}, "
          f"{pipeline}")
    print(f"  {'camera':<11} {'analysed/s':>10} {'samples':>7} {'coverage':>9} {'people':>6} {'precision':>9} "
          f"{'drawn':>5}")
    for source_id, samples in recorder.samples.items():
        fidelity = score(samples, reference)
        print(f"  {source_id:<11} {recorder.analysed.get(source_id, 0):10.2f} {len(samples):7d} "
              f"{fidelity.coverage:9.1%} {fidelity.people:6d} {fidelity.precision:9.1%} {fidelity.drawn:5d}")


if __name__ == "__main__":
    main()
