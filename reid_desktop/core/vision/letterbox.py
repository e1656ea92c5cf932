"""The detector's input pictures: letterboxed byte for byte as Ultralytics' ``LetterBox`` does, batched per padded
shape, and converted to the model's float input. Made on the engine thread, or ahead on a reader thread
(:class:`~reid_desktop.core.types.PreparedPicture`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from reid_desktop.core.types import PreparedPicture
from reid_desktop.core.vision.detection import group_positions, prepare_ultralytics

PAD_GREY = 114  # Ultralytics' letterbox padding


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """A BGR image -> 1 x 3 x H x W float32 RGB in [0, 1], scaled to fit ``size`` and padded to a multiple of 32,
    exactly as Ultralytics feeds the checkpoint (a square pad would change the scores of small people)."""
    return model_input(letterbox_bytes(image, size)[None])


def letterbox_bytes(image: np.ndarray, size: int) -> np.ndarray:
    """The letterboxed picture before conversion: H x W x 3 uint8 BGR (what travels to a GPU)."""
    ((_, batch),) = letterbox_batches([image], [size])
    return batch[0]


def letterbox_batches(images: Sequence[np.ndarray], sizes: Sequence[int],
                      prepared: Sequence[PreparedPicture | None] = ()) -> list[tuple[list[int], np.ndarray]]:
    """The pictures letterboxed byte for byte as Ultralytics' ``LetterBox`` does, in N x H x W x 3 uint8 batches of
    one padded shape (with the positions each holds). Each picture is resized straight into its place in its batch:
    no padded copy and no stacking, which were most of the engine's own cost per frame (bench/engine_overhead.py).
    A picture ``prepared`` at its size is taken as it is (alone in its batch: not even copied)."""
    ready = [p.picture if p is not None and p.size == size else None
             for p, size in zip(prepared or [None] * len(images), sizes, strict=True)]
    plans = [None if picture is not None else _letterboxer(size).get_params({"img": image})
             for image, size, picture in zip(images, sizes, ready, strict=True)]
    shapes = [picture.shape[:2] if picture is not None else _padded_shape(plan)
              for picture, plan in zip(ready, plans, strict=True)]
    batches = []
    for shape, positions in group_positions(shapes).items():
        alone = ready[positions[0]] if len(positions) == 1 else None
        if alone is not None:
            batches.append((positions, alone[None]))
            continue
        batch = np.empty((len(positions), *shape, 3), np.uint8)
        for slot, position in enumerate(positions):
            picture, plan = ready[position], plans[position]
            if picture is not None:
                batch[slot] = picture
            else:
                assert plan is not None
                _place(images[position], plan, batch[slot])
        batches.append((positions, batch))
    return batches


def _padded_shape(plan: dict[str, Any] | None) -> tuple[int, int]:
    assert plan is not None
    return (plan["new_unpad"][1] + plan["top"] + plan["bottom"], plan["new_unpad"][0] + plan["left"] + plan["right"])


def _place(image: np.ndarray, plan: dict[str, Any], target: np.ndarray) -> None:
    """One picture into ``target``: resized to its unpadded size, Ultralytics' grey around it."""
    width, height = plan["new_unpad"]
    top, left = plan["top"], plan["left"]
    target[:top] = target[top + height:] = PAD_GREY
    target[top:top + height, :left] = target[top:top + height, left + width:] = PAD_GREY
    inside = target[top:top + height, left:left + width]
    if image.shape[:2] == (height, width):
        inside[...] = image
    else:
        cv2.resize(image, (width, height), dst=inside, interpolation=cv2.INTER_LINEAR)


def model_input(pictures: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 BGR -> N x 3 x H x W float32 RGB in [0, 1]."""
    return np.ascontiguousarray(pictures[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


@functools.lru_cache(maxsize=8)
def _letterboxer(size: int) -> Any:
    """One Ultralytics ``LetterBox`` per input size (it keeps no state between pictures): made once, not per frame."""
    prepare_ultralytics()
    from ultralytics.data.augment import LetterBox

    return LetterBox(new_shape=(size, size), auto=True, stride=32)
