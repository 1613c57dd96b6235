"""core/db/locking.py: the lock → version check → save → conflict skeleton every write service uses."""

from __future__ import annotations

import pytest

from core.db.locking import locked_for_write, save_or_conflict
from core.errors import Conflict, NotFound, PreconditionFailed
from core.guards import domain_write
from tests.factories import TenantFactory, UserFactory
from users.models import User

pytestmark = pytest.mark.django_db


def test_a_stale_version_is_refused_and_a_fresh_locked_copy_is_given() -> None:
    user = UserFactory(tenant=TenantFactory(), external_id="bob")
    with pytest.raises(PreconditionFailed) as stale, locked_for_write(user, expected_version=user.version + 1):
        pytest.fail("the body must not run")
    assert stale.value.current_version == user.version
    with locked_for_write(user, expected_version=user.version) as locked:
        assert locked is not user and locked.pk == user.pk


def test_a_row_deleted_since_it_was_read_is_not_found() -> None:
    user = UserFactory(tenant=TenantFactory(), external_id="bob")
    with domain_write():
        User.objects.filter(pk=user.pk).delete()
    with pytest.raises(NotFound), locked_for_write(user):
        pytest.fail("the body must not run")


def test_a_unique_clash_is_a_conflict_and_the_transaction_goes_on() -> None:
    tenant = TenantFactory()
    UserFactory(tenant=tenant, external_id="bob")
    carol = UserFactory(tenant=tenant, external_id="carol")
    with locked_for_write(carol) as locked:
        locked.external_id = "bob"
        with pytest.raises(Conflict, match="taken"):
            save_or_conflict(locked, "taken")
        assert User.objects.filter(tenant=tenant).count() == 2  # the savepoint rolled back, not the transaction
