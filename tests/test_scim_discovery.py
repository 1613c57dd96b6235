"""SCIM authentication (a Bearer key with scim:provision on the tenant) and discovery (RFC 7644 §4)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.factories import DefinitionFactory, TenantFactory
from tests.scim_helpers import ENTERPRISE, ERROR, GROUP, TENANT_EXT, USER, Scim

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer", required=True)
    DefinitionFactory(tenant=tenant, key="salary", type="number")
    DefinitionFactory(tenant=tenant, key="remote", type="boolean")
    DefinitionFactory(tenant=tenant, key="hired", type="datetime")
    DefinitionFactory(tenant=tenant, key="born", type="date")
    DefinitionFactory(tenant=tenant, key="projects", type="string_list")
    DefinitionFactory(tenant=tenant, key="region", type="enum", allowed_values=["eu", "us"])
    DefinitionFactory(tenant=tenant, key="motto", type="string", target="tenant")  # not a user attribute
    return tenant


def test_no_key_is_401_in_scim_form(acme) -> None:  # type: ignore[no-untyped-def]
    response = APIClient().get("/scim/v2/tenants/acme/Users")
    assert response.status_code == 401
    body = json.loads(response.content)
    assert body["schemas"] == [ERROR] and body["status"] == "401"
    assert response["WWW-Authenticate"].startswith("Bearer")
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer iam_00000000_nope")
    assert bad.get("/scim/v2/tenants/acme/Users").status_code == 401


def test_a_key_without_the_scope_is_403_and_another_tenant_404(acme) -> None:  # type: ignore[no-untyped-def]
    reader = Scim(acme, scopes=("directory:write",), name="rest")
    response = reader.get("/Users")
    assert response.status_code == 403 and response.body["schemas"] == [ERROR]
    other = TenantFactory(slug="other")
    scim = Scim(acme)
    assert scim.get("/Users").status_code == 200
    for path in ("/Users", "/ServiceProviderConfig", "/Schemas"):
        outside = scim.client.get(f"/scim/v2/tenants/other{path}")
        assert outside.status_code == 404, path
        assert json.loads(outside.content)["status"] == "404"
    assert scim.client.get(f"/scim/v2/tenants/{acme.id}/Users").status_code == 200  # by id as well
    assert other.slug == "other"


def test_json_and_scim_json_both_accepted(acme) -> None:  # type: ignore[no-untyped-def]
    scim = Scim(acme)
    body = json.dumps({"schemas": [USER], "userName": "plain", TENANT_EXT: {"clearance": 1}})
    plain = scim.client.post(scim.base + "/Users", data=body, content_type="application/json")
    assert plain.status_code == 201, plain.content
    asked = scim.client.get(scim.base + "/Users", HTTP_ACCEPT="application/json")
    assert asked["Content-Type"].startswith("application/json")
    assert scim.get("/Users")["Content-Type"].startswith("application/scim+json")
    xml = scim.client.post(scim.base + "/Users", data="<user/>", content_type="application/xml")
    assert xml.status_code == 415 and json.loads(xml.content)["schemas"] == [ERROR]
    assert scim.client.post(scim.base + "/ServiceProviderConfig", {}).status_code == 405


def test_service_provider_config_is_truthful(acme, settings) -> None:  # type: ignore[no-untyped-def]
    config = Scim(acme).get("/ServiceProviderConfig").body
    assert config["patch"] == {"supported": True} and config["changePassword"] == {"supported": False}
    assert config["filter"] == {"supported": True, "maxResults": settings.SCIM_MAX_RESULTS}
    assert config["sort"]["supported"] and config["etag"]["supported"]
    assert config["bulk"] == {
        "supported": True,
        "maxOperations": settings.SCIM_BULK_MAX_OPERATIONS,
        "maxPayloadSize": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
    }
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"


def test_resource_types(acme) -> None:  # type: ignore[no-untyped-def]
    scim = Scim(acme)
    listed = scim.get("/ResourceTypes").body
    assert listed["totalResults"] == 2 and {r["id"] for r in listed["Resources"]} == {"User", "Group"}
    user = scim.get("/ResourceTypes/User").body
    assert user["endpoint"] == "/Users" and user["schema"] == USER
    assert [e["schema"] for e in user["schemaExtensions"]] == [ENTERPRISE, TENANT_EXT]
    assert scim.get("/ResourceTypes/Nope").status_code == 404


def test_schemas_include_the_tenant_extension_typed_from_its_definitions(acme) -> None:  # type: ignore[no-untyped-def]
    scim = Scim(acme)
    ids = [s["id"] for s in scim.get("/Schemas").body["Resources"]]
    assert ids == [USER, GROUP, ENTERPRISE, TENANT_EXT]
    extension = scim.get(f"/Schemas/{TENANT_EXT}").body
    by_name = {a["name"]: a for a in extension["attributes"]}
    assert set(by_name) == {"clearance", "salary", "remote", "hired", "born", "projects", "region"}
    assert {name: a["type"] for name, a in by_name.items()} == {
        "clearance": "integer", "salary": "decimal", "remote": "boolean", "hired": "dateTime",
        "born": "string", "projects": "string", "region": "string",
    }  # fmt: skip
    assert by_name["projects"]["multiValued"] is True and by_name["region"]["multiValued"] is False
    assert by_name["region"]["canonicalValues"] == ["eu", "us"] and "canonicalValues" not in by_name["salary"]
    assert by_name["clearance"]["required"] is True and by_name["salary"]["required"] is False
    core = {a["name"]: a for a in scim.get(f"/Schemas/{USER}").body["attributes"]}
    assert core["userName"]["uniqueness"] == "server" and core["userName"]["required"]
    assert core["groups"]["mutability"] == "readOnly"
    assert scim.get("/Schemas/urn:nope").status_code == 404
    DefinitionFactory(tenant=acme, key="badge", type="string")
    assert "badge" in {a["name"] for a in scim.get(f"/Schemas/{TENANT_EXT}").body["attributes"]}
