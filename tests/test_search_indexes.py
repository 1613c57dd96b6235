"""The search indexes: built CONCURRENTLY when a definition turns searchable, dropped when it stops, and
used by PostgreSQL for every operator class on a realistic table (EXPLAIN, no Seq Scan on users_user)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from attributes import services as attribute_services
from attributes.models import AttributeDefinition, SearchIndex
from attributes.search_indexes import index_name, search_index_drop
from attributes.selectors import definitions_for
from core.guards import domain_write
from tests.factories import DefinitionFactory, TenantFactory
from users.filters import attribute_search
from users.selectors import users_of

ROWS = 30_000
SEED = """
INSERT INTO users_user (id, tenant_id, external_id, email, display_name, status, attributes, version,
                        created_at, updated_at)
SELECT gen_random_uuid(), %(tenant)s, %(prefix)s || i, '', '', 'active',
       jsonb_build_object(
         'clearance', i %% 200, 'score', (i %% 1000) / 10.0, 'department', 'd' || (i %% 100),
         'name', 'name' || i, 'hired', to_char(date '2000-01-01' + (i %% 5000), 'YYYY-MM-DD'),
         'seen', to_char(timestamp '2020-01-01' + i * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
         'contractor', i %% 50 = 0, 'groups', jsonb_build_array('g' || (i %% 300), 'all')
       ) - CASE WHEN i %% 500 = 0 THEN 'name' ELSE '' END,
       1, now() - i * interval '1 second', now()
FROM generate_series(1, %(rows)s) AS i
"""
TYPES = {
    "clearance": "integer", "score": "number", "department": "string", "name": "string", "hired": "date",
    "seen": "datetime", "contractor": "boolean", "groups": "string_list",
}  # fmt: skip
SEARCHABLE = ("clearance", "score", "name", "hired", "seen")


@pytest.fixture
def big(transactional_db):  # type: ignore[no-untyped-def]
    """A tenant of 30,000 users with 8 typed attributes (5 searchable), beside a tenant of 10,000."""
    tenant, other = TenantFactory(slug="big"), TenantFactory(slug="small")
    for key, kind in TYPES.items():
        DefinitionFactory(tenant=tenant, key=key, type=kind, searchable=key in SEARCHABLE)
    # Test data in bulk: the events of 40,000 creations are not what this test is about.
    with domain_write(), connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute(SEED, {"tenant": str(tenant.id), "prefix": "u", "rows": ROWS})
        cursor.execute(SEED, {"tenant": str(other.id), "prefix": "o", "rows": ROWS // 3})
        # VACUUM too: it empties the GIN index's pending list, whose pages the planner otherwise counts
        # against the index (a plan that then depended on whether autovacuum had come by).
        cursor.execute("VACUUM ANALYZE users_user")
        cursor.execute("RESET statement_timeout")
    yield tenant
    for index in SearchIndex.objects.all():
        search_index_drop(name=index.name)


def plan(tenant, q: str) -> str:  # type: ignore[no-untyped-def]
    """The plan of the API's first page: the search, ordered by -created_at, 51 rows."""
    definitions = definitions_for(tenant_id=tenant.id, target="user")  # as the API reads them
    queryset = (
        users_of(tenant=tenant)
        .filter(attribute_search(QueryDict(urlencode({"q": q})), definitions))
        .order_by("-created_at")
    )
    return queryset[:51].explain()


def test_a_searchable_definition_has_a_ready_index(big) -> None:  # type: ignore[no-untyped-def]
    states = dict(SearchIndex.objects.values_list("definition__key", "state"))
    assert not SearchIndex.objects.exclude(error="").values_list("error", flat=True)
    assert states == dict.fromkeys(SEARCHABLE, "ready")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'users_user'")
        names = {row[0] for row in cursor.fetchall()}
    assert {index.name for index in SearchIndex.objects.all()} <= names


GIN = "user_attributes_gin"


OPERATOR_CLASSES = [
    ("department eq d7", GIN),
    ("department in (d7, d8)", GIN),
    ("contractor eq true AND department eq d7", GIN),
    ("groups has g17", GIN),
    ("groups any (g17, g18)", GIN),
    ("groups all (g17, all)", GIN),
    ("clearance ge 199", "clearance"),
    ("clearance between (10, 10)", "clearance"),
    ("score lt 0.2", "score"),
    ("hired between (2001-01-01, 2001-01-03)", "hired"),
    ("seen ge 2020-01-21T00:00:00Z", "seen"),
    ("name startswith name2999", "name"),
    ("name missing", "name"),
    ("name eq name2999", None),  # one user: the GIN or the key's index, either reads one row
    ('seen eq "2020-01-01T00:07:00Z"', None),
    ("clearance ge 199 AND department eq d99 AND groups has g299", None),
]


# An equality on a searchable key, rare or common: the key's index on (expression, created_at) gives
# the first page in order — 51 rows read, no sort of every match.
ORDERED_EQUALITIES = [
    "clearance eq 10",  # 0.5 %
    "clearance eq 199",
    "clearance between (10, 10)",
    "score eq 0.5",  # 0.1 %
    "hired eq 2001-01-01",  # 0.02 %
    "hired between (2001-01-01, 2001-01-01)",
]


def test_every_operator_class_uses_an_index(big) -> None:  # type: ignore[no-untyped-def]
    for q, index in OPERATOR_CLASSES:  # one table for all (seeding it is the slow part)
        assert_uses_index(big, q, index)
    for q in ORDERED_EQUALITIES:
        explained = plan(big, q)
        definition = AttributeDefinition.objects.get(tenant=big, key=q.split()[0])
        assert index_name(definition) in explained and "Sort" not in explained, (q, explained)
    # While a key's index is being built, an equality stays containment (the GIN serves it).
    SearchIndex.objects.filter(definition__key="clearance").update(state=SearchIndex.State.BUILDING)
    explained = plan(big, "clearance eq 10")
    assert "iam_attr_numeric" not in explained and "@> '{\"clearance\": 10}'" in explained, explained


def assert_uses_index(tenant, q: str, index: str | None) -> None:  # type: ignore[no-untyped-def]
    explained = plan(tenant, q)
    assert "Seq Scan on users_user" not in explained, explained
    if index in (None, GIN):
        # containment: the GIN index, or (as PostgreSQL estimates @> at 0.1%) the tenant's index walked
        # in created_at order up to the page; both are index scans
        assert "Index" in explained, explained
    else:
        definition = AttributeDefinition.objects.get(tenant=tenant, key=index)
        assert index_name(definition) in explained, explained


@pytest.fixture
def tall(transactional_db):  # type: ignore[no-untyped-def]
    """A tenant of 200,000 users, the size at which PostgreSQL began to walk it for a 0.5% equality."""
    tenant = TenantFactory(slug="tall")
    for key, kind in TYPES.items():
        DefinitionFactory(tenant=tenant, key=key, type=kind, searchable=key == "clearance")
    with domain_write(), connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute(SEED, {"tenant": str(tenant.id), "prefix": "u", "rows": 200_000})
        # VACUUM too: it empties the GIN index's pending list, whose pages the planner otherwise counts
        # against the index (a plan that then depended on whether autovacuum had come by).
        cursor.execute("VACUUM ANALYZE users_user")
        cursor.execute("RESET statement_timeout")
    yield tenant
    for index in SearchIndex.objects.all():
        search_index_drop(name=index.name)


def test_an_equality_on_any_value_of_a_key_reads_the_keys_index_not_the_tenant(tall) -> None:  # type: ignore[no-untyped-def]
    """Whatever the sampled statistics say of one value, a 0.5% match is read through the key's index,
    not by walking the tenant's rows newest first and filtering each (migration attributes 0004: at
    the default function cost, 2 to 5 values in 10 were walked at this size)."""
    index = index_name(AttributeDefinition.objects.get(tenant=tall, key="clearance"))
    walked = [v for v in range(0, 200, 5) if index not in plan(tall, f"clearance between ({v}, {v})")]
    assert not walked, walked
    # and where matches are common, the walk is right (it stops after a few dozen rows): still taken
    assert "user_tenant_created" in plan(tall, "clearance ge 100")


def first_shape_index(slug: str) -> tuple[AttributeDefinition, str]:
    """A tenant's integer key ``clearance`` (not searchable) and, under the first shape's name, the
    index an earlier release built for it: on the expression alone."""
    tenant = TenantFactory(slug=slug)
    definition = DefinitionFactory(tenant=tenant, key="clearance", type="integer")
    legacy = index_name(definition, shape=1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX {legacy} ON users_user (iam_attr_numeric(attributes -> 'clearance')) "
            f"WHERE tenant_id = '{tenant.id}'::uuid"
        )
    return definition, legacy


def test_an_index_of_the_first_shape_is_replaced_by_the_ordered_one(transactional_db) -> None:  # type: ignore[no-untyped-def]
    """An index an earlier release built on the expression alone is dropped, with its statistics, once
    the key's index on (expression, created_at) is built."""
    from attributes.search_indexes import search_index_sync, statistics_statements

    definition, legacy = first_shape_index("shapes")
    with connection.cursor() as cursor:
        for statement in statistics_statements(definition, legacy):
            cursor.execute(statement.as_string(connection.connection))
    with domain_write():
        AttributeDefinition.objects.filter(pk=definition.pk).update(searchable=True)
    index = search_index_sync(definition_id=definition.pk)
    assert index is not None and index.state == "ready"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indnatts FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname IN (%s, %s)",
            [legacy, index.name],
        )
        found = dict(cursor.fetchall())
        names = [name.replace("attr_search_", "attr_stats_") for name in (legacy, index.name)]
        cursor.execute("SELECT stxname FROM pg_statistic_ext WHERE stxname IN (%s, %s)", names)
        statistics = {row[0] for row in cursor.fetchall()}
    assert found == {index.name: 2}
    assert statistics == {index.name.replace("attr_search_", "attr_stats_")}
    search_index_drop(name=index.name)


def test_clearing_the_flag_before_the_rebuild_drops_the_first_shapes_index_and_row(transactional_db) -> None:  # type: ignore[no-untyped-def]
    """After an upgrade and before the worker rebuilt it, a key's index and its row still carry the
    first shape's name: clearing the flag drops both, not only what the current name would find."""
    from attributes.search_indexes import search_index_sync

    definition, legacy = first_shape_index("before-rebuild")
    SearchIndex.objects.create(definition=definition, name=legacy, state=SearchIndex.State.READY)
    assert search_index_sync(definition_id=definition.pk) is None  # not searchable (any more)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [legacy])
        assert cursor.fetchone()[0] == 0
    assert not SearchIndex.objects.filter(definition=definition).exists()


def test_the_api_answers_from_the_big_table(big, api) -> None:  # type: ignore[no-untyped-def]
    response = api.get("/api/v1/tenants/big/users/", {"q": "clearance ge 199 AND contractor eq false", "page_size": 50})
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == 50
    assert all(user["attributes"]["clearance"] == 199 for user in response.json()["results"])


def test_clearing_the_flag_drops_the_index_and_setting_it_builds_it(big) -> None:  # type: ignore[no-untyped-def]
    definition = AttributeDefinition.objects.get(tenant=big, key="clearance")
    name = index_name(definition)
    attribute_services.definition_update(definition=definition, searchable=False)
    assert not SearchIndex.objects.filter(name=name).exists()
    with CaptureQueriesContext(connection) as queries:
        definition = attribute_services.definition_update(
            definition=AttributeDefinition.objects.get(pk=definition.pk), searchable=True
        )
    assert any("CREATE INDEX CONCURRENTLY" in q["sql"] for q in queries.captured_queries)
    assert SearchIndex.objects.get(name=name).state == "ready"
    assert name in plan(big, "clearance lt 1")


def test_searchable_is_refused_where_no_index_applies(db) -> None:  # type: ignore[no-untyped-def]
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        DefinitionFactory(key="tags", type="string_list", searchable=True)
    assert caught.value.errors[0].pointer == "/searchable"


def test_web_connections_plan_without_parallel_workers(db) -> None:  # type: ignore[no-untyped-def]
    """A web process's page queries run beside many others: no Gather over a walk of the tenant
    (docs/performance.md). The setting rides on the connection; other roles keep the server's."""
    from core.config import ConfigError, database_config, max_parallel_workers

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_parallel_workers_per_gather")
        assert cursor.fetchone() == ("0",)
    assert (max_parallel_workers(None, "web"), max_parallel_workers(None, "worker")) == (0, None)
    assert (max_parallel_workers("2", "web"), max_parallel_workers("server", "web")) == (2, None)
    for bad in ("-1", "two", "1025"):
        with pytest.raises(ConfigError, match="DB_MAX_PARALLEL_WORKERS_PER_GATHER"):
            max_parallel_workers(bad, "web")
    url = "postgres://iam@db:5432/iam"
    server = database_config(url, application_name="iam-worker", statement_timeout_ms=5000)
    assert "max_parallel_workers_per_gather" not in server["OPTIONS"]["options"]
