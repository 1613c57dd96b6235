"""Starting, probing and stopping real processes for the process-level tests.

Everything here is bounded in time (every wait has a deadline), talks to loopback only, and stops
only what it started: each child runs in a session of its own and is stopped by its own process
group id; the PostgreSQL helper stops only the server it initialised in its own directory.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devtools.embedded import free_port, port_open
from iam_project.roles import role_command

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent if (Path(sys.executable).parent / "gunicorn").exists() else REPO / ".venv" / "bin"
PYTHON = str(BIN / "python")
MANAGE = str(REPO / "manage.py")
SECRET_KEY = "proc-tests-secret-key-" + "x" * 38  # 60 characters
assert len(SECRET_KEY) == 60

# Variables of the pytest process that must not leak into a child (it builds its own settings).
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_RUNTIME_DIR", "SYSTEMROOT")


# --- waiting -------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, message: str = "") -> Any:
    """Return the first truthy value of ``predicate()``; fail with ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise  # the predicate knows it will never hold (e.g. the process exited)
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message or 'condition'} not met within {timeout:.0f} s (last error: {last_error!r})")
        time.sleep(interval)


# --- environment ---------------------------------------------------------------------------------
def base_env(**values: str) -> dict[str, str]:
    """A clean environment: PATH & co. from the test process, nothing of Django's or the app's."""
    env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = "iam_project.settings"
    env.update({key: str(value) for key, value in values.items()})
    return env


def production_env(
    *,
    database_url: str,
    event_bus_url: str,
    broker_url: str = "redis://127.0.0.1:1/0",
    metrics_dir: Path | str | None = None,
    data_dir: Path | str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The production-mode environment of every role, with valid values unless told otherwise."""
    values = {
        "IAM_ENV": "production",
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "EVENT_BUS_URL": event_bus_url,
        "CELERY_BROKER_URL": broker_url,
        "WORKER_METRICS_PORT": "0",  # a worker that got this far must not bind 0.0.0.0:9100
        "LOG_LEVEL": "INFO",
    }
    if metrics_dir is not None:
        values["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if data_dir is not None:
        values["IAM_DATA_DIR"] = str(data_dir)
    values.update(extra)
    return base_env(**values)


def database_url(db: Mapping[str, Any]) -> str:
    """A ``DATABASE_URL`` for a Django ``DATABASES`` entry (TCP or the unix-socket form)."""
    user = quote(str(db.get("USER") or ""), safe="")
    password = str(db.get("PASSWORD") or "")
    credentials = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    name = quote(str(db["NAME"]), safe="")
    host = str(db.get("HOST") or "")
    port = str(db.get("PORT") or "")
    if host.startswith("/"):
        query = f"?host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
        return f"postgres://{credentials}/{name}{query}"
    return f"postgres://{credentials}{host or '127.0.0.1'}{':' + port if port else ''}/{name}"


# --- processes -----------------------------------------------------------------------------------
@dataclass
class Proc:
    """A child process in a session of its own, its stdout and stderr in files (never a full pipe)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    cwd: Path = REPO
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    stdout_path: Path = field(init=False)
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.workdir / f"{self.name}.stdout"
        self.stderr_path = self.workdir / f"{self.name}.stderr"

    def start(self) -> Proc:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: stopped by id, with its children
            )
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def poll(self) -> int | None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    def running(self) -> bool:
        return self.process is not None and self.poll() is None

    def wait(self, timeout: float) -> int:
        """The exit code; ``subprocess.TimeoutExpired`` if it is still running after ``timeout`` s."""
        assert self.process is not None
        code = self.process.wait(timeout)
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    @property
    def runtime(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the child's own process group, SIGKILL after ``timeout`` s. Idempotent."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(5)
        else:
            self._signal_group(signal.SIGKILL)  # leftovers of the group (its own children), if any
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        return self.process.returncode

    def _signal_group(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)  # the group id is the child's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def tail(self, lines: int = 40) -> str:
        text = f"--- {self.name} stdout ---\n{self.stdout()}\n--- {self.name} stderr ---\n{self.stderr()}"
        return "\n".join(text.splitlines()[-lines:])


def gunicorn(workdir: Path, env: dict[str, str], *, port: int, workers: int, name: str = "gunicorn") -> Proc:
    argv = role_command("web", "--bind", f"127.0.0.1:{port}", "--workers", str(workers), bin_dir=BIN)
    return Proc(name, argv, env, workdir)


def celery_worker(workdir: Path, env: dict[str, str], *, name: str = "worker") -> Proc:
    return Proc(name, role_command("worker", bin_dir=BIN), env, workdir)


def celery_beat(workdir: Path, env: dict[str, str], *, schedule: Path, name: str = "beat") -> Proc:
    # The last --schedule wins: the test's own file instead of the image's /tmp one.
    return Proc(name, role_command("beat", "--schedule", str(schedule), bin_dir=BIN), env, workdir)


def manage(args: Iterable[str], env: dict[str, str], *, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>``, bounded by ``timeout`` (the child is killed when it is over)."""
    return subprocess.run(
        [PYTHON, MANAGE, *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_http(proc: Proc, port: int, path: str = "/healthz", *, timeout: float = 30.0) -> None:
    """Until ``path`` answers 200, failing at once (with the output) if the process exits."""

    def ready() -> bool:
        if not proc.running():
            raise AssertionError(f"{proc.name} exited with {proc.poll()} before serving:\n{proc.tail()}")
        if not port_open(port):
            return False
        try:
            return http_request(port, "GET", path, timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=timeout, interval=0.1, message=f"{proc.name} serving {path}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{proc.tail()}") from None


# --- HTTP ----------------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for value in self.headers.get_all("Set-Cookie") or []:
            jar.load(value)
        return {key: morsel.value for key, morsel in jar.items()}


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: float = 15.0,
    host: str | None = None,
) -> Response:
    """One request on a fresh connection to 127.0.0.1:``port`` (``Connection: close``).

    ``host`` sets only the Host header; the connection always goes to the loopback address.
    """
    all_headers = {"Connection": "close", "Host": host or f"127.0.0.1:{port}"}
    all_headers.update(headers or {})
    if isinstance(body, str):
        body = body.encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        connection.close()


def basic_auth(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def console_login(port: int, username: str, password: str) -> dict[str, str]:
    """Log in to the admin console through its form; the cookies (csrftoken, sessionid)."""
    form = http_request(port, "GET", "/admin/login/?next=/admin/")
    assert form.status == 200, form.text[:500]
    cookies = form.cookies()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token and "csrftoken" in cookies, "no CSRF token on the login page"
    from urllib.parse import urlencode

    body = urlencode(
        {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password, "next": "/admin/"}
    )
    answer = http_request(
        port,
        "POST",
        "/admin/login/?next=/admin/",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken']}",
        },
        body=body,
    )
    assert answer.status == 302, f"console login failed: {answer.status} {answer.text[:500]}"
    cookies.update(answer.cookies())
    assert cookies.get("sessionid"), "no session cookie after the console login"
    return cookies


def cookie_header(cookies: Mapping[str, str]) -> str:
    return "; ".join(f"{key}={value}" for key, value in cookies.items())


# --- Prometheus text -----------------------------------------------------------------------------
Samples = dict[tuple[str, frozenset], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: ``{(name, frozenset(labels)): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def sample_sum(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (key, series), value in samples.items() if key == name and wanted <= set(series))


# --- PostgreSQL from the pgserver wheel ----------------------------------------------------------
def pgserver_bin() -> Path:
    """``pgserver/pginstall/bin`` of the installed pgserver wheel (without importing pgserver)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pgserver is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class Postgres:
    """A PostgreSQL of our own on 127.0.0.1:``port`` (trust auth, user ``postgres``), stoppable and restartable.

    Running as root, the binaries run as the system user ``pgserver``, as pgserver itself does
    (``pgserver.postgres_server.PostgresServer``: ``ensure_user_exists('pgserver')``, traversable
    prefixes, the data directory chowned to that user, ``subprocess.run(..., user='pgserver')``).
    """

    SYSTEM_USER = "pgserver"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = pgserver_bin()
        self.base = Path(tempfile.mkdtemp(prefix="iam-proc-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.user: str | None = None
        self.initialised = False
        self.sockets.mkdir()
        if os.geteuid() == 0:
            import stat

            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(self.SYSTEM_USER)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(self.SYSTEM_USER)
            for path in (self.base, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.user = self.SYSTEM_USER

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str], timeout: float) -> str:
        result = subprocess.run(
            argv,
            user=self.user,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{log}")
        return result.stdout

    def init(self) -> Postgres:
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            timeout=60,
        )
        self.initialised = True
        return self

    def start(self) -> Postgres:
        # pg_ctl's own output goes to a pipe that closes when it returns: the server logs to -l.
        options = f"-p {self.port} -k {self.sockets} -h 127.0.0.1 -c fsync=off"
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "30",
                "start",
            ],
            timeout=45,
        )
        wait_until(lambda: port_open(self.port), timeout=10, message=f"postgres on port {self.port}")
        return self

    def stop(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"], timeout=45)

    def postmaster_pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cleanup(self) -> None:
        """Stop this server (ours: its own data directory) if it runs, and delete its files."""
        if self.initialised and self.postmaster_pid() is not None:
            try:
                self.stop()
            except Exception:
                pid = self.postmaster_pid()
                if pid:
                    try:
                        os.kill(pid, signal.SIGQUIT)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(self.base, ignore_errors=True)


# --- logs ----------------------------------------------------------------------------------------
def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` parsed as JSON (a line that is not JSON fails the assertion)."""
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(value, dict), f"line {number} is not a JSON object: {line[:300]!r}"
        parsed.append(value)
    return parsed


def fatal_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if '"level": "FATAL"' in line]


# --- Redis (Debian's redis-server; scripts/system-deps.sh installs it where apt works) -------------
def redis_server_binary() -> str:
    """The redis-server binary; the test fails under CI=true when it is missing, and skips elsewhere."""
    import pytest

    binary = shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(path, os.X_OK)), None
    )
    if binary is None:
        reason = "redis-server is not installed (scripts/system-deps.sh installs Debian's where apt works)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " — required under CI=true")
        pytest.skip(reason)
    return binary


class RedisServer:
    """A redis-server of our own on 127.0.0.1 (nothing kept on disk), stoppable and restartable on its port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.directory), "--protected-mode", "no"]
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: port_open(self.port), timeout=10, interval=0.05, message=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        terminate(self.process)
        self.process = None


def terminate(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM a server the tests started, SIGKILL after ``timeout`` s; nothing when there is none."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
