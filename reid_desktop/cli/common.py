"""What every command of the command line shares: exit statuses, and how a history is named to the operator."""

from __future__ import annotations

from reid_desktop.core.store.interface import HistoryStore

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_ALL_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CRASH, EXIT_NOT_SAVED, EXIT_BUSY = 5, 6, 7


def where(store: HistoryStore) -> str:
    """The database as the operator named it: the SQLite file's path, or the PostgreSQL database and server."""
    return store.address
