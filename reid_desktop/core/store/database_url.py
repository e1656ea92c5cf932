"""Where the history lives: a SQLite file (one machine, the default) or a shared PostgreSQL server.

``--db`` (and Settings) take either a file path or ``postgresql://user@host[:port]/database``. A password
never rides in that URL (it would show in ``ps``, shell histories, settings files and logs): a URL holding
one is refused. libpq finds the password itself in ``PGPASSWORD`` or ``~/.pgpass``; otherwise the app
looks in the OS keyring under the URL (``reid-desktop db password URL`` puts it there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

from reid_desktop.core.credentials import SERVICE

log = logging.getLogger(__name__)

SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 5  # a server that does not answer is reported, not waited for
DEAD_LINK_S = 30  # a connection whose data goes unacknowledged this long (cable, power, a lost route) is closed


class DatabaseUrlError(ValueError):
    """A ``--db`` value that cannot name a database; the message is one line for the operator."""


@dataclass(frozen=True)
class PostgresLocation:
    """A PostgreSQL database, named without its password."""

    url: str  # postgresql://user@host:port/database, as given (less nothing: it holds no password)
    user: str
    host: str
    port: int
    database: str

    def __str__(self) -> str:
        return f"{self.database} on {self.host}:{self.port} (as {self.user})"

    def connect_options(self) -> dict[str, object]:
        """What ``psycopg.connect`` takes: the URL, a bounded connect time, bounds on a link that died silently,
        and the keyring's password when neither ``PGPASSWORD`` nor ``~/.pgpass`` will give libpq one."""
        options: dict[str, object] = {"conninfo": self.url, "connect_timeout": CONNECT_TIMEOUT_S,
                                      "application_name": "reid-desktop",
                                      # a link that died without a word ends in seconds, not the OS's 15 minutes
                                      "tcp_user_timeout": DEAD_LINK_S * 1000, "keepalives": 1,
                                      "keepalives_idle": DEAD_LINK_S // 3, "keepalives_interval": DEAD_LINK_S // 6,
                                      "keepalives_count": 3}
        password = keyring_password(self)
        if password:
            options["password"] = password
        return options


def is_postgres_url(value: str) -> bool:
    return value.split("://", 1)[0].lower() in SCHEMES if "://" in value else False


def parse_postgres_url(value: str) -> PostgresLocation:
    """Check a PostgreSQL URL; raises :class:`DatabaseUrlError` (never echoing a password) when it is unusable."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port or 5432
    except ValueError:
        raise DatabaseUrlError("the database URL is malformed (expected postgresql://user@host[:port]/database)") \
            from None
    if parts.scheme.lower() not in SCHEMES:
        raise DatabaseUrlError(f"unknown database URL scheme '{parts.scheme}': use postgresql://")
    if parts.password is not None or "password" in {key.lower() for key in parse_qs(parts.query)}:
        raise DatabaseUrlError("the database URL holds a password; put it in PGPASSWORD, ~/.pgpass or the OS "
                               "keyring (reid-desktop db password URL), never in the URL")
    database = parts.path.lstrip("/")
    if not parts.hostname or not database or "/" in database:
        raise DatabaseUrlError("the database URL needs a host and a database: postgresql://user@host[:port]/database")
    user = parts.username or ""
    if not user:
        raise DatabaseUrlError("the database URL needs a user: postgresql://user@host[:port]/database")
    clean = SplitResult("postgresql", parts.netloc, parts.path, parts.query, "")
    return PostgresLocation(urlunsplit(clean), user, parts.hostname, port, database)


def parse_database(value: str | Path) -> Path | PostgresLocation:
    """A ``--db`` value: a PostgreSQL location for a postgresql:// URL, else a SQLite file path."""
    text = str(value)
    if is_postgres_url(text):
        return parse_postgres_url(text)
    if "://" in text:
        raise DatabaseUrlError(f"unknown database URL scheme '{text.split('://', 1)[0]}': use postgresql:// or a "
                               "file path")
    return Path(text).expanduser()


def _account(location: PostgresLocation) -> str:
    return f"database:{location.url}"


def keyring_password(location: PostgresLocation) -> str | None:
    """The password the keyring keeps for this database, if any (None without a keyring)."""
    try:
        import keyring

        return keyring.get_password(SERVICE, _account(location))
    except Exception as exc:  # no backend, locked keyring: libpq may still find one in PGPASSWORD or ~/.pgpass
        log.debug("no keyring password for %s (%s)", location, type(exc).__name__)
        return None


def save_keyring_password(location: PostgresLocation, password: str) -> None:
    """Keep the database's password in the OS keyring; raises DatabaseUrlError when there is no keyring."""
    try:
        import keyring

        keyring.set_password(SERVICE, _account(location), password)
    except Exception as exc:
        raise DatabaseUrlError(f"no OS keyring to keep the password in ({type(exc).__name__}): use PGPASSWORD "
                               "or ~/.pgpass") from None
