"""``reid-desktop db``: a shared database's password in the OS keyring, its roles and its retention policy."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reid_desktop.cli.common import EXIT_OK, EXIT_USAGE
from reid_desktop.core.store.database_url import (
    DatabaseUrlError,
    parse_postgres_url,
    save_keyring_password,
)
from reid_desktop.core.store.pg_schema import VIEWER_ROLE, WRITER_ROLE, PgSchemaError, create_roles, retention


def cmd_db_password(args: argparse.Namespace) -> int:
    """Keep a shared database's password in the OS keyring (never in the URL, settings or shell history)."""
    import getpass

    try:
        location = parse_postgres_url(args.url)
        if args.stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password of {location.user} on {location.host}:{location.port}/"
                                       f"{location.database}: ")
        if not password:
            print("error: no password given; nothing kept", file=sys.stderr)
            return EXIT_USAGE
        save_keyring_password(location, password)
    except DatabaseUrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"kept in the OS keyring for {location}: nodes and windows of this user find it there")
    return EXIT_OK


def cmd_db_roles(args: argparse.Namespace) -> int:
    """As the database's owner: bring the schema up to date and create the writer and viewer roles."""
    try:
        location = parse_postgres_url(args.url)
        create_roles(location)
    except (DatabaseUrlError, PgSchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{location}: schema up to date; roles {WRITER_ROLE} (nodes, stations) and {VIEWER_ROLE} (read only) "
          "granted; other roles can no longer connect. Give each machine or person a login of its own, e.g.:")
    print(f"  CREATE ROLE gate_node LOGIN PASSWORD '...' IN ROLE {WRITER_ROLE};")
    print(f"  CREATE ROLE auditor LOGIN PASSWORD '...' IN ROLE {VIEWER_ROLE};")
    return EXIT_OK


def cmd_db_retention(args: argparse.Namespace) -> int:
    """Show or (as the database's owner) set the shared database's retention: one policy for every machine."""
    try:
        location = parse_postgres_url(args.url)
        days, since = retention(location, args.days)
    except (DatabaseUrlError, PgSchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    policy = (f"sightings older than {days} days are deleted (a followed or named person keeps their newest "
              "tracks)" if days else "everything is kept")
    ran = "not run yet" if since is None else f"last run {since / 60:.0f} min ago"
    print(f"{location}: {policy}; {ran} (the nodes and stations writing to it run it, one at a time)")
    return EXIT_OK


def add_parser(sub: Any) -> None:
    """The ``db`` command and its subcommands."""
    db = sub.add_parser("db", help="the shared database: its password in the OS keyring, its roles, its retention")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    pw = dbsub.add_parser("password", help="ask for the password of a postgresql:// URL and keep it in the keyring")
    pw.add_argument("url", help="postgresql://user@host[:port]/database (no password in it)")
    pw.add_argument("--stdin", action="store_true", help="read the password from the first line of standard input")
    pw.set_defaults(func=cmd_db_password)
    ro = dbsub.add_parser("roles", help="as the database's owner: upgrade the schema and create the roles nodes and "
                                        "stations (reid_writer) and read-only users (reid_viewer) are given")
    ro.add_argument("url", help="postgresql://owner@host[:port]/database")
    ro.set_defaults(func=cmd_db_roles)
    keep = dbsub.add_parser("retention", help="show the database's retention policy, or set it as its owner (one "
                                            "policy for every node and station: their own setting is not used)")
    keep.add_argument("url", help="postgresql://user@host[:port]/database")
    keep.add_argument("--days", type=_days, help="delete sightings older than this many days (0: keep everything)")
    keep.set_defaults(func=cmd_db_retention)


def _days(text: str) -> int:
    days = int(text)
    if not 0 <= days <= 36_500:
        raise argparse.ArgumentTypeError(f"days must be 0 to 36500, not {text}")
    return days
