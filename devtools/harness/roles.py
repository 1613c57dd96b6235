"""The service's own processes (gunicorn, Celery worker and beat, ``manage.py``), their environment, HTTP to them."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devtools.harness.children import REPO, Proc, port_open, wait_until
from iam_project.roles import role_command

BIN = Path(sys.executable).parent if (Path(sys.executable).parent / "gunicorn").exists() else REPO / ".venv" / "bin"
PYTHON = str(BIN / "python")
MANAGE = str(REPO / "manage.py")
SECRET_KEY = "proc-tests-secret-key-" + "x" * 38  # 60 characters
assert len(SECRET_KEY) == 60

# Variables of this process that may reach a child (it builds its own settings from the rest).
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_RUNTIME_DIR", "SYSTEMROOT")


# --- environment ---------------------------------------------------------------------------------
def base_env(**values: str) -> dict[str, str]:
    """A clean environment: PATH & co. from this process, nothing of Django's or the app's."""
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


def inherited_env(*, drop_prefixes: tuple[str, ...], drop: tuple[str, ...] = (), **values: str) -> dict[str, str]:
    """This process's environment without the variables a child must not inherit, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes) and k not in drop}
    env.update(values)
    return env


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


# --- the roles -----------------------------------------------------------------------------------
def gunicorn(
    workdir: Path, env: dict[str, str], *, port: int, workers: int, name: str = "gunicorn", bin_dir: Path = BIN
) -> Proc:
    argv = role_command("web", "--bind", f"127.0.0.1:{port}", "--workers", str(workers), bin_dir=bin_dir)
    return Proc(name, argv, env, workdir)


def celery_worker(workdir: Path, env: dict[str, str], *flags: str, name: str = "worker", bin_dir: Path = BIN) -> Proc:
    return Proc(name, role_command("worker", *flags, bin_dir=bin_dir), env, workdir)


def celery_beat(
    workdir: Path, env: dict[str, str], *flags: str, schedule: Path, name: str = "beat", bin_dir: Path = BIN
) -> Proc:
    # The last --schedule wins: the caller's own file instead of the image's /tmp one.
    return Proc(name, role_command("beat", *flags, "--schedule", str(schedule), bin_dir=bin_dir), env, workdir)


def manage(args: Iterable[str], env: dict[str, str], *, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>``, bounded by ``timeout`` (the child is killed when it is over)."""
    return subprocess.run(
        [PYTHON, MANAGE, *args], env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def manage_output(env: dict[str, str], *args: str, timeout: float = 3600) -> str:
    """``manage.py <args>``'s stdout; ``RuntimeError`` with its output when it fails."""
    out = manage(args, env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def wait_for_http(proc: Proc, port: int, path: str = "/healthz", *, timeout: float = 30.0, workers: int = 0) -> None:
    """Until ``path`` answers 200 (and ``workers`` children run), failing at once if the process exits."""

    def ready() -> bool:
        if not proc.running():
            raise AssertionError(f"{proc.name} exited with {proc.poll()} before serving:\n{proc.tail()}")
        if not port_open(port) or len(proc.children()) < workers:
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
