"""A real PostgreSQL server for the tests: Debian's ``postgresql`` (15), in a temporary directory.

It listens on 127.0.0.1 only (and a socket in its own folder), asks for a password over TCP
(SCRAM-SHA-256, as a real site would), and is stopped when the tests end. Every wait is bounded. As root
(CI, containers) the server runs as the ``postgres`` user the package created: PostgreSQL refuses root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

USER = "reid"
PASSWORD = "test-only-secret"  # a throw-away server on loopback; never a real credential
START_TIMEOUT_S = 30


def binaries() -> Path | None:
    """The newest installed server's bin folder, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]), reverse=True)
    return found[0].parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgServer:
    folder: Path
    bin: Path
    port: int
    run_as: str | None  # the system user the server runs as when we are root

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        """The URL an operator would type: no password in it."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout, cwd=self.folder)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options,
                  "-w", "-t", str(START_TIMEOUT_S), "start", timeout=START_TIMEOUT_S + 10)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(START_TIMEOUT_S), "stop",
                  timeout=START_TIMEOUT_S + 10)

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), password=PASSWORD, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server(folder: Path) -> PgServer:
    """initdb and start a server in ``folder``; raises RuntimeError with the reason when it cannot."""
    bin_folder = binaries()
    if bin_folder is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
        run_as = "postgres"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "password").write_text(PASSWORD)
    if run_as:
        shutil.chown(folder, run_as)
        for path in folder.iterdir():
            shutil.chown(path, run_as)
    server = PgServer(folder, bin_folder, _free_port(), run_as)
    try:
        server._run("initdb", "-D", str(server.data), "-U", USER, "--pwfile", str(folder / "password"),
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                    timeout=120)
        server.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", b"") or b""
        raise RuntimeError(f"PostgreSQL did not start: {output.decode(errors='replace').strip()[-300:]}") from None
    return server
