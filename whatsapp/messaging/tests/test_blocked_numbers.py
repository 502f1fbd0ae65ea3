"""Blocked numbers and the pacing policy over the API (/api/v1/blocked-numbers, /api/v1/pacing): the contract,
who may change what (alice owner and an admin change; bob, a member, reads: 403), another tenant's ids (carol's:
404), a read-only tenant (402), audit rows, and a blocked number refusing sends.
"""
import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Membership
from audit.models import AuditLog
from billing.models import Subscription
from whatsapp.models import BlockedNumber, PacingPolicy, WhatsAppSession
from whatsapp.tests.support import error, ok

V1 = "/api/v1"


def blocked(tenant):
    with tenant_context(tenant):
        return list(BlockedNumber.objects.values_list("phone", flat=True))


def test_owner_blocks_lists_and_unblocks_a_number(named, clients):
    alice = clients["alice"]
    data = ok(alice.post(f"{V1}/blocked-numbers", {"phone": "+1 (415) 555-0124", "reason": "opted out"},
                         format="json"), 201)
    assert data["phone"] == "+14155550124" and data["reason"] == "opted out"
    assert data["created_by"] == "alice@acme.test" and data["created_at"]
    listed = alice.get(f"{V1}/blocked-numbers").json()
    assert listed["success"] is True and listed["data"] == [data]
    assert listed["pagination"]["total"] == 1
    assert ok(clients["bob"].get(f"{V1}/blocked-numbers")) == [data]  # members read
    assert AuditLog.objects.filter(action="whatsapp.number_blocked", tenant=named.acme).count() == 1

    # Blocked: sends to it are refused.
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", status="connected")
    error(alice.post(f"{V1}/messages", {"session": "front-desk", "to": "14155550124", "text": "hi"}, format="json"),
          400, "blocked_recipient")

    response = alice.delete(f"{V1}/blocked-numbers/{data['id']}")
    assert response.status_code == 204
    assert blocked(named.acme) == []
    assert AuditLog.objects.filter(action="whatsapp.number_unblocked", tenant=named.acme).count() == 1
    ok(alice.post(f"{V1}/messages", {"session": "front-desk", "to": "14155550124", "text": "hi"}, format="json"),
       202)


@pytest.mark.parametrize("body,status,code", [
    ({"phone": "not a number"}, 400, "invalid_phone"),
    ({"phone": "+1234"}, 400, "invalid_phone"),
    ({}, 400, "invalid_phone"),
    ({"phone": "+14155550124", "reason": "x" * 256}, 400, "validation_error"),
])
def test_bad_numbers_are_refused(named, clients, body, status, code):
    error(clients["alice"].post(f"{V1}/blocked-numbers", body, format="json"), status, code)
    assert blocked(named.acme) == []


def test_a_number_is_blocked_once(named, clients):
    ok(clients["alice"].post(f"{V1}/blocked-numbers", {"phone": "+14155550124"}, format="json"), 201)
    err = error(clients["alice"].post(f"{V1}/blocked-numbers", {"phone": "14155550124"}, format="json"), 409,
                "already_blocked")
    assert err["details"] == {"phone": "+14155550124"}
    assert blocked(named.acme) == ["+14155550124"]


def test_members_read_but_do_not_change(named, clients):
    with tenant_context(named.acme):
        row = BlockedNumber.objects.create(phone="+14155550124")
    bob = clients["bob"]
    error(bob.post(f"{V1}/blocked-numbers", {"phone": "+14155550125"}, format="json"), 403, "permission_denied")
    error(bob.delete(f"{V1}/blocked-numbers/{row.pk}"), 403, "permission_denied")
    error(bob.patch(f"{V1}/pacing", {"daily_cap": 5}, format="json"), 403, "permission_denied")
    assert ok(bob.get(f"{V1}/pacing"))["daily_cap"] is None
    assert blocked(named.acme) == ["+14155550124"]


def test_admins_change(named, clients, api_as):
    Membership.objects.filter(user=named.bob).update(role=Membership.Role.ADMIN)
    ok(api_as(named.bob).post(f"{V1}/blocked-numbers", {"phone": "+14155550125"}, format="json"), 201)


def test_another_tenants_ids_are_not_found(named, clients):
    with tenant_context(named.globex):
        carols = BlockedNumber.objects.create(phone="+14155550124")
    error(clients["alice"].delete(f"{V1}/blocked-numbers/{carols.pk}"), 404, "not_found")
    assert ok(clients["alice"].get(f"{V1}/blocked-numbers")) == []
    assert blocked(named.globex) == ["+14155550124"]
    # The same number is Acme's to block too: tenants' lists are their own.
    ok(clients["alice"].post(f"{V1}/blocked-numbers", {"phone": "+14155550124"}, format="json"), 201)
    assert [b["id"] for b in ok(clients["carol"].get(f"{V1}/blocked-numbers"))] == [carols.pk]


def test_a_read_only_tenant_reads_but_does_not_change(named, clients):
    with tenant_context(named.acme):
        row = BlockedNumber.objects.create(phone="+14155550124")
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    alice = clients["alice"]
    error(alice.post(f"{V1}/blocked-numbers", {"phone": "+14155550125"}, format="json"), 402, "payment_required")
    error(alice.delete(f"{V1}/blocked-numbers/{row.pk}"), 402, "payment_required")
    error(alice.patch(f"{V1}/pacing", {"daily_cap": 5}, format="json"), 402, "payment_required")
    assert len(ok(alice.get(f"{V1}/blocked-numbers"))) == 1
    ok(alice.get(f"{V1}/pacing"))


def test_pacing_shows_defaults_and_effective_values(named, clients, settings):
    settings.WHATSAPP_PACING_MIN_INTERVAL_MS = 3000
    settings.WHATSAPP_PACING_JITTER_MS = 2000
    settings.WHATSAPP_PACING_DAILY_CAP = 1000
    settings.WHATSAPP_PACING_WARMUP_DAYS = 7
    settings.WHATSAPP_PACING_WARMUP_DAILY_CAP = 200
    settings.WHATSAPP_PACING_ENABLED = True
    defaults = {"min_interval_ms": 3000, "jitter_ms": 2000, "daily_cap": 1000, "warmup_days": 7,
                "warmup_daily_cap": 200}
    alice = clients["alice"]
    data = ok(alice.get(f"{V1}/pacing"))
    assert data == {"enabled": True, "min_interval_ms": None, "jitter_ms": None, "daily_cap": None,
                    "warmup_days": None, "warmup_daily_cap": None, "installation_enabled": True,
                    "defaults": defaults, "effective": {"enabled": True, **defaults}, "updated_at": None}

    data = ok(alice.patch(f"{V1}/pacing", {"min_interval_ms": 6000, "daily_cap": 300}, format="json"))
    assert data["min_interval_ms"] == 6000 and data["daily_cap"] == 300 and data["jitter_ms"] is None
    assert data["effective"] == {**defaults, "enabled": True, "min_interval_ms": 6000, "daily_cap": 300}
    assert data["updated_at"]
    data = ok(alice.patch(f"{V1}/pacing", {"daily_cap": None, "enabled": False}, format="json"))
    assert data["daily_cap"] is None and data["min_interval_ms"] == 6000  # others keep their value
    assert data["effective"]["daily_cap"] == 1000 and data["effective"]["enabled"] is False
    assert ok(clients["bob"].get(f"{V1}/pacing")) == data
    with tenant_context(named.acme):
        assert PacingPolicy.objects.count() == 1
    log = AuditLog.objects.filter(action="whatsapp.pacing_updated", tenant=named.acme).order_by("id").last()
    assert log.before["daily_cap"] == 300 and log.after["daily_cap"] is None and log.after["enabled"] is False
    # Globex's policy is its own.
    assert ok(clients["carol"].get(f"{V1}/pacing"))["min_interval_ms"] is None


@pytest.mark.parametrize("body", [
    {"min_interval_ms": -1}, {"jitter_ms": 3_600_001}, {"daily_cap": 0}, {"warmup_daily_cap": 0},
    {"warmup_days": 366}, {"daily_cap": "lots"}, {"enabled": None}, {"speed": 3},
])
def test_pacing_values_out_of_bounds_are_refused_and_nothing_changes(named, clients, body):
    err = error(clients["alice"].patch(f"{V1}/pacing", {"daily_cap": 10, **body}, format="json"), 400,
                "invalid_pacing")
    assert err["message"]
    with tenant_context(named.acme):
        assert not PacingPolicy.objects.exists()


def test_the_session_queue_is_the_tenants_own(named, clients):
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", status="connected")
    data = ok(clients["bob"].get(f"{V1}/sessions/front-desk/queue"))
    assert data["queued"] == 0 and data["sent_today"] == 0
    error(clients["carol"].get(f"{V1}/sessions/front-desk/queue"), 404, "not_found")


def test_the_schema_documents_the_endpoints(named, clients):
    schema = clients["alice"].get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    text = schema.content.decode()
    for fragment in ("/api/v1/blocked-numbers", "/api/v1/pacing", "/api/v1/sessions/{name}/queue"):
        assert fragment in text
