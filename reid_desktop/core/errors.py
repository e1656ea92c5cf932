"""Errors the core raises on bad input; each message is one line an operator can act on."""

from __future__ import annotations


class ModelError(RuntimeError):
    """A model file is missing, unreadable, or not the kind of model the stage needs."""
