"""Probing real processes for the process-level tests; starting and stopping them is devtools.harness's.

Everything here is bounded in time (every wait has a deadline), talks to loopback only, and stops
only what it started (see :mod:`devtools.harness`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from devtools.harness import Postgres, Proc, wait_until
from devtools.harness import RedisServer as _RedisServer
from devtools.harness.roles import (
    BIN,
    MANAGE,
    PYTHON,
    REPO,
    SECRET_KEY,
    Response,
    base_env,
    celery_beat,
    celery_worker,
    database_url,
    gunicorn,
    http_request,
    inherited_env,
    manage,
    production_env,
    wait_for_http,
)

__all__ = [
    "BIN",
    "MANAGE",
    "PYTHON",
    "REPO",
    "SECRET_KEY",
    "Postgres",
    "Proc",
    "RedisServer",
    "Response",
    "base_env",
    "celery_beat",
    "celery_worker",
    "database_url",
    "gunicorn",
    "http_request",
    "inherited_env",
    "manage",
    "prepare_site",
    "production_env",
    "wait_for_http",
    "wait_until",
]


def prepare_site(env: Mapping[str, str], username: str, password: str, *, migrate_timeout: float = 180) -> str:
    """Migrate, create the console superuser and a ``pip:read`` key with ``manage.py``; the raw key."""
    migrated = manage(["migrate", "--noinput"], dict(env), timeout=migrate_timeout)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
    superuser = {
        "DJANGO_SUPERUSER_USERNAME": username,
        "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
        "DJANGO_SUPERUSER_PASSWORD": password,
    }
    created = manage(["createsuperuser", "--noinput"], {**env, **superuser}, timeout=60)
    assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]
    key = manage(["create_api_key", "--name", "pip-client", "--scopes", "pip:read"], dict(env), timeout=60)
    assert key.returncode == 0 and key.stdout.strip(), key.stdout[-2000:] + key.stderr[-2000:]
    return key.stdout.strip().splitlines()[-1]


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
def RedisServer(directory: Path, port: int | None = None) -> _RedisServer:
    """The harness's RedisServer; the test fails under CI=true when redis-server is missing, and skips elsewhere."""
    import pytest

    try:
        return _RedisServer(directory, port)
    except FileNotFoundError as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} — required under CI=true")
        pytest.skip(str(missing))
