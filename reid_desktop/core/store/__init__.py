"""Store: the history's interface and backends (SQLite; PostgreSQL and what it tells its processes), index, exports."""
