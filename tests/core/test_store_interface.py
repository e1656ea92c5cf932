"""The store's interface (core.store.interface) is what the engine, the views and the trainer rely on; both backends
(SQLite, PostgreSQL) must provide all of it, with the same parameters."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from reid_desktop.core.store.history import open_store
from reid_desktop.core.store.interface import HistoryReader, HistoryStore, StoreError
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.storage import SightingStore


def protocol_members(protocol: type) -> list[str]:
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        names.update(n for n in vars(cls) if not n.startswith("_"))
    return sorted(names)


@pytest.mark.parametrize("store_class", [SightingStore, PgSightingStore])
@pytest.mark.parametrize("name", protocol_members(HistoryStore))
def test_both_stores_provide_every_member_of_the_interface(name: str, store_class: type) -> None:
    wanted = inspect.getattr_static(HistoryStore, name)
    found = inspect.getattr_static(store_class, name, None)
    assert found is not None, f"{store_class.__name__} has no {name}"
    assert isinstance(found, property) == isinstance(wanted, property), f"{name}: property in one, not the other"
    if isinstance(wanted, property):
        return
    expected = [(p.name, p.kind, p.default) for p in inspect.signature(wanted).parameters.values()]
    actual = [(p.name, p.kind, p.default) for p in inspect.signature(found).parameters.values()]
    assert actual == expected, f"{name}: {actual} != {expected}"


def test_the_engines_interface_includes_everything_a_reader_has() -> None:
    assert set(protocol_members(HistoryReader)) < set(protocol_members(HistoryStore))
    assert {"record", "correct_track", "embedding_identities", "attach_index"} <= set(protocol_members(HistoryStore))


def test_a_node_writes_to_a_shared_database_never_to_a_file(tmp_path: Path) -> None:
    """``node`` names a processing node's runs on a shared history; a file opened for one is refused, untouched."""
    with pytest.raises(StoreError, match="node north writes to a shared PostgreSQL database"):
        open_store(tmp_path / "sightings.sqlite", node="north")
    assert not (tmp_path / "sightings.sqlite").exists()
    with open_store(tmp_path / "sightings.sqlite") as store:
        assert store.shared is None
