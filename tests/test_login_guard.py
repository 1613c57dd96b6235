"""Brute-force protection of the password doors (issue 12, row 4): lockout per (username, address),
429 answers, no password hashing while locked, one log line and one count per failed login."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from tests.conftest import ADMIN_PASSWORD, basic

LIMIT = 3
ATTACKER, OTHER = "203.0.113.7", "198.51.100.9"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def low_limit(settings):  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def hashings(monkeypatch):  # type: ignore[no-untyped-def]
    """How many times a password was checked against a stored hash."""
    calls = []
    verify = MD5PasswordHasher.verify

    def counting(self, password, encoded):  # type: ignore[no-untyped-def]
        calls.append(1)
        return verify(self, password, encoded)

    monkeypatch.setattr(MD5PasswordHasher, "verify", counting)
    return calls


def console_login(client, password: str, address: str = ATTACKER, username: str = "root"):  # type: ignore[no-untyped-def]
    return client.post("/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_console_locks_a_username_out_from_one_address_only(client, superuser, hashings) -> None:  # type: ignore[no-untyped-def]
    statuses = [console_login(client, f"wrong-{n}").status_code for n in range(LIMIT)]
    assert statuses == [200] * (LIMIT - 1) + [429]

    hashed_before = len(hashings)
    locked = console_login(client, ADMIN_PASSWORD)
    assert locked.status_code == 429 and locked["Retry-After"] == "900"
    assert b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session  # the right password does not get in while locked
    assert len(hashings) == hashed_before  # refused before any hashing: no CPU spent on a locked pair

    # The same user from another address, and another user from the attacker's address, are not locked.
    assert console_login(client, ADMIN_PASSWORD, address=OTHER).status_code == 302
    client.logout()
    assert console_login(client, "wrong", username="someone-else").status_code == 200


def test_api_basic_locks_out_with_a_429_problem_and_retry_after(superuser, hashings) -> None:  # type: ignore[no-untyped-def]
    attacker = APIClient(REMOTE_ADDR=ATTACKER)
    wrong = [attacker.get("/api/v1/tenants/", HTTP_AUTHORIZATION=basic("root", f"w{n}")) for n in range(LIMIT)]
    assert [r.status_code for r in wrong] == [401] * (LIMIT - 1) + [429]

    hashed_before = len(hashings)
    locked = attacker.get("/api/v1/tenants/", HTTP_AUTHORIZATION=basic("root", ADMIN_PASSWORD))
    assert locked.status_code == 429 and locked["Content-Type"] == "application/problem+json"
    assert locked["Retry-After"] == "900" and locked.json()["title"] == "Too many requests"
    assert len(hashings) == hashed_before

    assert (
        APIClient(REMOTE_ADDR=OTHER)
        .get("/api/v1/tenants/", HTTP_AUTHORIZATION=basic("root", ADMIN_PASSWORD))
        .status_code
        == 200
    )


def test_a_successful_login_clears_the_count(superuser) -> None:  # type: ignore[no-untyped-def]
    client = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(2):
        for n in range(LIMIT - 1):
            assert client.get("/api/v1/tenants/", HTTP_AUTHORIZATION=basic("root", f"w{n}")).status_code == 401
        # A login by the legitimate user resets the pair's count (the console's form logs in).
        assert console_login(Client(), ADMIN_PASSWORD).status_code == 302


def metric(door: str) -> float:
    """``auth_failures_total{door}`` as web's /metrics exports it (the view's renderer, without the
    outbox figures: the view closes the test's database connection)."""
    from iam_project.exposition import render

    text = render(include_outbox=False).decode()
    for family in text_string_to_metric_families(text):
        if family.name == "auth_failures":
            for sample in family.samples:
                if sample.name == "auth_failures_total" and sample.labels == {"door": door}:
                    return sample.value
    return 0.0


def test_failed_logins_are_logged_once_and_counted_by_door(client, superuser, caplog) -> None:  # type: ignore[no-untyped-def]
    before = {door: metric(door) for door in ("console", "api_basic", "api_key")}
    secret = "s3cret-guess-xyz"
    key = "iam_0123abcd_" + "k" * 43
    with caplog.at_level(logging.WARNING, logger="iam.auth"):
        console_login(client, secret)
        APIClient(REMOTE_ADDR=OTHER).get("/api/v1/tenants/", HTTP_AUTHORIZATION=basic("root", secret))
        APIClient(REMOTE_ADDR=OTHER).get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Bearer {key}")

    lines = [r for r in caplog.records if r.name == "iam.auth"]
    assert [(r.getMessage(), r.door, r.username, r.client_address) for r in lines] == [
        ("authentication failed", "console", "root", ATTACKER),
        ("authentication failed", "api_basic", "root", OTHER),
        ("authentication failed", "api_key", "key:iam_0123abcd", OTHER),
    ]
    for record in lines:
        dumped = repr(record.__dict__)
        assert secret not in dumped and "k" * 43 not in dumped
    after = {door: metric(door) for door in ("console", "api_basic", "api_key")}
    assert {door: after[door] - before[door] for door in after} == {"console": 1, "api_basic": 1, "api_key": 1}


def test_the_client_address_behind_trusted_proxies(rf, settings) -> None:  # type: ignore[no-untyped-def]
    from access.login_guard import client_address

    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7")
    assert client_address(request) == "10.0.0.1"  # no trusted proxy: a client's header is not believed
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request) == "203.0.113.7"  # the address our one proxy saw, not the forged left part


def test_web_metrics_leave_the_relay_figures_to_the_worker(client) -> None:  # type: ignore[no-untyped-def]
    """Web's /metrics has no relay counters (they live in the worker, whose exposition keeps them):
    a web 0 would never move and would hide ``absent(outbox_relay_last_success_timestamp_seconds)``."""
    from core import metrics  # noqa: F401 - the counters are registered in this process too
    from iam_project.exposition import render

    web = client.get("/metrics").content.decode()
    worker = render().decode()
    for name in (
        "event_bus_errors_total",
        "outbox_relay_published_total",
        "outbox_relay_last_success_timestamp_seconds",
    ):
        assert f"# TYPE {name} " not in web and f"\n{name}" not in web, name
        assert f"# TYPE {name} " in worker, name
    assert "database_errors_total" in web and "outbox_pending_count" in web
