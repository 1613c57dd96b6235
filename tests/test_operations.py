"""Operator commands: import and export, event replay, tenant lifecycle."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from core.guards import domain_write
from outbox.models import OutboxEvent
from tenants.models import Tenant
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from users.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer", min_value=0, max_value=9)
    DefinitionFactory(tenant=tenant, key="groups", type="string_list")
    UserFactory(tenant=tenant, external_id="existing", email="e@example.com", attributes={"level": 1})
    UserFactory(tenant=tenant, external_id="same", email="s@example.com", attributes={"level": 2})
    return tenant


def jsonl(tmp_path: Path, rows: list, name: str = "users.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


MIXED = [
    {"external_id": "new-1", "email": "n1@example.com", "attributes": {"level": 3, "groups": ["a"]}},
    {"external_id": "new-2", "display_name": "Two"},
    {"external_id": "existing", "email": "e@example.com", "attributes": {"level": 5}},  # updated
    {"external_id": "same", "email": "s@example.com", "attributes": {"level": 2}},  # unchanged
    {"external_id": "bad-1", "attributes": {"level": 99}},  # invalid: max
    {"external_id": "new-1", "attributes": {"level": 4}},  # invalid: duplicate in the file
    {"external_id": "bad-2", "colour": "red"},  # invalid: unknown field
]


def run_import(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_users", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code)
    return code, out.getvalue(), err.getvalue()


def events_after(sequence: int) -> list[tuple[str, str]]:
    rows = OutboxEvent.objects.filter(sequence__gt=sequence).order_by("sequence")
    return [(row.event_type, row.payload["data"]["external_id"]) for row in rows]


def last_sequence() -> int:
    last = OutboxEvent.objects.order_by("-sequence").first()
    return last.sequence if last else 0


def test_partial_import_writes_valid_rows_and_reports_the_rest(acme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = jsonl(tmp_path, MIXED)
    start = last_sequence()
    code, out, _ = run_import(str(path), "--tenant", "acme", "--mode", "partial", "--json")
    summary = json.loads(out)
    assert code == 1
    assert (summary["created"], summary["updated"], summary["unchanged"], summary["invalid"]) == (2, 1, 1, 3)
    assert summary["written"] is True
    assert sorted(events_after(start)) == sorted(
        [("UserCreated", "new-1"), ("UserCreated", "new-2"), ("UserAttributesChanged", "existing")]
    )
    assert User.objects.get(external_id="existing").attributes == {"level": 5}
    with open(tmp_path / "users.jsonl.errors.csv") as handle:
        report = list(csv.DictReader(handle))
    assert {(r["line"], r["rule"]) for r in report} == {("5", "max"), ("6", "duplicate"), ("7", "unknown_field")}

    start = last_sequence()
    code, out, _ = run_import(str(jsonl(tmp_path, MIXED[:4], "again.jsonl")), "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["unchanged"] == 4 and events_after(start) == []


def test_atomic_import_with_invalid_rows_writes_nothing(acme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    start, users = last_sequence(), User.objects.count()
    code, out, _ = run_import(str(jsonl(tmp_path, MIXED)), "--tenant", "acme", "--mode", "atomic", "--json")
    assert code == 1 and json.loads(out)["written"] is False and json.loads(out)["invalid"] == 3
    assert User.objects.count() == users and events_after(start) == []
    code, out, _ = run_import(
        str(jsonl(tmp_path, MIXED[:4], "good.jsonl")), "--tenant", "acme", "--mode", "atomic", "--json"
    )
    assert code == 0 and json.loads(out)["created"] == 2 and User.objects.count() == users + 2


def test_dry_run_counts_and_writes_nothing(acme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    start, users = last_sequence(), User.objects.count()
    code, out, _ = run_import(str(jsonl(tmp_path, MIXED[:4])), "--tenant", "acme", "--dry-run", "--json")
    summary = json.loads(out)
    assert code == 0 and (summary["created"], summary["updated"], summary["unchanged"]) == (2, 1, 1)
    assert summary["written"] is False and User.objects.count() == users and events_after(start) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("latin1.jsonl", b'{"external_id": "caf\xe9"}\n', "not UTF-8"),
        ("truncated.jsonl", b'{"external_id": "a"}\n{"external_id": "b", "attri', "not valid JSON"),
        ("array.jsonl", b"[1, 2]\n", "JSON object"),
        ("semicolons.csv", b"external_id;email\na;a@example.com\n", "wrong delimiter"),
        ("no-id.csv", b"email,display_name\na@example.com,A\n", "missing column: external_id"),
        ("extra.csv", b"external_id,shoe_size\na,44\n", "unknown columns"),
        ("ragged.csv", b"external_id,email\na,a@example.com,extra\n", "fields where the header has"),
        ("latin1.csv", b"external_id\ncaf\xe9\n", "not UTF-8"),
        ("empty.csv", b"", "empty file"),
    ],
)
def test_malformed_files_are_refused_before_writing(acme, tmp_path, name, content, message) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    # a good first row, so that a streaming importer would have written something already
    path.write_bytes(content)
    start, users = last_sequence(), User.objects.count()
    code, _, err = run_import(str(path), "--tenant", "acme", "--mode", "partial")
    assert code == 2 and message in err and "nothing was imported" in err
    assert User.objects.count() == users and events_after(start) == []


def test_csv_import_and_export_round_trip(acme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "users.csv"
    path.write_text(
        "external_id,email,display_name,status,attributes\n"
        'auth0|x/1,x@example.com,"Doe, Jane",active,"{""level"": 4, ""groups"": [""a"", ""b""]}"\n'
        "plain,,,disabled,\n"
    )
    code, out, _ = run_import(str(path), "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["created"] == 2
    assert User.objects.get(external_id="auth0|x/1").display_name == "Doe, Jane"
    for fmt in ("csv", "jsonl"):
        exported = tmp_path / f"export.{fmt}"
        call_command(
            "export_tenant", "--tenant", "acme", "--format", fmt, "--output", str(exported), stderr=io.StringIO()
        )
        start = last_sequence()
        code, out, _ = run_import(str(exported), "--tenant", "acme", "--json")
        summary = json.loads(out)
        assert code == 0 and summary["rows"] == User.objects.filter(tenant=acme).count() == summary["unchanged"]
        assert events_after(start) == []


FORMULAS = {
    '=HYPERLINK("http://evil.example","x")': "=1+1",
    "+491701234567": "+SUM(A1:A9)",
    "-minus": "-2+3",
    "@alice": "@SUM(1)",
    "'already-quoted": "'=not a formula",
}


def _csv_cells(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_export_escapes_formula_cells_and_imports_back_to_the_same_values(acme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for external_id, display_name in FORMULAS.items():
        UserFactory(tenant=acme, external_id=external_id, display_name=display_name, email="")
    UserFactory(tenant=acme, external_id="tabbed", display_name="\tcalc", email="")
    exported = tmp_path / "export.csv"

    call_command(
        "export_tenant", "--tenant", "acme", "--format", "csv", "--output", str(exported), stderr=io.StringIO()
    )

    rows = {row[0]: row for row in _csv_cells(exported)[1:]}
    for external_id, display_name in FORMULAS.items():
        assert rows["'" + external_id][2] == "'" + display_name
    assert rows["tabbed"][2] == "'\tcalc"
    for row in rows.values():
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row

    start = last_sequence()
    code, out, _ = run_import(str(exported), "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["unchanged"] == User.objects.filter(tenant=acme).count()
    assert events_after(start) == []
    stored = dict(User.objects.filter(tenant=acme).values_list("external_id", "display_name"))
    assert {key: stored[key] for key in FORMULAS} == FORMULAS


def test_import_error_report_escapes_formula_cells(acme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = jsonl(tmp_path, [{"external_id": "=cmd|' /C calc'!A0", "attributes": {"level": 99}}])

    code, _, _ = run_import(str(path), "--tenant", "acme", "--mode", "partial")

    assert code == 1
    _header, *rows = _csv_cells(tmp_path / "users.jsonl.errors.csv")
    assert [(row[1], row[3]) for row in rows] == [("'=cmd|' /C calc'!A0", "max")]


@pytest.mark.parametrize(
    "value", ["=1+1", "+1", "-1", "@x", "\tx", "\rx", "'", "''", "'=x", "''=x", "plain", "", "a=b", "'plain"]
)
def test_csv_cell_escaping_is_reversible_and_leaves_no_formula(value) -> None:  # type: ignore[no-untyped-def]
    from core.csv_cells import cell_escape, cell_unescape

    escaped = cell_escape(value)

    assert cell_unescape(escaped) == value
    assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_every_csv_writer_of_the_service_escapes_its_cells() -> None:
    root = Path(__file__).resolve().parent.parent
    offenders = [
        str(path.relative_to(root))
        for path in root.glob("*/**/*.py")
        if not path.is_relative_to(root / ".venv")
        and not path.is_relative_to(root / "tests")
        and path.name != "csv_cells.py"
        and ("csv.writer(" in (text := path.read_text()) or "csv.DictWriter(" in text)
    ]
    assert offenders == [], "write CSV through core.csv_cells.csv_writer"


def test_import_into_an_unknown_tenant_is_a_clear_error(acme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="no tenant"):
        run_import(str(jsonl(tmp_path, MIXED)), "--tenant", "nope")


# --- tenant lifecycle ------------------------------------------------------------------------------
def test_tenant_lifecycle_commands_and_what_the_api_and_pip_answer(acme, api) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("create_tenant", "beta", "--name", "Beta", stdout=out)
    assert "created tenant beta" in out.getvalue()
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", "beta", "--name", "Again", stdout=io.StringIO())
    call_command("suspend_tenant", "acme", stdout=io.StringIO())
    assert api.get("/api/v1/tenants/acme/").json()["status"] == "suspended"
    assert api.get("/api/v1/pip/tenants/acme/subjects/existing").json()["tenant"]["status"] == "suspended"
    call_command("resume_tenant", "acme", stdout=io.StringIO())
    call_command("delete_tenant", "acme", stdout=io.StringIO())
    assert api.get("/api/v1/tenants/acme/").status_code == 404
    assert api.get("/api/v1/pip/tenants/acme/subjects/existing").status_code == 404
    batch = api.post(
        "/api/v1/pip/resolve", {"subjects": [{"tenant": "acme", "external_id": "existing"}]}, format="json"
    )
    assert json.loads(batch.content)["results"][0]["found"] is False
    with pytest.raises(CommandError, match="restored until"):
        call_command("purge_tenant", "acme", stdout=io.StringIO())
    call_command("restore_tenant", "acme", stdout=io.StringIO())
    assert api.get("/api/v1/pip/tenants/acme/subjects/existing").status_code == 200
    types = list(
        OutboxEvent.objects.filter(aggregate_id=acme.id).order_by("sequence").values_list("event_type", flat=True)
    )
    assert types[-4:] == ["TenantUpdated", "TenantUpdated", "TenantDeleted", "TenantRestored"]


def test_purge_after_retention_removes_everything_with_one_event(acme, settings) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import tenant_delete, tenants_purge_due

    tenant_delete(tenant=acme)
    assert tenants_purge_due() == []
    with domain_write():
        Tenant.objects.filter(pk=acme.pk).update(
            deleted_at=timezone.now() - timedelta(days=settings.TENANT_RETENTION_DAYS + 1)
        )
    assert tenants_purge_due() == ["acme"]
    assert not Tenant.objects.filter(pk=acme.pk).exists() and not User.objects.filter(tenant_id=acme.pk).exists()
    purged = OutboxEvent.objects.get(event_type="TenantPurged")
    assert purged.payload["data"]["users_removed"] == 2


def test_purge_force(acme) -> None:  # type: ignore[no-untyped-def]
    call_command("delete_tenant", "acme", stdout=io.StringIO())
    out = io.StringIO()
    call_command("purge_tenant", "acme", "--force", stdout=out)
    assert "purged acme with 2 users" in out.getvalue()


# --- replay ----------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.nats
def test_replayed_events_reach_jetstream_once_each_under_new_ids(event_bus) -> None:  # type: ignore[no-untyped-def]
    from django.conf import settings

    from tests.jetstream import stream_messages
    from tests.outbox_helpers import drain_outbox

    tenant = TenantFactory(slug="acme")
    UserFactory(tenant=tenant, external_id="a")
    UserFactory(tenant=tenant, external_id="b")
    TenantFactory(slug="other")
    drain_outbox()
    out = io.StringIO()
    call_command("replay_events", "--tenant", "acme", "--type", "UserCreated", "--dry-run", stdout=out)
    assert "would replay: 2" in out.getvalue()
    call_command("replay_events", "--tenant", "acme", "--type", "UserCreated", stdout=out)
    drain_outbox()
    stored = stream_messages(event_bus.url, settings.NATS_STREAM_NAME)
    replays = [m for m in stored if "replayof" in m.envelope]
    originals = {m.envelope["id"]: m for m in stored if "replayof" not in m.envelope}
    assert len(replays) == 2 and len(stored) == 6  # 4 originals (2 tenants, 2 users) and 2 replays
    for replay in replays:
        original = originals[replay.envelope["replayof"]]
        assert (
            replay.msg_id != original.msg_id
            and replay.envelope["aggregateversion"] == original.envelope["aggregateversion"]
        )
        assert replay.envelope["data"] == original.envelope["data"]
    drain_outbox()
    assert len(stream_messages(event_bus.url, settings.NATS_STREAM_NAME)) == 6  # once each
    with pytest.raises(CommandError, match="unknown event types"):
        call_command("replay_events", "--type", "UserExploded", stdout=io.StringIO())


# --- import jobs: API and console ----------------------------------------------------------------------
def test_import_job_over_the_api(acme, api, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    body = "".join(json.dumps(row) + "\n" for row in MIXED)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/tenants/acme/imports/?mode=partial&file_name=users.jsonl",
            body,
            content_type="application/x-ndjson",
        )
    assert response.status_code == 202, response.content
    location = response["Location"]
    job = api.get(location).json()
    assert job["status"] == "succeeded" and job["written"] is True
    assert (job["created"], job["updated"], job["unchanged"], job["invalid"]) == (2, 1, 1, 3)
    report = api.get(f"{location}report/")
    assert report["Content-Type"] == "text/csv" and "duplicate" in report.content.decode()
    assert [j["id"] for j in api.get("/api/v1/tenants/acme/imports/").json()["results"]] == [job["id"]]


def test_import_job_api_refusals(acme, api, django_capture_on_commit_callbacks, settings) -> None:  # type: ignore[no-untyped-def]
    assert api.post("/api/v1/tenants/acme/imports/", "x", content_type="application/pdf").status_code == 400
    assert (
        api.post("/api/v1/tenants/acme/imports/?mode=maybe", "{}", content_type="application/x-ndjson").status_code
        == 400
    )
    assert api.post("/api/v1/tenants/acme/imports/", "", content_type="text/csv").status_code == 400
    settings.IMPORT_MAX_BYTES = 10
    assert (
        api.post("/api/v1/tenants/acme/imports/", "external_id\n" + "a" * 20, content_type="text/csv").status_code
        == 413
    )
    settings.IMPORT_MAX_BYTES = 1024
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/tenants/acme/imports/", b"external_id;email\na;b\n", content_type="text/csv")
    job = api.get(response["Location"]).json()
    assert job["status"] == "failed" and "wrong delimiter" in job["error"]
    assert api.get("/api/v1/tenants/acme/imports/not-a-uuid/").status_code == 404


def test_atomic_import_job_with_an_invalid_row_fails_and_says_nothing_was_written(  # type: ignore[no-untyped-def]
    acme, api, django_capture_on_commit_callbacks
) -> None:
    users = User.objects.count()
    body = "".join(json.dumps(row) + "\n" for row in MIXED)  # valid rows and invalid ones
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/tenants/acme/imports/?mode=atomic", body, content_type="application/x-ndjson")
    job = api.get(response["Location"]).json()
    assert job["status"] == "failed" and job["written"] is False, job
    assert "nothing was written" in job["error"] and job["invalid"] == 3
    assert job["outcome"] == "nothing written — would create 2, update 1 (1 unchanged, 3 invalid)", job["outcome"]
    assert User.objects.count() == users


def test_import_job_as_a_multipart_upload(acme, api, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    """What `curl -F file=@users.csv` sends: a multipart part named file, typed by its name."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("users.csv", b"external_id,email\nmulti-1,m1@example.com\n", "application/octet-stream")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/tenants/acme/imports/?mode=atomic", {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    job = api.get(response["Location"]).json()
    assert (job["status"], job["format"], job["file_name"], job["created"]) == ("succeeded", "csv", "users.csv", 1)
    assert job["outcome"] == "created 1, updated 0, unchanged 0, invalid 0"
    assert User.objects.filter(tenant=acme, external_id="multi-1").exists()
    unknown = SimpleUploadedFile("users.pdf", b"%PDF", "application/pdf")
    refused = api.post("/api/v1/tenants/acme/imports/", {"file": unknown}, format="multipart")
    assert refused.status_code == 400 and refused.json()["errors"][0]["rule"] == "content_type"
    missing = api.post("/api/v1/tenants/acme/imports/", {"other": "x"}, format="multipart")
    assert missing.status_code == 400 and missing.json()["errors"][-1]["rule"] == "required"


def test_console_import_with_dry_run_preview_then_for_real(
    acme, admin_client_logged_in, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    from imports.models import ImportJob

    upload = SimpleUploadedFile("users.jsonl", "".join(json.dumps(row) + "\n" for row in MIXED[:4]).encode())
    users = User.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(
            "/admin/imports/importjob/add/", {"tenant": acme.pk, "upload": upload, "mode": "atomic", "dry_run": "on"}
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    preview = ImportJob.objects.get()
    assert preview.status == "succeeded" and (preview.created, preview.updated, preview.unchanged) == (2, 1, 1)
    assert User.objects.count() == users and not preview.written
    page = admin_client_logged_in.get(f"/admin/imports/importjob/{preview.pk}/change/").content.decode()
    assert "succeeded" in page.lower() and "nothing written — would create 2, update 1" in page
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_logged_in.post(
            "/admin/imports/importjob/", {"action": "run_for_real", "_selected_action": [str(preview.pk)]}
        )
    real = ImportJob.objects.exclude(pk=preview.pk).get()
    assert real.written and User.objects.count() == users + 2


def test_console_error_report_download(acme, admin_client_logged_in, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    from imports.models import ImportJob

    upload = SimpleUploadedFile("users.jsonl", "".join(json.dumps(row) + "\n" for row in MIXED).encode())
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_logged_in.post(
            "/admin/imports/importjob/add/", {"tenant": acme.pk, "upload": upload, "mode": "partial"}
        )
    job = ImportJob.objects.get()
    response = admin_client_logged_in.get(f"/admin/imports/importjob/{job.pk}/report/")
    assert response.status_code == 200 and "unknown_field" in response.content.decode()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_stream_is_read_once_and_a_late_malformed_line_rolls_back_every_batch(acme, fmt, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from imports import transfer

    monkeypatch.setattr(transfer, "BATCH_ROWS", 1)  # the good rows go through users_upsert before the bad line
    good = [f"u{n}" for n in range(3)]
    if fmt == "jsonl":
        content = "".join(f'{{"external_id": "{name}"}}\n' for name in good)
        bad = '{"external_id": "late", "attri'
    else:
        content, bad = "external_id\n" + "".join(f"{name}\n" for name in good), "a,too,many\n"
    stream = io.BytesIO((content + bad).encode())
    start, users = last_sequence(), User.objects.count()
    with pytest.raises(transfer.FileFormatError):
        transfer.users_import(tenant=acme, stream=stream, fmt=fmt, mode="partial")
    assert User.objects.count() == users and events_after(start) == []
    assert not stream.closed  # the caller's stream: the reader leaves it open

    result = transfer.users_import(tenant=acme, stream=io.BytesIO(content.encode()), fmt=fmt)
    assert (result.rows, result.report.created, result.written) == (3, 3, True)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"declared": "csv", "name": "users.jsonl"}, "csv"),
        ({"media_type": "application/x-ndjson; charset=utf-8", "name": "users.csv"}, "jsonl"),
        ({"name": "USERS.CSV"}, "csv"),
        ({"name": "users.ndjson"}, "jsonl"),
        ({"name": "users.txt"}, None),
        ({"name": "users.txt", "fallback": "jsonl"}, "jsonl"),
    ],
)
def test_one_file_format_detector(arguments, expected) -> None:  # type: ignore[no-untyped-def]
    from imports.formats import file_format

    assert file_format(**arguments) == expected
