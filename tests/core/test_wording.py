from __future__ import annotations

from reid_desktop.core.wording import count


def test_counts_agree_with_their_noun() -> None:
    assert [count(n, "camera") for n in (0, 1, 2)] == ["0 cameras", "1 camera", "2 cameras"]
    assert count(1, "person", "people") == "1 person" and count(3, "person", "people") == "3 people"
