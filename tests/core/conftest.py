"""Fixtures the store suites share (test_store_edits.py, test_store_contract.py): the same tests on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reid_desktop.core.store.sql_history import SqlHistory
from tests.core.test_store_edits import Builder, backend_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlHistory]:
    """A fresh store on each backend: a SQLite file, and a database on a real PostgreSQL server."""
    yield from backend_store(request, tmp_path)


@pytest.fixture
def build(store: SqlHistory) -> Builder:
    """Tracks written into ``store`` the way the pipeline writes them."""
    return Builder(store)
