"""Counts in words for the operator: ``1 camera``, ``2 cameras``, never ``1 camera(s)``."""

from __future__ import annotations


def count(n: int, noun: str, plural: str = "") -> str:
    """``n`` and the noun in the right number; ``plural`` for nouns that do not take an "s" (``people``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
