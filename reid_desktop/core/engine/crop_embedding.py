"""The embed stage: which tracks need a crop embedded on these frames (a new track, then every ``reid.embed_every``
frames, or a crop clearly better than its best so far), one re-id batch for all cameras, each camera's mean taken
out, and each track's best crops and running sum kept (:mod:`~reid_desktop.core.engine.track_state`). A model that
fails, or a vector that is not finite, skips those crops, never the frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reid_desktop.core.config import ReidConfig
from reid_desktop.core.engine.persistence import FreshEmbedding
from reid_desktop.core.engine.track_state import TrackState
from reid_desktop.core.faults import FaultLog
from reid_desktop.core.identity.camera_norm import CameraNormaliser
from reid_desktop.core.types import Detections, Frame
from reid_desktop.core.vision.crops import covered_share, crop, crop_quality
from reid_desktop.core.vision.embedding import Embedder
from reid_desktop.core.vision.tracking import TrackOutput

FreshEmbeddings = dict[tuple[str, int], FreshEmbedding]  # what the stage gave each track (source, track id) now


class CropEmbedding:
    def __init__(self, reid: ReidConfig, faults: FaultLog) -> None:
        self.reid = reid
        self.faults = faults

    def embed(self, frames: Sequence[Frame], detections: Sequence[Detections], tracked: Sequence[TrackOutput | None],
              tracks: dict[tuple[str, int], TrackState], embedder: Embedder, normaliser: CameraNormaliser | None
              ) -> FreshEmbeddings:
        """One embedding batch for every crop that needs one, across all cameras; bad crops are skipped. Every
        tracked person's record in ``tracks`` is made or brought up to date on the way."""
        jobs: list[tuple[int, int, float]] = []  # (frame position, row in its tracker's output, quality)
        crops: list[np.ndarray] = []
        reid = self.reid
        for pos, (frame, dets, found) in enumerate(zip(frames, detections, tracked, strict=True)):
            if found is None:
                continue
            covered = covered_share(dets.boxes) if reid.occlusion_aware else np.zeros(len(dets), np.float32)
            for row in range(len(found)):
                key = (frame.source_id, int(found.track_ids[row]))
                state = tracks.setdefault(key, TrackState())
                state.last_seen = frame.index
                det_index = int(found.det_index[row])
                kpts = keypoints_of(dets, det_index)
                quality = crop_quality(found.boxes[row], float(found.scores[row]), kpts, frame.image.shape,
                                       float(covered[det_index]) if 0 <= det_index < len(covered) else 0.0)
                due = (not state.embeddings
                       or frame.index - state.last_embedded >= reid.embed_every
                       or quality > state.best_quality * reid.quality_gain)
                if not due or not np.isfinite(quality):
                    continue
                patch = crop(frame.image, found.boxes[row])
                if patch is not None:
                    jobs.append((pos, row, quality))
                    crops.append(patch)
        if not crops:
            return {}
        try:
            raw = embedder.embed(crops)
        except Exception as exc:
            self.faults.report("embed", f"re-id model failed on {len(crops)} crops; they are skipped: "
                                        f"{type(exc).__name__}: {exc}", exc)
            return {}
        usable = np.isfinite(raw).all(axis=1) & (np.linalg.norm(raw, axis=1) > 0)
        if not usable.all():
            self.faults.report("embed-nan", f"skipped {int((~usable).sum())} crops whose re-id embedding is not a "
                                            "finite, non-zero vector")
        vectors = _normalised(normaliser, raw, [frames[pos].source_id for pos, _, _ in jobs], usable)
        fresh: FreshEmbeddings = {}
        for (pos, row, quality), vector, raw_vector, patch, ok in zip(jobs, vectors, raw, crops, usable, strict=True):
            if not ok:
                continue
            frame, found = frames[pos], tracked[pos]
            assert found is not None
            key = (frame.source_id, int(found.track_ids[row]))
            state = tracks[key]
            state.embeddings.append((quality, vector))
            state.best_raw.append((quality, raw_vector))
            state.took(vector, raw_vector)
            state.crops += 1
            for kept in (state.embeddings, state.best_raw):
                kept.sort(key=lambda item: -item[0])
                del kept[reid.track_gallery_size:]
            state.last_embedded = frame.index
            improved = quality >= state.best_quality
            state.best_quality = max(state.best_quality, quality)
            fresh[key] = (vector, quality, patch if improved else None)  # the patch only when it is the best crop
        return fresh


def _normalised(normaliser: CameraNormaliser | None, vectors: np.ndarray, cameras: Sequence[str],
                usable: np.ndarray) -> np.ndarray:
    """Each camera's mean taken out of its crops' embeddings (learned from them first); as they are when off."""
    if normaliser is None:
        return vectors
    out = np.array(vectors, np.float32, copy=True)
    for camera in dict.fromkeys(cameras):
        rows = np.flatnonzero((np.asarray(cameras) == camera) & usable)
        if len(rows):
            out[rows] = normaliser.learn_and_apply(camera, vectors[rows])
    return out

def keypoints_of(dets: Detections, index: int) -> np.ndarray | None:
    """The pose of detection ``index`` (None: the detector gives no keypoints)."""
    if dets.keypoints is None or not 0 <= index < len(dets.keypoints):
        return None
    return dets.keypoints[index]
