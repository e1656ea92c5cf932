"""A printable report of one identity: every appearance across cameras, as one self-contained HTML file.

Self-contained (thumbnails inlined, CSS inline) so it can be mailed or archived as a single file and
opened anywhere without the database.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path

from reid_desktop.core.paths import open_private
from reid_desktop.core.store.interface import HistoryReader, TrackSegment

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: 600; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: middle; }
th { background: #f0f0f0; }
td.num { text-align: right; }
img { max-height: 128px; display: block; }
"""


def _when(timestamp: float | None) -> str:
    """Local wall-clock time, as the operator read it on the cameras."""
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def format_media_time(seconds: float) -> str:
    """mm:ss.s, rounded once so that 59.96 s reads 01:00.0 and not 00:60.0."""
    minutes, tenths = divmod(round(seconds * 10), 600)
    return f"{minutes:02d}:{tenths / 10:04.1f}"


def _media_range(segment: TrackSegment) -> str:
    if segment.first_media_time is None or segment.last_media_time is None:
        return "—"  # a live source has no position in a file
    return f"{format_media_time(segment.first_media_time)} – {format_media_time(segment.last_media_time)}"


def _thumbnail(jpeg: bytes | None) -> str:
    if not jpeg:
        return ""
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}" alt="">'


ALERTS_IN_REPORT = 500  # the newest; the JSON export has them all


def write_html_report(store: HistoryReader, identity_id: int, path: Path) -> int:
    """Write the timeline of ``identity_id`` to ``path``; returns the number of track segments in it."""
    identity = store.identity(identity_id)
    if identity is None:
        raise ValueError(f"unknown identity {identity_id}")
    segments = store.track_segments(identity_id)
    title = f"Identity {identity.identity_id}" + (f" — {identity.label}" if identity.label else "")
    rows = "\n".join(
        f"<tr><td>{_thumbnail(s.thumbnail)}</td><td>{html.escape(s.source)}</td><td>{_when(s.first_seen)}</td>"
        f"<td>{_when(s.last_seen)}</td><td>{_media_range(s)}</td><td class=\"num\">{s.sightings}</td></tr>"
        for s in segments)
    alerts = store.alerts(identity_id, limit=ALERTS_IN_REPORT)
    alert_rows = "\n".join(
        f"<tr><td>{_thumbnail(a.thumbnail)}</td><td>{html.escape(a.source)}</td><td>{_when(a.timestamp)}</td>"
        f"<td>{format_media_time(a.media_time) if a.media_time is not None else ''}</td>"
        f"<td class=\"num\">{'' if a.score is None else f'{a.score:.2f}'}</td></tr>" for a in alerts)
    alert_table = f"""<h2>Alerts</h2>
<table>
<thead><tr><th>Picture</th><th>Camera</th><th>Time</th><th>Media time</th><th>Score</th></tr></thead>
<tbody>
{alert_rows}
</tbody>
</table>
""" if alerts else ""
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<dl>
<dt>Target</dt><dd>{"yes" if identity.is_target else "no"}</dd>
<dt>First seen</dt><dd>{_when(identity.first_seen)}</dd>
<dt>Last seen</dt><dd>{_when(identity.last_seen)}</dd>
<dt>Cameras</dt><dd>{html.escape(", ".join(identity.cameras)) or "—"}</dd>
<dt>Sightings</dt><dd>{identity.sightings}</dd>
</dl>
<table>
<thead><tr><th>Crop</th><th>Camera</th><th>Start</th><th>End</th><th>Media time</th><th>Sightings</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{alert_table}
<p><small>Generated {_when(datetime.now().timestamp())} by reid-desktop from {html.escape(store.location)}.</small></p>
</body>
</html>
"""
    with open_private(Path(path)) as fh:  # face and body crops: the user's only, like every other export
        fh.write(document)
    return len(segments)
