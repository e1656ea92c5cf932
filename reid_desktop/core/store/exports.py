"""Sightings written out for other tools: CSV and JSON over any history (``HistoryReader``), whichever database
keeps it. Both files are private to the user: they hold where people were and when."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from reid_desktop.core.paths import open_private
from reid_desktop.core.store.interface import HistoryReader

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """Text for a CSV cell that spreadsheets will not run: a leading ``= + - @`` (or tab, CR) gets a ``'``."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def export_csv(history: HistoryReader, path: Path, identity_id: int | None = None) -> int:
    """Sightings (of one identity) as CSV; returns how many. Text typed by operators cannot become a formula."""
    sightings = history.sightings(identity_id)
    labels: dict[int | None, str] = {i.identity_id: i.label for i in history.identities() if i.label}
    with open_private(Path(path), newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sighting_id", "source", "identity_id", "label", "track_id", "frame_index", "timestamp",
                         "media_time", "x1", "y1", "x2", "y2", "confidence", "match_score", "run_id"])
        for s in sightings:
            writer.writerow([s.id, csv_text(s.source), s.identity_id, csv_text(labels.get(s.identity_id, "")),
                             s.track_id, s.frame_index, f"{s.timestamp:.3f}",
                             "" if s.media_time is None else f"{s.media_time:.3f}",
                             *(f"{v:.1f}" for v in s.box), f"{s.confidence:.3f}",
                             "" if s.match_score is None else f"{s.match_score:.3f}", s.run_id])
    return len(sightings)


def export_json(history: HistoryReader, path: Path, identity_id: int | None = None) -> int:
    """Identities, sightings, alerts (without their pictures) and runs as JSON; returns the sightings written."""
    sightings = history.sightings(identity_id)
    payload = {
        "identities": [asdict(i) for i in history.identities() if identity_id is None or i.identity_id == identity_id],
        "sightings": [asdict(s) for s in sightings],
        "alerts": [{k: v for k, v in asdict(a).items() if k != "thumbnail"}
                   for a in history.alerts(identity_id, limit=-1)],
        "runs": history.runs(),
    }
    with open_private(Path(path)) as fh:
        fh.write(json.dumps(payload, indent=1))
    return len(sightings)
