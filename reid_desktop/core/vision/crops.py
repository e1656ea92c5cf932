"""Person crops: the one way the pipeline, the window and the training export cut a person out of a frame."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

MIN_CROP_PIXELS = 12  # a crop shorter than this (or narrower than half of it) shows no usable person


def covered_share(boxes: np.ndarray) -> np.ndarray:
    """For each box (N x 4+, x1 y1 x2 y2), the largest share of it that another box of the frame covers: a
    person half hidden behind another gives a crop of two people."""
    if len(boxes) < 2:
        return np.zeros(len(boxes), np.float32)
    b = np.asarray(boxes[:, :4], np.float32)
    width = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    share = width * height / area[:, None]
    np.fill_diagonal(share, 0.0)
    return share.max(axis=1)


def crop_quality(box: np.ndarray, confidence: float, keypoints: np.ndarray | None,
                 frame_shape: tuple[int, ...], covered: float = 0.0) -> float:
    """How useful a crop is for re-id: confident, tall enough, person-shaped, not cut by the border, not
    covered by another person (``covered``: the share of the box another detection covers), and (with pose
    models) with most body keypoints visible."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    size = min(1.0, h / 160.0)
    aspect = 1.0 if 1.6 <= h / w <= 4.0 else 0.6
    fh, fw = frame_shape[:2]
    border = 0.7 if x1 <= 2 or y1 <= 2 or x2 >= fw - 2 or y2 >= fh - 2 else 1.0
    visible = 1.0
    if keypoints is not None and len(keypoints):
        visible = 0.5 + 0.5 * float(np.mean(keypoints[:, 2] > 0.5))
    return float(confidence) * size * aspect * border * visible * max(0.0, 1.0 - float(covered))


def crop(image: np.ndarray, box: Sequence[float] | np.ndarray) -> np.ndarray | None:
    """The part of ``image`` inside ``box`` (x1, y1, x2, y2; clipped to the picture, whole pixels that
    contain the box), or None when too little of it is inside to show a person."""
    h, w = image.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    if x2 - x1 < MIN_CROP_PIXELS // 2 or y2 - y1 < MIN_CROP_PIXELS:
        return None
    return image[y1:y2, x1:x2]


def thumbnail(patch: np.ndarray, height: int) -> bytes:
    """A JPEG of ``patch`` scaled to ``height`` pixels (aspect kept), as the store and the views keep them."""
    scale = height / max(patch.shape[0], 1)
    resized = cv2.resize(patch, (max(1, round(patch.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else b""
