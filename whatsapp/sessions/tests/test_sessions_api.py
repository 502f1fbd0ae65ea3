"""The sessions API (/api/v1/sessions…) and the simulator's test helpers (/api/v1/test-helpers/sessions/…).

alice owns Acme, bob is a member of Acme, carol owns Globex. Endpoints that need a running session host run one
in-process with the simulator on a manual clock (as test_session_host does); eager Celery runs the host's tasks
(wake-ups, commands) in the test process on the host set as current.
"""
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.host.models import SessionLease
from whatsapp.models import SessionActivity, WhatsAppSession
from whatsapp.sessions import api
from whatsapp.sessions.qr import qr_matrix, qr_svg
from whatsapp.tests.support import current_simulator_host, drain, error, ok, settle

PHONE = "+14155550123"
V1 = "/api/v1"


# --- helpers ------------------------------------------------------------------------------------------------------


def make_session(tenant, name, **fields):
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, **fields)


def reload(tenant, name):
    with tenant_context(tenant):
        return WhatsAppSession.objects.filter(name=name).first()


def activity_kinds(tenant, name):
    with tenant_context(tenant):
        return list(SessionActivity.objects.filter(session__name=name).order_by("id").values_list("kind", flat=True))


def make_unpaid(tenant):
    Subscription.objects.filter(tenant=tenant).update(status="read_only", read_only_since=timezone.now())


@pytest.fixture
def clients(named, api_as):
    return {"alice": api_as(named.alice), "bob": api_as(named.bob), "carol": api_as(named.carol),
            "admin": api_as(named.admin)}


@pytest.fixture
def simulator(settings):
    settings.WHATSAPP_PROVIDER = "simulator"


# Every endpoint that takes a session name: (method, path after /sessions/{name} or test-helpers, body).
BY_NAME = [
    ("get", "sessions/{}", None),
    ("delete", "sessions/{}", None),
    ("post", "sessions/{}/start", {}),
    ("post", "sessions/{}/start", {"use_pairing_code": True, "phone": PHONE}),
    ("post", "sessions/{}/restart", None),
    ("post", "sessions/{}/logout", None),
    ("get", "sessions/{}/qr", None),
    ("post", "sessions/{}/pairing-code", {"phone": PHONE, "wait": False}),
    ("get", "sessions/{}/activity", None),
    ("post", "test-helpers/sessions/{}/scan", {"phone": PHONE}),
    ("post", "test-helpers/sessions/{}/inbound", {"from": PHONE, "text": "hi"}),
    ("post", "test-helpers/sessions/{}/disconnect", None),
    ("post", "test-helpers/sessions/{}/logout", None),
]


def call(client, method, path, name, body=None):
    url = f"{V1}/{path.format(name)}"
    if method == "get":
        return client.get(url)
    if method == "delete":
        return client.delete(url)
    return client.post(url, body or {}, format="json")


# --- list, create, read, delete -----------------------------------------------------------------------------------


def test_create_returns_the_session_and_it_is_listed_and_readable(named, clients):
    data = ok(clients["alice"].post(f"{V1}/sessions", {"name": "front-desk", "label": "Front desk"}, format="json"),
              201)
    assert data["name"] == "front-desk" and data["label"] == "Front desk"
    assert data["status"] == "new" and data["status_display"] == "Not linked"
    assert data["should_run"] is False and data["linked"] is False and data["qr_available"] is False
    assert set(data) >= {"status_detail", "phone", "push_name", "last_activity_at", "pair_code", "qr_expires_at"}
    assert activity_kinds(named.acme, "front-desk") == ["created"]

    listed = clients["alice"].get(f"{V1}/sessions").json()
    assert listed["success"] is True and [s["name"] for s in listed["data"]] == ["front-desk"]
    assert listed["pagination"] == {"page": 1, "limit": 20, "total": 1, "pages": 1}
    assert ok(clients["alice"].get(f"{V1}/sessions/front-desk")) == data


def test_list_paginates_and_filters_by_status(named, clients):
    for i in range(3):
        make_session(named.acme, f"s{i}")
    make_session(named.acme, "live", status="connected", phone=PHONE)
    page = clients["alice"].get(f"{V1}/sessions?page=2&limit=2").json()
    assert [s["name"] for s in page["data"]] == ["s2", "live"]
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 4, "pages": 2}
    assert [s["name"] for s in ok(clients["bob"].get(f"{V1}/sessions?status=connected"))] == ["live"]
    details = error(clients["alice"].get(f"{V1}/sessions?status=bogus"), 400, "invalid_status")["details"]
    assert "connected" in details["allowed"]


def test_delete_removes_the_session_and_its_activity(named, clients):
    ok(clients["alice"].post(f"{V1}/sessions", {"name": "front-desk"}, format="json"), 201)
    response = clients["alice"].delete(f"{V1}/sessions/front-desk")
    assert response.status_code == 204 and response.content == b""
    error(clients["alice"].get(f"{V1}/sessions/front-desk"), 404, "not_found")
    with tenant_context(named.acme):
        assert not SessionActivity.objects.exists()


def test_the_browser_session_works_too(named, client):
    make_session(named.acme, "front-desk")
    make_session(named.globex, "globex-only")
    client.force_login(named.bob)
    assert [s["name"] for s in ok(client.get(f"{V1}/sessions"))] == ["front-desk"]
    error(client.get(f"{V1}/sessions/globex-only"), 404, "not_found")


def test_principals_without_an_active_tenant_are_refused(named, clients, client):
    error(clients["admin"].get(f"{V1}/sessions"), 403, "no_tenant")
    error(client.get(f"{V1}/sessions"), 401, "not_authenticated")
    named.acme.status = "suspended"
    named.acme.save(update_fields=["status"])
    error(clients["alice"].get(f"{V1}/sessions"), 403, "tenant_suspended")


# --- roles --------------------------------------------------------------------------------------------------------


def test_agents_read_sessions_but_only_owners_and_admins_create_start_delete_or_log_out(named, clients):
    bob = clients["bob"]
    error(bob.post(f"{V1}/sessions", {"name": "bobs"}, format="json"), 403, "permission_denied")
    make_session(named.acme, "front-desk")
    error(bob.delete(f"{V1}/sessions/front-desk"), 403, "permission_denied")
    error(bob.post(f"{V1}/sessions/front-desk/logout"), 403, "permission_denied")
    assert reload(named.acme, "front-desk").status == "new"

    assert ok(bob.get(f"{V1}/sessions/front-desk"))["name"] == "front-desk"
    error(bob.post(f"{V1}/sessions/front-desk/start", {}, format="json"), 403, "permission_denied")
    error(bob.post(f"{V1}/sessions/front-desk/restart"), 403, "permission_denied")
    assert ok(bob.get(f"{V1}/sessions/front-desk/activity")) == []  # made directly: no activity yet

    from accounts.models import Membership

    Membership.objects.filter(user=named.bob).update(role=Membership.Role.ADMIN)
    ok(bob.post(f"{V1}/sessions", {"name": "bobs"}, format="json"), 201)
    assert bob.delete(f"{V1}/sessions/bobs").status_code == 204


# --- isolation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,body", BY_NAME)
def test_another_tenants_session_is_404_for_every_endpoint(named, clients, simulator, method, path, body):
    make_session(named.acme, "front-desk", status="connected", phone=PHONE, jid_user="14155550123",
                 should_run=True)
    error(call(clients["carol"], method, path, "front-desk", body), 404, "not_found")
    untouched = reload(named.acme, "front-desk")
    assert untouched is not None and untouched.status == "connected" and untouched.should_run
    assert untouched.pairing_phone == "" and activity_kinds(named.acme, "front-desk") == []
    assert not SessionLease.objects.exists()


@pytest.mark.parametrize("method,path,body", BY_NAME)
def test_an_unknown_name_is_404_for_every_endpoint(named, clients, simulator, method, path, body):
    error(call(clients["alice"], method, path, "no-such-session", body), 404, "not_found")


def test_each_tenant_lists_only_its_own_sessions_even_with_the_same_names(named, clients):
    ok(clients["alice"].post(f"{V1}/sessions", {"name": "front-desk", "label": "Acme desk"}, format="json"), 201)
    ok(clients["carol"].post(f"{V1}/sessions", {"name": "front-desk", "label": "Globex desk"}, format="json"), 201)
    ok(clients["carol"].post(f"{V1}/sessions", {"name": "globex-only"}, format="json"), 201)
    for who in ("alice", "bob"):
        assert [(s["name"], s["label"]) for s in ok(clients[who].get(f"{V1}/sessions"))] == [
            ("front-desk", "Acme desk")]
        error(clients[who].get(f"{V1}/sessions/globex-only"), 404, "not_found")
    assert [s["name"] for s in ok(clients["carol"].get(f"{V1}/sessions"))] == ["front-desk", "globex-only"]
    assert ok(clients["carol"].get(f"{V1}/sessions/front-desk"))["label"] == "Globex desk"
    assert clients["carol"].delete(f"{V1}/sessions/front-desk").status_code == 204
    assert reload(named.acme, "front-desk") is not None


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"name": ""}, {"name": "has space"}, {"name": "x" * 65}, {"name": "émoji"}, {"name": "a/b"}, {}, {"label": "x"},
    {"name": None},
])
def test_invalid_names_are_refused(named, clients, body):
    error(clients["alice"].post(f"{V1}/sessions", body, format="json"), 400, "invalid_name")
    with tenant_context(named.acme):
        assert not WhatsAppSession.objects.exists()


def test_longest_valid_name_and_other_field_errors(named, clients):
    ok(clients["alice"].post(f"{V1}/sessions", {"name": "A-z_9" + "x" * 59}, format="json"), 201)
    error(clients["alice"].post(f"{V1}/sessions", {"name": "ok", "label": "x" * 121}, format="json"), 400,
          "validation_error")
    error(clients["alice"].post(f"{V1}/sessions", ["not", "an", "object"], format="json"), 400, "validation_error")


def test_duplicate_names_are_409(named, clients):
    ok(clients["alice"].post(f"{V1}/sessions", {"name": "front-desk"}, format="json"), 201)
    error(clients["alice"].post(f"{V1}/sessions", {"name": "front-desk"}, format="json"), 409, "duplicate_name")
    error(clients["alice"].post(f"{V1}/sessions", {"name": " front-desk "}, format="json"), 409, "duplicate_name")


def test_the_plan_limit_is_402_with_the_upgrade_path(named, clients):
    for i in range(5):  # Basic allows 5
        make_session(named.acme, f"s{i}")
    err = error(clients["alice"].post(f"{V1}/sessions", {"name": "s5"}, format="json"), 402, "plan_limit_reached")
    assert err["details"]["limit"] == "max_sessions" and err["details"]["allowed"] == 5
    assert err["details"]["billing_url"] and "Upgrade" in err["message"]
    ok(clients["carol"].post(f"{V1}/sessions", {"name": "s5"}, format="json"), 201)  # Globex is on Pro


def test_an_unpaid_tenant_reads_but_cannot_create_start_restart_or_pair(named, clients):
    make_session(named.acme, "front-desk")
    make_unpaid(named.acme)
    alice = clients["alice"]
    for response in (
        alice.post(f"{V1}/sessions", {"name": "other"}, format="json"),
        alice.post(f"{V1}/sessions/front-desk/start", {}, format="json"),
        alice.post(f"{V1}/sessions/front-desk/start", {"use_pairing_code": True, "phone": PHONE}, format="json"),
        alice.post(f"{V1}/sessions/front-desk/restart"),
        alice.post(f"{V1}/sessions/front-desk/pairing-code", {"phone": PHONE}, format="json"),
    ):
        assert error(response, 402, "payment_required")["details"]["billing_status"] == "read_only"
    assert reload(named.acme, "front-desk").status == "new" and not reload(named.acme, "front-desk").should_run
    assert [s["name"] for s in ok(alice.get(f"{V1}/sessions"))] == ["front-desk"]
    ok(alice.get(f"{V1}/sessions/front-desk"))
    ok(alice.get(f"{V1}/sessions/front-desk/activity"))
    error(alice.get(f"{V1}/sessions/front-desk/qr"), 409, "no_qr")
    # Taking things away stays possible.
    assert ok(alice.post(f"{V1}/sessions/front-desk/logout"), 202)["status"] == "logged_out"
    assert alice.delete(f"{V1}/sessions/front-desk").status_code == 204


# --- start --------------------------------------------------------------------------------------------------------


def test_start_is_202_then_409_while_running(named, clients):
    make_session(named.acme, "front-desk")
    data = ok(clients["alice"].post(f"{V1}/sessions/front-desk/start"), 202)
    assert data["status"] == "starting" and data["should_run"] is True and data["pairing_phone"] == ""
    err = error(clients["alice"].post(f"{V1}/sessions/front-desk/start", {}, format="json"), 409, "already_running")
    assert err["details"] == {"status": "starting"}
    error(clients["alice"].post(f"{V1}/sessions/front-desk/start", {"use_pairing_code": True, "phone": PHONE},
                                format="json"), 409, "already_running")


@pytest.mark.parametrize("body", [
    {"use_pairing_code": True}, {"use_pairing_code": True, "phone": ""}, {"use_pairing_code": True, "phone": "12"},
    {"use_pairing_code": True, "phone": "+1 415 555"}, {"use_pairing_code": True, "phone": "not a number"},
])
def test_pairing_without_a_valid_phone_is_400(named, clients, body):
    make_session(named.acme, "front-desk")
    error(clients["alice"].post(f"{V1}/sessions/front-desk/start", body, format="json"), 400, "invalid_phone")
    # pairing-code requires a phone in its schema: none or "" is a validation_error, a wrong one invalid_phone.
    code = "validation_error" if not body.get("phone") else "invalid_phone"
    error(clients["alice"].post(f"{V1}/sessions/front-desk/pairing-code", {k: v for k, v in body.items()
                                                                          if k == "phone"}, format="json"),
          400, code)
    assert not reload(named.acme, "front-desk").should_run


def test_start_with_a_pairing_code_records_the_phone(named, clients):
    make_session(named.acme, "front-desk")
    data = ok(clients["alice"].post(f"{V1}/sessions/front-desk/start",
                                    {"use_pairing_code": True, "phone": "+1 (415) 555-0123"}, format="json"), 202)
    assert data["status"] == "starting" and data["pairing_phone"] == PHONE


def test_the_default_way_to_link_comes_from_the_settings(named, clients, settings):
    make_session(named.acme, "front-desk")
    settings.WHATSAPP_USE_PAIRING_CODE = True
    error(clients["alice"].post(f"{V1}/sessions/front-desk/start"), 400, "invalid_phone")
    data = ok(clients["alice"].post(f"{V1}/sessions/front-desk/start", {"phone": PHONE}, format="json"), 202)
    assert data["pairing_phone"] == PHONE


def test_start_refuses_a_bad_body(named, clients):
    make_session(named.acme, "front-desk")
    error(clients["alice"].post(f"{V1}/sessions/front-desk/start", {"use_pairing_code": "perhaps"}, format="json"),
          400, "validation_error")


# --- qr, activity, logout without a host --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["new", "starting", "pairing", "connected", "stopped", "logged_out", "error"])
def test_qr_is_409_with_the_status_when_none_waits(named, clients, status):
    make_session(named.acme, "front-desk", status=status)
    err = error(clients["alice"].get(f"{V1}/sessions/front-desk/qr"), 409, "no_qr")
    assert err["details"]["status"] == status and err["message"]


def test_qr_returns_the_code_its_svg_and_expiry(named, clients):
    code = "2@" + "A" * 32 + "," + "B" * 44 + "," + "C" * 44 + "," + "D" * 44
    expires = timezone.now() + timezone.timedelta(seconds=20)
    make_session(named.acme, "front-desk", status="qr", qr_code=code, qr_expires_at=expires)
    data = ok(clients["alice"].get(f"{V1}/sessions/front-desk/qr"))
    assert data["qr"] == code and data["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert data["svg"] == qr_svg(code)
    assert ok(clients["alice"].get(f"{V1}/sessions/front-desk"))["qr_available"] is True


def test_qr_and_pairing_codes_are_for_those_who_manage_sessions(named, clients):
    code = "2@" + "A" * 32 + "," + "B" * 44
    make_session(named.acme, "front-desk", status="qr", qr_code=code,
                 qr_expires_at=timezone.now() + timezone.timedelta(seconds=20))
    make_session(named.acme, "back-desk", status="pairing", pair_code="ABCD-1234")
    # An agent sees the states, not the codes.
    error(clients["bob"].get(f"{V1}/sessions/front-desk/qr"), 403, "permission_denied")
    listed = {row["name"]: row for row in ok(clients["bob"].get(f"{V1}/sessions"))}
    assert listed["front-desk"]["status"] == "qr" and listed["front-desk"]["qr_available"] is True
    assert listed["front-desk"]["qr_expires_at"] is None and listed["back-desk"]["pair_code"] == ""
    assert ok(clients["bob"].get(f"{V1}/sessions/back-desk"))["pair_code"] == ""
    assert ok(clients["alice"].get(f"{V1}/sessions/back-desk"))["pair_code"] == "ABCD-1234"


def svg_modules(svg):
    """The dark modules an SVG from qr_svg draws, as a set of (row, column) without the 2-module border."""
    path = re.search(r' d="([^"]+)"', svg).group(1)
    dark = set()
    for x, y, width in re.findall(r"M(\d+),(\d+)h(\d+)v1h-\d+z", path):
        dark |= {(int(y) - 2, int(x) - 2 + i) for i in range(int(width))}
    return dark


def test_the_svg_draws_exactly_the_qr_codes_modules():
    code = "2@xyz,abc,def,ghi"
    svg = qr_svg(code)
    assert svg.startswith("<svg ") and svg.endswith("</svg>") and "<?xml" not in svg
    assert 'viewBox="0 0 ' in svg and "width=\"100%\"" in svg  # the white background; no fixed size on <svg>
    matrix = qr_matrix(code)
    expected = {(r, c) for r, row in enumerate(matrix) for c, dark in enumerate(row) if dark}
    assert svg_modules(svg) == expected


def test_activity_is_newest_first_with_a_bounded_limit(named, clients):
    session = make_session(named.acme, "front-desk")
    with tenant_context(named.acme):
        SessionActivity.objects.bulk_create([
            SessionActivity(session=session, kind="qr_issued", message=f"#{i}",
                            created_at=timezone.now() - timezone.timedelta(minutes=300 - i))
            for i in range(210)])
    rows = ok(clients["bob"].get(f"{V1}/sessions/front-desk/activity"))
    assert len(rows) == 50 and rows[0]["message"] == "#209" and rows[-1]["message"] == "#160"
    assert set(rows[0]) == {"id", "kind", "kind_display", "message", "created_at"}
    assert rows[0]["kind_display"] == "QR code issued"
    assert [r["message"] for r in ok(clients["bob"].get(f"{V1}/sessions/front-desk/activity?limit=2"))] == [
        "#209", "#208"]
    assert len(ok(clients["bob"].get(f"{V1}/sessions/front-desk/activity?limit=200"))) == 200
    for bad in ("0", "-1", "ten", "1.5", "201", ""):
        error(clients["bob"].get(f"{V1}/sessions/front-desk/activity?limit={bad}"), 400, "invalid_limit")


def test_logout_of_a_session_that_is_not_running_forgets_the_device(named, clients):
    make_session(named.acme, "front-desk", status="stopped", phone=PHONE, jid_user="14155550123", jid_device=3)
    data = ok(clients["alice"].post(f"{V1}/sessions/front-desk/logout"), 202)
    assert data["status"] == "logged_out" and data["linked"] is False
    assert activity_kinds(named.acme, "front-desk") == ["logged_out"]


# --- test helpers: only with the simulator ------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,body", [entry for entry in BY_NAME if entry[1].startswith("test-helpers")])
def test_test_helpers_are_404_unless_the_simulator_is_active(named, clients, settings, method, path, body):
    make_session(named.acme, "front-desk", status="qr", qr_code="2@x", should_run=True)
    settings.WHATSAPP_PROVIDER = "neonize"
    error(call(clients["alice"], method, path, "front-desk", body), 404, "not_found")
    # Before authentication too: without the simulator the URLs do not exist for anyone.
    from rest_framework.test import APIClient

    error(call(APIClient(), method, path, "front-desk", body), 404, "not_found")
    settings.WHATSAPP_PROVIDER = "simulator"
    error(call(clients["alice"], method, path, "front-desk", body), 409, "session_not_running")
    error(call(APIClient(), method, path, "front-desk", body), 401, "not_authenticated")


def test_the_schema_documents_test_helpers_only_with_the_simulator(named, settings):
    from drf_spectacular.generators import SchemaGenerator

    settings.WHATSAPP_PROVIDER = "neonize"
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert "/api/v1/sessions/{name}/qr" in paths and not [p for p in paths if "test-helpers" in p]
    settings.WHATSAPP_PROVIDER = "simulator"
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert "/api/v1/test-helpers/sessions/{name}/scan" in paths


def test_test_helpers_validate_their_input(named, clients, simulator):
    make_session(named.acme, "front-desk")
    alice = clients["alice"]
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/scan", {}, format="json"), 400, "validation_error")
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": PHONE}, format="json"), 400,
          "missing_text")
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"text": "hi"}, format="json"), 400,
          "validation_error")
    # Outside the schema's phone pattern: a validation error; inside it but no number that exists: invalid_phone.
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/scan", {"phone": "12"}, format="json"), 400,
          "validation_error")
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": "nobody", "text": "hi"},
                     format="json"), 400, "validation_error")
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/scan", {"phone": "+999 1234 5678"}, format="json"), 400,
          "invalid_phone")
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": "+999 1234 5678", "text": "hi"},
                     format="json"), 400, "invalid_phone")


# --- with a running session host ----------------------------------------------------------------------------------


def started(clients, session_host, clock, name="front-desk", **start):
    ok(clients["alice"].post(f"{V1}/sessions", {"name": name}, format="json"), 201)
    ok(clients["alice"].post(f"{V1}/sessions/{name}/start", start, format="json"), 202)
    settle(session_host, clock)


def scanned(clients, session_host, clock, name="front-desk", phone=PHONE):
    ok(clients["alice"].post(f"{V1}/test-helpers/sessions/{name}/scan", {"phone": phone, "push_name": "Front Desk"},
                             format="json"), 202)
    settle(session_host, clock)


@pytest.mark.django_db(transaction=True)
def test_journey_start_qr_scan_connected_inbound_disconnect_and_phone_logout(named, clients, host, clock):
    alice = clients["alice"]
    started(clients, host, clock)
    assert SessionLease.objects.get().host_id == "host-api"
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "qr" and session["qr_available"] is True
    qr = ok(alice.get(f"{V1}/sessions/front-desk/qr"))
    assert qr["qr"].startswith("2@") and qr["svg"].startswith("<svg") and qr["expires_at"]
    clock.advance(60)  # WhatsApp rotates the code
    drain(host)
    assert ok(alice.get(f"{V1}/sessions/front-desk/qr"))["qr"] != qr["qr"]
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/disconnect"), 409, "not_connected")

    scanned(clients, host, clock)
    session = ok(clients["bob"].get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "connected" and session["phone"] == PHONE and session["push_name"] == "Front Desk"
    assert session["linked"] is True and session["status_detail"] == f"Connected as {PHONE} (Front Desk)"
    assert error(alice.get(f"{V1}/sessions/front-desk/qr"), 409, "no_qr")["details"]["status"] == "connected"
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/scan", {"phone": PHONE}, format="json"), 409,
          "not_pairing")

    # Message traffic moves last_activity_at at most every ACTIVITY_EVERY (30 s): make the last one older.
    with tenant_context(named.acme):
        WhatsAppSession.objects.update(last_activity_at=timezone.now() - timedelta(minutes=1))
    before = reload(named.acme, "front-desk").last_activity_at
    ok(alice.post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": "+442071838750", "text": "Hello"},
                  format="json"), 202)
    drain(host)
    assert reload(named.acme, "front-desk").last_activity_at > before

    ok(alice.post(f"{V1}/test-helpers/sessions/front-desk/disconnect"), 202)
    drain(host)
    assert ok(alice.get(f"{V1}/sessions/front-desk"))["status"] == "reconnecting"
    settle(host, clock)
    assert ok(alice.get(f"{V1}/sessions/front-desk"))["status"] == "connected"

    ok(alice.post(f"{V1}/test-helpers/sessions/front-desk/logout"), 202)
    drain(host)
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "logged_out" and session["linked"] is False and session["should_run"] is False
    assert not SessionLease.objects.exists()
    kinds = [row["kind"] for row in ok(alice.get(f"{V1}/sessions/front-desk/activity"))]
    assert kinds[:4] == ["logged_out", "connected", "reconnecting", "connected"]
    assert kinds[-3:] == ["qr_issued", "started", "created"]
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/logout"), 409, "session_not_running")


@pytest.mark.django_db(transaction=True)
def test_linking_by_pairing_code(named, clients, host, clock, monkeypatch):
    alice = clients["alice"]
    started(clients, host, clock, use_pairing_code=True, phone=PHONE)
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "pairing" and re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", session["pair_code"])
    assert session["pairing_phone"] == PHONE
    error(alice.get(f"{V1}/sessions/front-desk/qr"), 409, "no_qr")
    error(alice.post(f"{V1}/test-helpers/sessions/front-desk/scan", {"phone": "+442071838750"}, format="json"), 409,
          "wrong_phone")

    # A new code on request: returned in the answer once the host reports it (the wait polls the row).
    monkeypatch.setattr(api, "_pause", lambda seconds: drain(host))
    again = ok(alice.post(f"{V1}/sessions/front-desk/pairing-code", {"phone": PHONE}, format="json"), 202)
    assert again["pair_code"] and again["pair_code"] != session["pair_code"]

    scanned(clients, host, clock)
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "connected" and session["pair_code"] == ""
    error(alice.post(f"{V1}/sessions/front-desk/pairing-code", {"phone": PHONE}, format="json"), 409,
          "already_linked")


@pytest.mark.django_db(transaction=True)
def test_pairing_code_switches_a_qr_session_to_a_code(named, clients, host, clock, monkeypatch):
    alice = clients["alice"]
    started(clients, host, clock)
    assert ok(alice.get(f"{V1}/sessions/front-desk"))["status"] == "qr"
    quick = ok(alice.post(f"{V1}/sessions/front-desk/pairing-code", {"phone": PHONE, "wait": False},
                          format="json"), 202)
    assert quick["pair_code"] == ""  # not waited for: it comes with the session's payload
    drain(host)
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "pairing" and session["pair_code"]


@pytest.mark.django_db(transaction=True)
def test_pairing_code_on_a_stopped_session_starts_it_and_waits_for_the_code(named, clients, host, clock,
                                                                           monkeypatch):
    ok(clients["alice"].post(f"{V1}/sessions", {"name": "front-desk"}, format="json"), 201)

    def tick(seconds):
        clock.advance(seconds)
        drain(host)

    monkeypatch.setattr(api, "_pause", tick)
    data = ok(clients["alice"].post(f"{V1}/sessions/front-desk/pairing-code", {"phone": PHONE}, format="json"), 202)
    assert data["status"] == "pairing" and data["pair_code"] and data["should_run"] is True


@pytest.mark.django_db(transaction=True)
def test_the_pairing_code_wait_gives_up_after_a_few_seconds(named, clients, host, clock, monkeypatch):
    started(clients, host, clock)
    waited = []
    monkeypatch.setattr(api, "PAIR_CODE_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(api, "_pause", lambda seconds: waited.append(seconds) or time.sleep(0.01))
    data = ok(clients["alice"].post(f"{V1}/sessions/front-desk/pairing-code", {"phone": PHONE}, format="json"), 202)
    assert data["pair_code"] == "" and waited  # the host has not reported it (nobody drained): 202 without it


@pytest.mark.django_db(transaction=True)
def test_restart_resumes_a_linked_session_without_a_scan(named, clients, host, clock):
    alice = clients["alice"]
    started(clients, host, clock)
    scanned(clients, host, clock)
    data = ok(alice.post(f"{V1}/sessions/front-desk/restart"), 202)
    assert data["name"] == "front-desk"
    drain(host)
    assert ok(alice.get(f"{V1}/sessions/front-desk"))["status"] == "reconnecting"  # a linked device: WhatsApp keeps it
    settle(host, clock)
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "connected" and session["phone"] == PHONE
    kinds = [row["kind"] for row in ok(alice.get(f"{V1}/sessions/front-desk/activity"))]
    assert kinds[:3] == ["connected", "restarted", "restarted"] and kinds.count("qr_issued") == 1
    error(alice.post(f"{V1}/sessions/front-desk/start", {}, format="json"), 409, "already_running")


@pytest.mark.django_db(transaction=True)
def test_logout_and_delete_of_a_running_linked_session(named, clients, host, clock):
    alice = clients["alice"]
    started(clients, host, clock)
    scanned(clients, host, clock)
    ok(alice.post(f"{V1}/sessions/front-desk/logout"), 202)
    drain(host)
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "logged_out" and session["linked"] is False
    assert not SessionLease.objects.exists() and host.providers == {}

    started(clients, host, clock, name="second")
    scanned(clients, host, clock, name="second")
    assert alice.delete(f"{V1}/sessions/second").status_code == 204
    drain(host)
    assert not SessionLease.objects.exists() and host.providers == {}
    error(alice.get(f"{V1}/sessions/second"), 404, "not_found")


@pytest.mark.django_db(transaction=True)
def test_another_tenant_cannot_drive_a_running_session(named, clients, host, clock):
    started(clients, host, clock)
    for method, path, body in BY_NAME:
        error(call(clients["carol"], method, path, "front-desk", body), 404, "not_found")
    drain(host)
    clock.advance(1)
    drain(host)
    session = reload(named.acme, "front-desk")
    assert session.status == "qr" and session.should_run and not session.is_linked
    assert SessionLease.objects.get().host_id == "host-api"


@pytest.mark.django_db(transaction=True)
def test_after_an_expired_pairing_code_a_plain_start_shows_a_qr_code(named, clients, host, clock):
    alice = clients["alice"]
    started(clients, host, clock, use_pairing_code=True, phone=PHONE)
    assert ok(alice.get(f"{V1}/sessions/front-desk"))["status"] == "pairing"
    clock.advance(60 + 20 + 20 + 1)  # nobody typed the code
    drain(host)
    assert ok(alice.get(f"{V1}/sessions/front-desk"))["status"] == "stopped"
    ok(alice.post(f"{V1}/sessions/front-desk/start", {"use_pairing_code": False}, format="json"), 202)
    settle(host, clock)
    session = ok(alice.get(f"{V1}/sessions/front-desk"))
    assert session["status"] == "qr" and session["qr_available"] is True


@pytest.fixture
def host(named, clock, tmp_path, simulator):
    with current_simulator_host(clock, tmp_path / "stores", "host-api") as session_host:
        yield session_host
