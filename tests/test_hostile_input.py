"""Hostile requests answer 4xx problem+json, never 5xx: invalid Unicode, deep nesting, forged cursors,
a missing trailing slash, and PATCH racing DELETE on the same object.

Each case has a fixed example (the probe that once answered 500) and, where the input space is wide,
a bounded generated-input test asserting "never 5xx".
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from urllib.parse import urlencode

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from core.client_json import MAX_DEPTH
from outbox.models import OutboxEvent
from tests.conftest import ADMIN_PASSWORD, basic
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from users.models import User

ROUNDS = itertools.count()  # unique names: generated examples share one test's database state
GENERATED = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def client() -> APIClient:
    """A client that reports a server error as its response (a 500), not as a raised exception."""
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=basic("root", ADMIN_PASSWORD))
    return api


def send(api: APIClient, method: str, url: str, raw: str | bytes, content_type: str = "application/json", **extra):  # type: ignore[no-untyped-def]
    """Send ``raw`` as the JSON body, byte for byte (escape sequences such as ``\\ud800`` stay escapes)."""
    body = raw.encode() if isinstance(raw, str) else raw
    return getattr(api, method)(url, data=body, content_type=content_type, **extra)


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


@pytest.fixture
def acme(superuser):  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="nickname", type="string")
    DefinitionFactory(tenant=tenant, key="groups", type="string_list")
    DefinitionFactory(tenant=tenant, key="motto", type="string", target="tenant")
    user = UserFactory(tenant=tenant, external_id="alice")
    return {"tenant": tenant, "user": user}


# --- lone surrogates --------------------------------------------------------------------------------
SURROGATE_PROBES = [
    ("post", "/api/v1/tenants/acme/users/", '{"external_id": "bob", "attributes": {"nickname": "\\ud800"}}',
     "/attributes/nickname"),
    ("post", "/api/v1/tenants/acme/users/", '{"external_id": "bob", "attributes": {"k\\udc00": "x"}}',
     "/attributes/k\\udc00"),
    ("patch", "/api/v1/tenants/acme/", '{"name": "Acme \\udfff"}', "/name"),
    ("patch", "/api/v1/tenants/acme/", '{"attributes": {"motto": ["\\ud83d"]}}', "/attributes/motto/0"),
    ("post", "/api/v1/pip/resolve", '{"subjects": [{"tenant": "acme", "external_id": "\\ud800"}]}',
     "/subjects/0/external_id"),
    ("post", "/api/v1/tenants/acme/attribute-definitions/", '{"key": "x", "type": "string", "description": "\\ud800"}',
     "/description"),
]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url", "raw", "pointer"), SURROGATE_PROBES)
def test_lone_surrogate_in_a_body_is_400_naming_the_pointer(acme, method, url, raw, pointer) -> None:  # type: ignore[no-untyped-def]
    events = OutboxEvent.objects.count()
    body = problem(send(client(), method, url, raw), 400)
    assert body["errors"] == [{"pointer": pointer, "rule": "unicode", "detail": body["errors"][0]["detail"]}]
    assert OutboxEvent.objects.count() == events


@pytest.mark.django_db
def test_a_surrogate_pair_is_one_valid_character(acme) -> None:  # type: ignore[no-untyped-def]
    response = send(client(), "patch", "/api/v1/tenants/acme/", '{"name": "Acme \\ud83d\\ude00"}')
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Acme \U0001f600"


def _escaped(text: str) -> str:
    """``text`` as a JSON string literal with every non-ASCII character as a ``\\uXXXX`` escape."""
    return json.dumps(text, ensure_ascii=True)


@pytest.mark.django_db
@GENERATED
@given(
    text=st.text(st.characters(codec=None, categories=["Cs", "Lu", "Ll", "Nd", "Zs"]), min_size=1, max_size=8),
    where=st.sampled_from(["value", "key", "tenant", "external_id"]),
)
def test_generated_text_with_surrogates_never_5xx(acme, text, where) -> None:  # type: ignore[no-untyped-def]
    raw = {
        "value": ("post", "/api/v1/tenants/acme/users/", f'{{"external_id": "g{next(ROUNDS)}", "attributes": {{"nickname": {_escaped(text)}}}}}'),
        "key": ("patch", f"/api/v1/tenants/acme/users/{acme['user'].id}/", f'{{"attributes": {{{_escaped(text)}: "x"}}}}'),
        "tenant": ("patch", "/api/v1/tenants/acme/", f'{{"name": {_escaped(text)}}}'),
        "external_id": ("post", "/api/v1/pip/resolve", f'{{"subjects": [{{"tenant": "acme", "external_id": {_escaped(text)}}}]}}'),
    }[where]  # fmt: skip
    response = send(client(), *raw)
    assert response.status_code < 500, response.content
    # A high surrogate followed by a low one is a pair: one valid character once decoded.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in json.loads(_escaped(text))):
        assert problem(response, 400)["errors"][0]["rule"] == "unicode"


# --- nesting --------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_json_nested_a_thousand_deep_is_400(acme, opening) -> None:  # type: ignore[no-untyped-def]
    closing = "]" if opening == "[" else "}"
    raw = '{"attributes": {"groups": ' + opening * 1000 + "1" + closing * 1000 + "}}"
    body = problem(send(client(), "patch", f"/api/v1/tenants/acme/users/{acme['user'].id}/", raw), 400)
    assert body["errors"][0]["rule"] == "depth"


@pytest.mark.django_db
def test_nesting_up_to_the_bound_is_parsed(acme) -> None:  # type: ignore[no-untyped-def]
    inner = "[" * (MAX_DEPTH - 2) + '"x"' + "]" * (MAX_DEPTH - 2)  # inside the body and attributes: MAX_DEPTH levels
    raw = '{"attributes": {"groups": ' + inner + "}}"
    body = problem(send(client(), "patch", f"/api/v1/tenants/acme/users/{acme['user'].id}/", raw), 400)
    assert body["errors"][0]["rule"] == "type"  # reached validation: a list of strings is expected
    too_deep = '{"attributes": {"groups": [' + inner + "]}}"
    assert (
        problem(send(client(), "patch", f"/api/v1/tenants/acme/users/{acme['user'].id}/", too_deep), 400)["errors"][0][
            "rule"
        ]
        == "depth"
    )


def _nested(depth: int, kinds: list[bool]) -> str:
    text = '"\\\\\\"]\\\\[{"'  # a string holding brackets (and escapes) does not count as nesting
    for level in range(depth):
        text = f"[{text}]" if kinds[level % len(kinds)] else f'{{"k{level}": {text}}}'
    return text


@pytest.mark.django_db
@GENERATED
@given(depth=st.integers(min_value=1, max_value=1500), kinds=st.lists(st.booleans(), min_size=1, max_size=5))
def test_generated_nesting_never_5xx(acme, depth, kinds) -> None:  # type: ignore[no-untyped-def]
    raw = '{"attributes": {"groups": ' + _nested(depth, kinds) + "}}"
    response = send(client(), "patch", f"/api/v1/tenants/acme/users/{acme['user'].id}/", raw)
    if depth + 2 > MAX_DEPTH:
        assert problem(response, 400)["errors"][0]["rule"] == "depth"
    else:
        assert response.status_code in (200, 400), response.content


# --- cursors ------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("ordering", ["", "&ordering=external_id", "&ordering=-updated_at"])
@pytest.mark.parametrize("forged", ["p=x", "p=2026-13-45", "o=-1", "r=maybe", "p=a%00b", "not base64 at all"])
def test_forged_cursor_is_400_naming_the_parameter(acme, forged, ordering) -> None:  # type: ignore[no-untyped-def]
    cursor = forged if " " in forged else base64.b64encode(forged.encode()).decode()
    response = client().get("/api/v1/tenants/acme/users/?" + urlencode({"cursor": cursor}) + ordering)
    if forged in ("p=x", "p=2026-13-45") and ordering == "&ordering=external_id":
        assert response.status_code == 200, response.content  # any text is a position in external_id order
        return
    body = problem(response, 400)
    assert body["errors"][0]["pointer"] == "/cursor", body


@pytest.mark.django_db
def test_the_cursor_dot_p_eq_x_probe(acme) -> None:  # type: ignore[no-untyped-def]
    assert problem(client().get("/api/v1/tenants/?cursor=cD14"), 400)["errors"][0]["pointer"] == "/cursor"


@pytest.mark.django_db
def test_real_cursors_still_page(acme) -> None:  # type: ignore[no-untyped-def]
    for i in range(4):
        UserFactory(tenant=acme["tenant"], external_id=f"u{i}")
    api, seen = client(), []
    for ordering in ("external_id", "-created_at", "updated_at"):
        url, seen = f"/api/v1/tenants/acme/users/?page_size=2&ordering={ordering}", []
        while url:
            body = api.get(url).json()
            seen += [u["external_id"] for u in body["results"]]
            url = body["next"]
        assert sorted(seen) == ["alice", "u0", "u1", "u2", "u3"]


@pytest.mark.django_db
@GENERATED
@given(
    cursor=st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda parts: base64.b64encode("&".join(parts).encode()).decode(),
            st.lists(st.sampled_from(["p=", "o=", "r="]).flatmap(lambda k: st.text(max_size=30).map(lambda v: k + v))),
        ),
    ),
    ordering=st.sampled_from(["", "external_id", "-created_at", "updated_at"]),
    path=st.sampled_from(
        ["/api/v1/tenants/", "/api/v1/tenants/acme/users/", "/api/v1/tenants/acme/attribute-definitions/"]
    ),
)
def test_generated_cursors_never_5xx(acme, cursor, ordering, path) -> None:  # type: ignore[no-untyped-def]
    response = client().get(path, {"cursor": cursor, "ordering": ordering})
    assert response.status_code in (200, 400), response.content


# --- the missing trailing slash ----------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/v1/tenants"), ("patch", "/api/v1/tenants/acme"), ("delete", "/api/v1/tenants/acme/users/x")],
)
def test_a_write_without_the_trailing_slash_is_a_404_naming_the_canonical_url(
    acme, settings, debug, method, path
) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = debug
    response = send(client(), method, path + "?x=1", '{"slug": "nope", "name": "Nope"}')
    body = problem(response, 404)
    assert body["canonical_url"] == path + "/?x=1", body
    assert "Location" not in response


@pytest.mark.django_db
def test_a_read_without_the_trailing_slash_redirects(acme) -> None:  # type: ignore[no-untyped-def]
    response = client().get("/api/v1/tenants/acme")
    assert response.status_code == 301 and response["Location"] == "/api/v1/tenants/acme/"


# --- PATCH racing DELETE -------------------------------------------------------------------------------
THREADS = 10


def _race(urls: list[tuple[str, str]]) -> list[int]:
    """Send (method, url) pairs from ``THREADS`` threads released at once; the status codes."""
    barrier, statuses, lock = threading.Barrier(THREADS), [], threading.Lock()
    bodies = {
        "/users/": '{"display_name": "renamed", "attributes": {"nickname": "n"}}',
        "/attribute-definitions/": '{"description": "changed"}',
    }

    def worker(share: list[tuple[str, str]]) -> None:
        api = client()
        try:
            barrier.wait(timeout=60)
            for method, url in share:
                body = next(b for part, b in bodies.items() if part in url)
                response = send(api, method, url, body) if method == "patch" else getattr(api, method)(url)
                with lock:
                    statuses.append(response.status_code)
        finally:
            connection.close()

    shares = [urls[i::THREADS] for i in range(THREADS)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(statuses) == len(urls), "a thread did not finish"
    return statuses


def _targets(tenant, count: int, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    """``count`` users and ``count`` definitions to fight over (unique names: the database is not rolled back)."""
    urls = []
    for i in range(count):
        user = UserFactory(tenant=tenant, external_id=f"racer-{prefix}{i}")
        DefinitionFactory(tenant=tenant, key=f"spare_{prefix}{i}", type="string")
        urls += [
            f"/api/v1/tenants/acme/users/{user.id}/",
            f"/api/v1/tenants/acme/attribute-definitions/spare_{prefix}{i}/",
        ]
    return urls


@pytest.mark.django_db(transaction=True)
def test_ten_threads_patching_and_deleting_the_same_objects_never_5xx(acme) -> None:  # type: ignore[no-untyped-def]
    urls = _targets(acme["tenant"], 5)
    plan = [(method, url) for url in urls for method in ("patch", "patch", "delete", "patch", "delete")] * 3
    statuses = _race(plan)
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {200, 204, 404}, statuses
    assert statuses.count(204) == len(urls)  # each object deleted exactly once
    assert not User.objects.filter(external_id__startswith="racer-").exists()


@pytest.mark.django_db
def test_a_tenant_deleted_while_a_change_was_on_its_way_is_404_not_changed(acme) -> None:  # type: ignore[no-untyped-def]
    """A PATCH that read the tenant before a DELETE committed locks it after: it finds it deleted."""
    from core.errors import NotFound
    from tenants.models import Tenant
    from tenants.services import tenant_delete, tenant_update

    read_by_the_patch = Tenant.objects.get(pk=acme["tenant"].pk)
    tenant_delete(tenant=Tenant.objects.get(pk=acme["tenant"].pk))
    with pytest.raises(NotFound):
        tenant_update(tenant=read_by_the_patch, name="Renamed after its deletion")
    stored = Tenant.objects.get(pk=acme["tenant"].pk)
    assert stored.deleted_at is not None and stored.name != "Renamed after its deletion"


@pytest.mark.django_db(transaction=True)
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    plan=st.lists(st.tuples(st.sampled_from(["patch", "delete", "get"]), st.integers(0, 3)), min_size=10, max_size=30)
)
def test_generated_interleavings_of_patch_and_delete_never_5xx(acme, plan) -> None:  # type: ignore[no-untyped-def]
    urls = _targets(acme["tenant"], 2, prefix=f"g{next(ROUNDS)}")
    statuses = _race([(method, urls[index]) for method, index in plan])
    assert not [s for s in statuses if s >= 500], statuses


# --- import files: the same decoder for each line --------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"external_id": "x", "attributes": {"nickname": "\\ud800"}}', "/attributes/nickname: not valid Unicode"),
        ('{"external_id": "x", "attributes": {"groups": ' + "[" * 1000 + "]" * 1000 + "}}", "nested deeper"),
    ],
)
def test_an_import_line_with_a_lone_surrogate_or_deep_nesting_fails_the_job_naming_the_line(
    acme, django_capture_on_commit_callbacks, line, message
) -> None:  # type: ignore[no-untyped-def]
    body = '{"external_id": "fine"}\n' + line + "\n"
    api = client()
    with django_capture_on_commit_callbacks(execute=True):
        response = send(
            api, "post", "/api/v1/tenants/acme/imports/", body.encode(), content_type="application/x-ndjson"
        )
    assert response.status_code == 202, response.content
    job = api.get(response["Location"]).json()
    assert job["status"] == "failed" and "line 2" in job["error"] and message in job["error"], job
    assert not User.objects.filter(external_id="fine").exists()


# --- what Schemathesis --checks all found (spec mismatches, no 5xx) -------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url", "body", "pointer"),
    [
        ("post", "/api/v1/tenants/", {"slug": "numbers", "name": 0}, "/name"),
        ("post", "/api/v1/tenants/acme/users/", {"external_id": 7}, "/external_id"),
        ("patch", "/api/v1/tenants/acme/", {"name": True}, "/name"),
        ("post", "/api/v1/tenants/acme/attribute-definitions/", {"key": 5, "type": "string"}, "/key"),
    ],
)
def test_a_number_where_the_schema_says_string_is_400(acme, method, url, body, pointer) -> None:  # type: ignore[no-untyped-def]
    errors = problem(getattr(client(), method)(url, body, format="json"), 400)["errors"]
    assert {"pointer": pointer, "rule": "type"} in [{k: e[k] for k in ("pointer", "rule")} for e in errors], errors


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", ["0", "-1", "null", "1.5", "٣"])
def test_a_page_size_that_is_not_a_positive_integer_is_400(acme, page_size) -> None:  # type: ignore[no-untyped-def]
    body = problem(client().get("/api/v1/tenants/acme/users/", {"page_size": page_size}), 400)
    assert body["errors"][0]["pointer"] == "/page_size"


@pytest.mark.django_db
def test_an_api_url_matching_no_route_is_a_problem_404(acme) -> None:  # type: ignore[no-untyped-def]
    problem(client().get("/api/v1/tenants/acme/imports/0.5/"), 404)
    assert client().get("/admin/no-such-page/").status_code in (302, 404)  # the console keeps Django's pages


@pytest.mark.django_db
def test_the_schema_documents_problem_responses_and_closed_request_bodies(acme) -> None:  # type: ignore[no-untyped-def]
    schema = json.loads(client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    post_users = schema["paths"]["/api/v1/tenants/{tenant}/users/"]["post"]
    assert {"400", "401", "403", "404", "409", "413", "415"} <= set(post_users["responses"])
    assert post_users["responses"]["400"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert schema["components"]["schemas"]["UserInputRequest"]["additionalProperties"] is False
    names = [p["name"] for p in schema["paths"]["/api/v1/tenants/{tenant}/users/"]["get"]["parameters"]]
    assert "attr.{key}" not in names and "page_size" in names
