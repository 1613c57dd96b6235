"""The relay's on-commit poke: one per committed transaction, none after a rollback, never failing a write."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction

from outbox.models import OutboxEvent
from tenants.models import Tenant
from tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_transaction_recording_several_events_pokes_the_relay_once_when_it_commits(
    pokes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            tenant = TenantFactory(slug="acme")
            UserFactory(tenant=tenant, external_id="u1")
            UserFactory(tenant=tenant, external_id="u2")
        assert pokes.sent == []  # recorded, not yet committed

    assert OutboxEvent.objects.count() == 3
    assert len(pokes.sent) == 1
    assert pokes.sent[0]["retry"] is False and pokes.sent[0]["expires"] >= 5


def test_a_rolled_back_transaction_pokes_nothing(pokes, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        TenantFactory(slug="acme")
        raise RuntimeError("the change fails after its event was recorded")

    assert callbacks == [] and pokes.sent == []
    assert not OutboxEvent.objects.exists()


def test_a_broker_outage_when_poking_is_logged_and_the_write_stays_committed(
    pokes, django_capture_on_commit_callbacks, caplog
) -> None:  # type: ignore[no-untyped-def]
    pokes.error = ConnectionError("broker unreachable")

    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        TenantFactory(slug="acme")

    assert Tenant.objects.filter(slug="acme").exists()
    assert OutboxEvent.objects.filter(status="pending").count() == 1  # beat will relay it
    assert "could not poke the outbox relay" in caplog.text
