"""A real, throwaway PostgreSQL server: initdb into a temp dir, started on a free loopback port, stopped at the end.

    with PostgresServer.start() as server:       # raises PostgresMissing where no PostgreSQL binary exists
        url = server.new_database()              # a fresh, empty database: postgresql://postgres@127.0.0.1:PORT/db_...
        server.sql("SELECT 1")                   # as the superuser, on the maintenance database
        with server.frozen(): ...                # every server process stopped (SIGSTOP) for the block

As root the server runs as the unprivileged `postgres` user (Debian's package makes it; created if
missing), since PostgreSQL refuses to run as root; otherwise as the current user. The data
directory and the unix socket live in one temp dir that is removed on stop. The server is asked to
stop (fast shutdown, then SIGKILL), on every exit path of the `with`; if the process that started it
is killed, the kernel sends it SIGQUIT (PR_SET_PDEATHSIG), so no server outlives its tests.
Durability settings are off for tests (fsync, full page writes); `durable=True` keeps the defaults.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import psycopg

from tests.livesrv import free_port

__all__ = ["PostgresMissing", "PostgresServer", "find_bindir"]

PG_USER = "postgres"
READY_S = 60.0


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path | None:
    """Where `initdb` and `postgres` are: $FUSIONKIT_PG_BINDIR, Debian's /usr/lib/postgresql/N/bin, or PATH."""
    candidates = [os.environ.get("FUSIONKIT_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    if which := shutil.which("initdb"):
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    return None


def _account() -> pwd.struct_passwd | None:
    """The user to run the server as (None: the current one, which is not root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True, capture_output=True)
        return pwd.getpwnam(PG_USER)


def _die_with_parent() -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def hook() -> None:  # runs in the child after it changed user (a change of user clears the setting)
        libc.prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG: SIGQUIT is PostgreSQL's immediate shutdown

    return hook


@dataclass
class PostgresServer:
    """One running PostgreSQL server and where to reach it."""

    bindir: Path
    home: Path
    port: int
    process: subprocess.Popen[bytes]
    account: pwd.struct_passwd | None
    databases: list[str] = field(default_factory=list)

    @property
    def admin_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, *, durable: bool = False, settings: dict[str, str] | None = None) -> PostgresServer:
        bindir = find_bindir()
        if bindir is None:
            raise PostgresMissing("no PostgreSQL server binaries (initdb, postgres) on this machine")
        account = _account()
        home = Path(tempfile.mkdtemp(prefix="fusionkit-pg-"))
        try:
            as_user: dict[str, Any] = {}
            if account is not None:
                os.chown(home, account.pw_uid, account.pw_gid)
                as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(home / "data"), "-U", PG_USER, "--auth=trust", "-E", "UTF8"],
                check=True,
                capture_output=True,
                **as_user,
            )
            options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(home), "max_connections": "200"}
            if not durable:
                options |= {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
            options |= settings or {}
            for _ in range(3):  # a free port can be taken by someone else before the server binds it
                port = free_port()
                args = [str(bindir / "postgres"), "-D", str(home / "data"), "-p", str(port)]
                for name, value in options.items():
                    args += ["-c", f"{name}={value}"]
                log = open(home / "server.log", "ab")  # noqa: SIM115 - the server writes it while it runs
                process = subprocess.Popen(
                    args, stdout=log, stderr=log, preexec_fn=_die_with_parent(), start_new_session=True, **as_user
                )
                log.close()
                server = cls(bindir, home, port, process, account)
                if server._wait_ready():
                    return server
                server._kill()
            raise RuntimeError(f"PostgreSQL did not start: {(home / 'server.log').read_text()[-2000:]}")
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)  # polling a server that is starting: there is no event to wait on
        return False

    def sql(self, statement: str, params: tuple[Any, ...] = (), database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser; its rows (empty for statements without)."""
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        """A new empty database on this server; its URL."""
        name = f"db_{secrets.token_hex(6)}"
        self.sql(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.url(name)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server and every backend stopped (SIGSTOP) for the block, resumed on every way out: a
        database that answers nothing while its sockets stay open, as a hung host or a half-open
        connection looks to a client (the kernel still acknowledges what is sent to it)."""
        server = psutil.Process(self.process.pid)
        processes = [server, *server.children(recursive=True)]
        for process in processes:
            process.suspend()
        try:
            yield
        finally:
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.resume()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 20 s; then the data directory goes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._kill()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
