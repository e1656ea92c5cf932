"""Crop quality: how much of a person another person's box hides."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reid_desktop.core.vision.crops import covered_share, crop_quality

FRAME = (576, 768, 3)


def test_a_person_half_behind_another_is_half_covered_and_the_one_in_front_less() -> None:
    behind = [100, 100, 160, 250]  # 60 x 150
    in_front = [130, 90, 200, 260]  # covers x 130-160 of the one behind: half of it
    alone = [400, 100, 460, 250]
    share = covered_share(np.array([behind, in_front, alone], np.float32))
    assert np.allclose(share, [0.5, 30 * 150 / (70 * 170), 0.0], atol=1e-4)
    quality = [crop_quality(np.array(box, np.float32), 0.9, None, FRAME, float(c))
               for box, c in zip((behind, alone), share[[0, 2]], strict=True)]
    assert quality[0] < quality[1]  # same size and confidence: the half-hidden crop counts less


boxes = st.lists(st.tuples(st.floats(0, 700), st.floats(0, 500), st.floats(1, 200), st.floats(1, 300)),
                 min_size=0, max_size=12)


@given(boxes)
def test_every_share_is_between_nothing_and_all_of_the_box(found: list[tuple[float, float, float, float]]) -> None:
    array = np.array([[x, y, x + w, y + h] for x, y, w, h in found], np.float32).reshape(-1, 4)
    share = covered_share(array)
    assert share.shape == (len(found),) and np.all(share >= 0) and np.all(share <= 1 + 1e-5)
