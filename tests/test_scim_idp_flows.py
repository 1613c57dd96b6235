"""The two identity providers' request sequences (tests/scim_flows/), end to end against the service."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from groups.models import Group
from tests.factories import TenantFactory
from tests.outbox_helpers import events
from tests.scim_flows import entra, okta
from tests.scim_helpers import Scim, user_body
from users.models import User

pytestmark = pytest.mark.django_db


def run(scim: Scim, flow: list[tuple[str, str, Any, int]], ids: dict[str, str]) -> list[Any]:
    """Each step sent as the IdP sends it; the ids of what it creates filled into the later steps."""
    answers = []
    for method, path, body, status in flow:
        target, _, query = fill_json(path, ids).partition("?")
        pairs = (pair.partition("=") for pair in query.split("&") if pair)
        url = target + ("?" + "&".join(f"{key}={quote(value)}" for key, _, value in pairs) if query else "")
        sent = None if body is None else json.loads(fill_json(json.dumps(body), ids))
        response = scim.call(method.lower(), url, sent)
        assert response.status_code == status, (method, path, response.status_code, response.body)
        if response.status_code == 201:
            ids.setdefault("user" if "/Users" in path else "group", response.body["id"])
        answers.append(response)
    return answers


def fill_json(text: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        text = text.replace("{" + name + "}", value)
    return text


def test_microsoft_entra_id(settings) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="contoso")
    scim = Scim(tenant, name="entra")
    manager = scim.post("/Users", user_body("boss@contoso.example")).body["id"]
    ids = {"manager": manager}
    answers = run(scim, entra.FLOW, ids)
    assert answers[0].body["totalResults"] == 0 and answers[2].body["totalResults"] == 1
    assert answers[3].body["scimType"] == "uniqueness"
    patched = answers[6].body
    assert (
        patched["emails"][0]["value"] == "updatedEmail@microsoft.com"
        and patched["name"]["familyName"] == "updatedFamilyName"
    )
    assert patched["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0100"}]
    assert patched["addresses"] == [{"type": "work", "locality": "Redmond"}]
    assert answers[7].body[entra.ENTERPRISE]["manager"] == {"value": manager}
    assert answers[8].body["active"] is False
    assert answers[9].body["totalResults"] == 0 and answers[13].body["totalResults"] == 1
    assert "members" not in answers[12].body
    row = User.objects.get(pk=ids["user"])  # the suspend rule: disabled and kept, gone for SCIM
    assert row.status == "disabled" and row.email == "updatedEmail@microsoft.com" and "deprovisioned" in row.profile
    assert not Group.objects.filter(pk=ids["group"]).exists()
    assert [t for t, _ in events(aggregate_id=ids["user"])] == ["UserCreated"] + ["UserUpdated"] * 4


def test_okta(settings) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="initech")
    scim = Scim(tenant, name="okta")
    ids: dict[str, str] = {}
    answers = run(scim, okta.FLOW, ids)
    assert answers[0].body == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": [],
    }  # fmt: skip
    assert answers[3].body["name"]["givenName"] == "Another" and answers[3].body["locale"] == "en-US"
    assert answers[4].body["active"] is False and answers[5].body["active"] is True
    assert answers[8].body["members"] == []
    assert answers[11].body["Resources"][0]["members"][0]["value"] == ids["user"]
    assert answers[13].body["active"] is False
    row = User.objects.get(pk=ids["user"])
    assert row.status == "disabled" and row.profile["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert [t for t, _ in events(aggregate_id=ids["group"])] == [
        "GroupCreated", "GroupUpdated", "GroupMembersAdded", "GroupMembersRemoved", "GroupDeleted",
    ]  # fmt: skip
