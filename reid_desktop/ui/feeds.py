"""The video wall: one :class:`FeedView` per source in a :class:`FeedGrid`.

A feed keeps the newest :class:`FrameResult` it was given (with the one before it, and the last one before a
file went back, for the pictures between them) and paints on the GUI thread: the picture letterboxed into the
widget, every person's box in the colour of its global identity with ``#id`` (thicker and labelled when it is a
target), the camera's name, its FPS and its state. Clicks are mapped back to picture coordinates to find the
person under the cursor.
"""

from __future__ import annotations

import colorsys
import math
import time
from collections import deque

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QResizeEvent
from PySide6.QtWidgets import QGridLayout, QSizePolicy, QWidget

from reid_desktop.core.types import Frame, FrameResult, SourceState, SourceStatus, TrackedPerson
from reid_desktop.core.vision.crops import crop

TARGET_COLOUR = QColor(255, 40, 40)
PICTURES_STALE_S = 1.0  # without display pictures for this long, a feed shows the analysed frames
CARRY_FORWARD_S = 1.0  # boxes move along their track's motion for at most this long after the analysis
MAX_DISPLAY_DELAY_S = 2.0  # in step with the analysis: pictures wait at most this long for their boxes
PICTURES_HELD = 40  # pictures waiting to be shown, per feed (scaled to the cell: a few MB)
SMOOTHING = 0.2  # weight of a new measurement of the analysis' lag and interval
ANALYSIS_LAG_S = 0.5  # the feed says how old the drawn analysis is beyond this
Placed = tuple[TrackedPerson, np.ndarray]  # a person of an analysis, and where they are on the shown picture
_STATE_COLOURS = {
    SourceState.CONNECTING: QColor(230, 180, 30), SourceState.LIVE: QColor(60, 200, 90),
    SourceState.RECONNECTING: QColor(240, 140, 20), SourceState.ENDED: QColor(150, 150, 150),
    SourceState.FAILED: QColor(230, 60, 60),
}


def identity_colour(identity_id: int | None) -> QColor:
    """A stable, well-separated colour per identity (golden-ratio hue steps)."""
    if identity_id is None:
        return QColor(200, 200, 200)
    hue = (identity_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return QColor(int(r * 255), int(g * 255), int(b * 255))


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def to_qimage(image_bgr: np.ndarray) -> QImage:
    """A deep copy, so the QImage does not depend on the numpy buffer's lifetime."""
    height, width = image_bgr.shape[:2]
    data = np.ascontiguousarray(image_bgr)
    return QImage(data.data, width, height, data.strides[0], QImage.Format.Format_BGR888).copy()


class FeedView(QWidget):
    """One camera. Emits what the operator clicked; never does any processing itself."""

    person_clicked = Signal(str, object, object)  # source id, TrackedPerson, BGR crop (np.ndarray)
    person_context_requested = Signal(str, object, object, object)  # ... plus the global QPoint
    maximise_toggled = Signal(str)
    picture_resized = Signal()  # the first picture, or pictures of another size: the wall may lay out anew

    def __init__(self, source_id: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source_id = source_id
        self.title = title
        self.result: FrameResult | None = None  # the newest analysis: persons, identities, targets
        self._image: QImage | None = None  # the newest picture: decoded at the camera's rate, or the analysed one
        self._frame_size: QSize | None = None  # the camera's frame size, in which boxes are given
        self._picture_time: float | None = None  # when the shown picture was captured
        self._picture_media_time: float | None = None  # its place in the file (None for live cameras)
        self._pictures_at = -PICTURES_STALE_S  # when the last picture came (monotonic)
        self._velocity: dict[int, np.ndarray] = {}  # box motion per track, pixels per second
        self._previous_velocity: dict[int, np.ndarray] = {}  # the same as of the previous analysis
        self._previous: FrameResult | None = None  # the analysis before ``result``: boxes move between the two
        self._ended: tuple[FrameResult, dict[int, np.ndarray]] | None = None  # the last analysis (and motion) before
        # the file went back: it still stands for the pictures before the jump that are shown after it
        self.in_step = True  # pictures wait for the analysis of their moment, so boxes stay on the people
        self._held: deque[tuple[float, float | None, QImage, tuple[int, ...]]] = deque(maxlen=PICTURES_HELD)
        self._lag_s: float | None = None  # capture to analysis result, smoothed
        self._interval_s = 0.0  # between analysed frames, smoothed
        self.state = SourceState.CONNECTING
        self.reason = ""
        self.paused = False
        self.names: dict[int, str] = {}  # target labels to draw next to the identity number
        self.target_ids: set[int] = set()  # followed now: for a picture the engine no longer updates
        self.display_latency_s: float | None = None
        self._arrivals: deque[float] = deque(maxlen=30)  # analysed frames
        self._picture_arrivals: deque[float] = deque(maxlen=30)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setToolTip("Click a person to follow them across cameras; right-click for more; double-click to "
                        "maximise")

    @property
    def picture_aspect(self) -> float | None:
        size = self._frame_size
        return size.width() / size.height() if size is not None and size.height() else None

    def sizeHint(self) -> QSize:
        return QSize(480, 360)

    # -- data in -----------------------------------------------------------------------------------

    def show_result(self, result: FrameResult) -> None:
        """A new analysis: its boxes are drawn on the pictures of its moment, moving from where the previous
        analysis put each person (or carried along their motion on newer pictures)."""
        elapsed = result.timestamp - self.result.timestamp if self.result is not None else 0.0
        if elapsed > 0:
            self._interval_s = elapsed if not self._interval_s else self._interval_s + SMOOTHING * (
                elapsed - self._interval_s)
        lag = max(0.0, time.time() - result.timestamp)
        self._lag_s = lag if self._lag_s is None else self._lag_s + SMOOTHING * (lag - self._lag_s)
        last = self.result
        if last is not None and result.media_time is not None and last.media_time is not None \
                and result.media_time < last.media_time:  # the file went back (looped, or sought)
            self._ended, self._previous, self._velocity = (last, self._velocity), None, {}  # nobody moves across
        else:
            before = {p.track_id: p.box[:4] for p in last.persons} if last is not None else {}
            self._previous_velocity = self._velocity
            self._velocity = {p.track_id: (p.box[:4] - before[p.track_id]) / elapsed for p in result.persons
                              if p.track_id in before and elapsed > 0}
            self._previous = last if elapsed > 0 else None
        self.result = result
        if time.monotonic() - self._pictures_at >= PICTURES_STALE_S:  # no display pictures: show the analysed one
            self._set_picture(to_qimage(result.image), result.image.shape, result.timestamp, result.media_time)
        self._arrivals.append(time.monotonic())
        self.update()

    def show_picture(self, frame: Frame) -> None:
        """A decoded picture at the camera's own rate, scaled down to the cell (boxes stay in frame pixels); in step
        with the analysis it is held until the analysis of its moment is due (:attr:`display_delay_s`)."""
        image = frame.image
        width = max(1, round(self.width() * self.devicePixelRatioF()))
        if image.shape[1] > width * 1.25:
            height = max(1, round(image.shape[0] * width / image.shape[1]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        self._pictures_at = time.monotonic()
        self._held.append((frame.timestamp, frame.media_time, to_qimage(image), frame.image.shape))
        self.tick()

    @property
    def display_delay_s(self) -> float:
        """How long pictures wait: as long as the analysis takes to come back plus the time between two analysed
        frames, so every shown picture lies between two analyses (whose boxes are interpolated); none while there
        is no analysis to wait for, or when that would be longer than :data:`MAX_DISPLAY_DELAY_S`."""
        if (not self.in_step or self.result is None or self._lag_s is None or self.paused
                or self.state is not SourceState.LIVE):
            return 0.0
        delay = self._lag_s + self._interval_s
        return delay if delay <= MAX_DISPLAY_DELAY_S else 0.0

    def tick(self) -> None:
        """Show the newest held picture that is due (the window calls this at its display rate)."""
        due = time.time() - self.display_delay_s
        shown = None
        while self._held and self._held[0][0] <= due:
            shown = self._held.popleft()
        if shown is None:
            return
        captured, media_time, image, shape = shown
        self._set_picture(image, shape, captured, media_time)
        self._picture_arrivals.append(time.monotonic())
        self.update()

    def _set_picture(self, image: QImage, shape: tuple[int, ...], captured: float, media_time: float | None) -> None:
        size = QSize(shape[1], shape[0])
        resized = size != self._frame_size
        self._image, self._frame_size, self._picture_time = image, size, captured
        self._picture_media_time = media_time
        self.display_latency_s = time.time() - captured  # capture to now, when it is painted
        if resized:
            self.picture_resized.emit()

    @property
    def picture_time(self) -> float | None:
        """When the shown picture was captured (wall clock)."""
        return self._picture_time

    @property
    def analysis_age_s(self) -> float | None:
        """How much older the drawn analysis is than the picture under it."""
        if self.result is None or self._picture_time is None:
            return None
        return max(0.0, self._picture_time - self.result.timestamp)

    def shown_persons(self) -> list[Placed]:
        """The persons on the shown picture and where they are on it.

        A picture taken between two analyses shows each person between where the two put them; one found only on
        the newer from halfway there (a tentative track, found on that analysis alone, from the analysis on), one
        found only on the older until halfway. A picture newer than the last analysis shows its persons moved along
        their track's motion. A picture from before the file went back (a looping file's end, shown after its start
        was analysed) shows the last analysis before the jump, carried along the same way. None are known for a
        picture older than the first analysis of a file's new stretch.
        """
        shown, latest, previous = self._picture_time, self.result, self._previous
        if latest is None:
            return []
        if shown is None or not self.in_step or shown >= latest.timestamp:
            return self._carried(latest, self._velocity)
        if previous is not None:
            return self._between(previous, latest, shown)
        place, latest_place = self._picture_media_time, latest.media_time
        if self._ended is not None and place is not None and latest_place is not None and place > latest_place:
            return self._carried(*self._ended)
        return []

    def _carried(self, result: FrameResult, velocity: dict[int, np.ndarray]) -> list[Placed]:
        """The persons of ``result`` moved along their motion to the shown picture (for at most
        :data:`CARRY_FORWARD_S`), up to its edges: one carried mostly out of it has walked out of view. A picture
        older than the analysis shows them where it found them."""
        shown = self._picture_time
        age = 0.0 if shown is None else min(max(shown - result.timestamp, 0.0), CARRY_FORWARD_S)
        height, width = result.image.shape[:2]
        here = []
        for person in result.persons:
            box = person.box[:4].astype(np.float64)
            moving = velocity.get(person.track_id)
            if moving is None or not age:
                here.append((person, box))
                continue
            moved = box + moving * age
            inside = np.clip(moved, 0, [width, height, width, height])
            if _area(inside) >= 0.5 * _area(moved):
                here.append((person, inside))
        return here

    def _between(self, previous: FrameResult, latest: FrameResult, shown: float) -> list[Placed]:
        share = min(max((shown - previous.timestamp) / (latest.timestamp - previous.timestamp), 0.0), 1.0)
        before = {p.track_id: p for p in previous.persons}
        here = []
        for person in latest.persons:
            box = person.box[:4].astype(np.float64)
            earlier = before.pop(person.track_id, None)
            if earlier is not None:
                here.append((person, earlier.box[:4] + (box - earlier.box[:4]) * share))
            elif share >= 0.5 and not person.tentative:  # one detection so far: nothing says where it was before
                here.append((person, box))
        if share < 0.5:  # not on the newer analysis (gone, or not found there): shown until halfway, moving on
            here.extend(p for p in self._carried(previous, self._previous_velocity) if p[0].track_id in before)
        return here

    def set_status(self, status: SourceStatus) -> None:
        self.state, self.reason = status.state, status.reason
        if status.state is not SourceState.LIVE:
            self._arrivals.clear()
            self._picture_arrivals.clear()
        self.update()

    def _rate(self, arrivals: deque[float]) -> float:
        if len(arrivals) < 2 or self.state is not SourceState.LIVE or self.paused:
            return 0.0
        span = arrivals[-1] - arrivals[0]
        if time.monotonic() - arrivals[-1] > 3.0 or span <= 0:
            return 0.0
        return (len(arrivals) - 1) / span

    @property
    def fps(self) -> float:
        """Analysed frames per second."""
        return self._rate(self._arrivals)

    @property
    def display_fps(self) -> float:
        """Pictures shown per second (the camera's rate when analysis is slower)."""
        return self._rate(self._picture_arrivals)

    # -- geometry ----------------------------------------------------------------------------------

    def picture_rect(self) -> QRectF:
        """Where the picture is drawn: scaled to fit, centred, aspect ratio kept."""
        if self._frame_size is None:
            return QRectF(self.rect())
        iw, ih = self._frame_size.width(), self._frame_size.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def _scale(self) -> float:
        return self.picture_rect().width() / self._frame_size.width() if self._frame_size is not None else 1.0

    def widget_point(self, x: float, y: float) -> QPointF:
        """Picture coordinates -> widget coordinates (tests click real persons with this)."""
        rect = self.picture_rect()
        scale = self._scale()
        return QPointF(rect.x() + x * scale, rect.y() + y * scale)

    def person_at(self, pos: QPointF) -> TrackedPerson | None:
        if self.result is None or self._image is None:
            return None
        rect = self.picture_rect()
        scale = self._scale()
        x, y = (pos.x() - rect.x()) / scale, (pos.y() - rect.y()) / scale
        hits = [p for p, box in self.shown_persons()  # a tentative track is one frame old: nothing to follow yet
                if not p.tentative and box[0] <= x <= box[2] and box[1] <= y <= box[3]]
        if not hits:
            return None
        return min(hits, key=lambda p: float((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])))

    def crop_of(self, person: TrackedPerson) -> np.ndarray | None:
        """The person cut from the analysed frame they were found on (the last analysis, or one drawn before it);
        one from an analysis no longer kept, from the last analysed frame at the box they were given."""
        if self.result is None:
            return None
        analyses = (self.result, self._previous, self._ended[0] if self._ended else None)
        found_on = next((r for r in analyses if r is not None and any(p is person for p in r.persons)), self.result)
        patch = crop(found_on.image, person.box)
        return None if patch is None else patch.copy()

    # -- mouse -------------------------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        person = self.person_at(event.position())
        if person is None:
            super().mousePressEvent(event)
            return
        crop = self.crop_of(person)
        if event.button() == Qt.MouseButton.LeftButton:
            self.person_clicked.emit(self.source_id, person, crop)
        elif event.button() == Qt.MouseButton.RightButton:
            self.person_context_requested.emit(self.source_id, person, crop, event.globalPosition().toPoint())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.person_at(event.position()) is None:
            self.maximise_toggled.emit(self.source_id)
        event.accept()

    # -- painting ----------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(18, 18, 20))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.picture_rect(), self._image)
        if self.result is not None and self._image is not None:  # pictures may come before the first analysis
            self._paint_persons(painter)
        self._paint_header(painter)
        if self.state in (SourceState.FAILED, SourceState.RECONNECTING, SourceState.CONNECTING) or \
                self._image is None or self.paused:
            self._paint_banner(painter)
        painter.end()

    def _paint_persons(self, painter: QPainter) -> None:
        assert self.result is not None
        rect, scale = self.picture_rect(), self._scale()
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        for person, where in self.shown_persons():
            x1, y1, x2, y2 = (float(v) for v in where)
            box = QRectF(rect.x() + x1 * scale, rect.y() + y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale)
            colour = identity_colour(person.identity_id)
            is_target = self.is_target(person)
            if is_target:
                painter.setPen(QPen(TARGET_COLOUR, 4))
                painter.drawRect(box.adjusted(-3, -3, 3, 3))
            painter.setPen(QPen(colour, 2, Qt.PenStyle.DashLine if person.tentative else Qt.PenStyle.SolidLine))
            painter.drawRect(box)
            label = "…" if person.identity_id is None else f"#{person.identity_id}"
            if person.identity_id is not None and person.identity_id in self.names:
                label += f" {self.names[person.identity_id]}"
            if is_target:
                label = "◎ " + label
            text_w, text_h = metrics.horizontalAdvance(label) + 6, metrics.height()
            tag_x = max(rect.x(), min(box.x(), rect.right() - text_w))  # keep the label inside the picture
            tag = QRectF(tag_x, max(box.y() - text_h, rect.y()), text_w, text_h)
            painter.fillRect(tag, TARGET_COLOUR if is_target else colour)
            painter.setPen(QColor(255, 255, 255) if is_target else QColor(0, 0, 0))
            painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, label)

    def is_target(self, person: TrackedPerson) -> bool:
        """Followed or not, as of now: the engine says so with every frame; the picture of a feed that ended
        or is paused stays, and follows the targets the operator sets afterwards."""
        if self.state.is_final or self.paused:
            return person.identity_id is not None and person.identity_id in self.target_ids
        return person.is_target

    def _paint_header(self, painter: QPainter) -> None:
        painter.setFont(self.font())
        metrics = painter.fontMetrics()
        text = f"  {self.title}   {'paused' if self.paused else self.state.value}{self._rates_text()}  "
        bar = QRectF(0, 0, metrics.horizontalAdvance(text) + 16, metrics.height() + 6)
        painter.fillRect(bar, QColor(0, 0, 0, 170))
        painter.setBrush(_STATE_COLOURS[self.state] if not self.paused else QColor(120, 160, 255))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(QPointF(8, bar.height() / 2), 4, 4)
        painter.setPen(QColor(235, 235, 235))
        painter.drawText(bar.adjusted(8, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)

    def _rates_text(self) -> str:
        """``   10.0 fps, analysed 2.1`` and, when the boxes lag the picture, how much."""
        shown, analysed = self.display_fps, self.fps
        text = f"   {shown:.1f} fps, analysed {analysed:.1f}" if shown else f"   {analysed:.1f} fps" if analysed else ""
        age = self.analysis_age_s
        if age is not None and age > ANALYSIS_LAG_S and self.state is SourceState.LIVE and not self.paused:
            text += f"   analysis {age:.1f} s behind"
        return text

    def _paint_banner(self, painter: QPainter) -> None:
        if self.paused:
            message = "Paused"
        elif self.state is SourceState.FAILED:
            message = f"Failed: {self.reason}" if self.reason else "Failed"
        elif self.state is SourceState.RECONNECTING:
            message = f"Reconnecting… {self.reason}"
        elif self.state is SourceState.CONNECTING:
            message = f"Connecting… {self.reason}" if self.reason else "Connecting…"
        else:
            message = "No picture yet"
        area = QRectF(self.rect()).adjusted(12, 0, -12, 0)
        painter.setFont(self.font())
        bounds = painter.fontMetrics().boundingRect(area.toRect(), int(Qt.TextFlag.TextWordWrap), message)
        banner = QRectF(area.x(), (self.height() - bounds.height()) / 2 - 8, area.width(), bounds.height() + 16)
        painter.fillRect(banner, QColor(120, 20, 20, 200) if self.state is SourceState.FAILED
                         else QColor(0, 0, 0, 170))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(banner, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), message)


class FeedGrid(QWidget):
    """Lays feeds out as 1, 2x2, 3x3 or an automatic square grid; one feed can be maximised."""

    operator_acted = Signal()  # the operator changed the layout (a layout, a maximised feed): follow mode waits

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feeds: dict[str, FeedView] = {}
        self.layout_mode = "auto"
        self.maximised: str | None = None
        self._columns_used = 0
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(self.backgroundRole(), QColor(18, 18, 20))  # empty cells look like an idle monitor
        self.setPalette(palette)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(3)

    def add_feed(self, feed: FeedView) -> None:
        self.feeds[feed.source_id] = feed
        feed.maximise_toggled.connect(self.toggle_maximised)
        feed.picture_resized.connect(self._refit)
        self._relayout()

    def remove_feed(self, source_id: str) -> None:
        feed = self.feeds.pop(source_id, None)
        if feed is not None:
            self._grid.removeWidget(feed)
            feed.deleteLater()
        if self.maximised == source_id:
            self.maximised = None
        self._relayout()

    def rename_feed(self, old: str, new: str, title: str) -> None:
        feed = self.feeds.pop(old)
        feed.source_id, feed.title = new, title
        self.feeds[new] = feed
        if self.maximised == old:
            self.maximised = new
        feed.update()

    def set_layout_mode(self, mode: str, by_operator: bool = True) -> None:
        self.layout_mode = mode
        self.maximised = None
        self._relayout()
        if by_operator:
            self.operator_acted.emit()

    def toggle_maximised(self, source_id: str) -> None:
        self.maximised = None if self.maximised == source_id else source_id
        self._relayout()
        self.operator_acted.emit()

    def bring_forward(self, source_id: str, how: str) -> None:
        """Show a camera where the operator looks: ``maximise`` it, or move it to the ``first`` cell."""
        if source_id not in self.feeds:
            return
        if how == "maximise":
            self.maximised = source_id
        elif how == "first":
            self.feeds = {source_id: self.feeds[source_id], **{k: v for k, v in self.feeds.items() if k != source_id}}
            if self.maximised is not None:
                self.maximised = source_id
        self._relayout()

    def columns(self, count: int) -> int:
        fixed = {"1": 1, "2x2": 2, "3x3": 3}
        if self.layout_mode in fixed:
            return fixed[self.layout_mode]
        if count <= 1:
            return 1
        # automatic: the column count that shows the pictures largest in this widget's shape
        width, height = max(self.width(), 1), max(self.height(), 1)
        aspect = self.picture_aspect()

        def picture_scale(columns: int) -> float:
            rows = math.ceil(count / columns)
            return min(width / columns / aspect, height / rows)

        return max(range(1, count + 1), key=picture_scale)

    def picture_aspect(self) -> float:
        """Width over height of the feeds' pictures (the median; 4:3 until pictures arrive)."""
        aspects = sorted(f.picture_aspect for f in self.feeds.values() if f.picture_aspect)
        return aspects[len(aspects) // 2] if aspects else 4 / 3

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._refit()

    def _refit(self) -> None:
        """Automatic layout: a new shape of the widget or of the pictures may call for other columns."""
        if self.layout_mode == "auto" and self.columns(len(self.feeds)) != self._columns_used:
            self._relayout()

    def visible_feeds(self) -> list[FeedView]:
        feeds = list(self.feeds.values())
        if self.maximised in self.feeds:
            return [self.feeds[self.maximised]]
        columns = self.columns(len(feeds))
        if self.layout_mode != "auto":
            feeds = feeds[: columns * columns]
        return feeds

    def _relayout(self) -> None:
        for feed in self.feeds.values():
            self._grid.removeWidget(feed)
            feed.hide()
        visible = self.visible_feeds()
        columns = 1 if self.maximised in self.feeds else self.columns(len(self.feeds))
        self._columns_used = columns
        for position, feed in enumerate(visible):
            self._grid.addWidget(feed, position // columns, position % columns)
            feed.show()
        for i in range(self._grid.columnCount()):
            self._grid.setColumnStretch(i, 1 if i < columns else 0)
        rows = max(1, math.ceil(len(visible) / columns))
        for i in range(self._grid.rowCount()):
            self._grid.setRowStretch(i, 1 if i < rows else 0)
