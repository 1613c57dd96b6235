"""Helpers for the console tests in headless Chromium (Playwright's sync API, Debian's chromium)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No outside network here: without these flags Chromium keeps dialling Google's services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_TIMEOUT_MS = 15_000


def require_chromium() -> None:
    """Fail in CI, skip elsewhere, when Debian's chromium is missing (we never download a browser)."""
    if CHROMIUM.exists():
        return
    message = "Debian chromium not installed (make system-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} missing in CI: {message}")
    pytest.skip(message)


def console_login(page, base_url: str, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Log in through the real admin login form and wait for the console's index."""
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
    assert page.locator("#user-tools").is_visible(), "not logged in"
