"""Which cross-camera links are physically possible: camera overlap and minimum walking times.

One person cannot be in two places at once: a track in one camera cannot belong to an identity seen
in another camera a moment ago, unless the operator marked the two cameras as overlapping (they see
the same ground). When the operator also says how long the walk between two cameras takes at least,
links faster than that are pruned too. A maximum walking time is deliberately not a constraint: a
person may leave the covered area and come back days later, and must still be recognised.

Written as one settings string so it fits the settings file and the command line::

    entrance ~ hall : 8; hall = stairs

``A ~ B : S``: walking between A and B takes at least S seconds (both ways). ``A = B``: A and B
overlap. Entries are separated by ``;``; camera names are trimmed and cannot contain ``;=~:``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

RESERVED = re.compile(r"[;=~:]")


def _pair(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


@dataclass(frozen=True)
class CameraLinks:
    """``same_moment_s``: sightings closer in time than this count as simultaneous, for camera pairs the
    operator said nothing about (frames of different cameras are not taken at the very same instant)."""

    overlapping: frozenset[frozenset[str]] = frozenset()
    min_transit_s: Mapping[frozenset[str], float] = field(default_factory=dict)
    same_moment_s: float = 0.5

    def possible(self, seen_in: str, seen_at: float, camera: str, at: float) -> bool:
        """Can someone seen in ``seen_in`` at ``seen_at`` be the person in ``camera`` at ``at``?"""
        if seen_in == camera:
            return True
        pair = _pair(seen_in, camera)
        if pair in self.overlapping:
            return True
        return abs(at - seen_at) >= self.min_transit_s.get(pair, self.same_moment_s)

    def describe(self) -> str:
        """The settings string for these links (parse(describe()) gives them back)."""
        entries = [" = ".join(sorted(p)) for p in sorted(self.overlapping, key=sorted)]
        entries += [f"{' ~ '.join(sorted(p))} : {s:g}" for p, s in sorted(self.min_transit_s.items(),
                                                                        key=lambda item: sorted(item[0]))]
        return "; ".join(entries)


def parse(text: str, same_moment_s: float = 0.5) -> CameraLinks:
    """Read the settings string; raises ValueError naming the entry that is wrong."""
    overlapping: set[frozenset[str]] = set()
    transit: dict[frozenset[str], float] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        if "=" in entry:
            names = [n.strip() for n in entry.split("=")]
            if len(names) != 2 or not all(names) or any(RESERVED.search(n) for n in names):
                raise ValueError(f"camera link {entry!r}: write 'CAMERA = CAMERA' for cameras that overlap")
            _check_distinct(entry, names)
            overlapping.add(_pair(*names))
            continue
        match = re.fullmatch(r"([^;=~:]+)~([^;=~:]+):\s*([0-9]+(?:\.[0-9]*)?)\s*", entry)
        if match is None:
            raise ValueError(f"camera link {entry!r}: write 'CAMERA ~ CAMERA : SECONDS' (the shortest walk "
                             "between them) or 'CAMERA = CAMERA' (they overlap)")
        names = [match.group(1).strip(), match.group(2).strip()]
        if not all(names):
            raise ValueError(f"camera link {entry!r}: a camera name is missing")
        _check_distinct(entry, names)
        transit[_pair(*names)] = float(match.group(3))
    both = overlapping & transit.keys()
    if both:
        pair = " and ".join(sorted(next(iter(both))))
        raise ValueError(f"cameras {pair} are said to overlap and to be a walk apart: choose one")
    return CameraLinks(frozenset(overlapping), transit, same_moment_s)


def _check_distinct(entry: str, names: list[str]) -> None:
    if names[0] == names[1]:
        raise ValueError(f"camera link {entry!r}: a camera is always linked with itself")
