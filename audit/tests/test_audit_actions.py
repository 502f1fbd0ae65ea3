"""One enum of audit actions (audit.enums.AuditAction), and the actor's key and IP on every row a request writes."""
import re
from pathlib import Path

import pytest
from django.db import transaction

from accounts.actions import create_api_key
from audit import actions as audit
from audit.enums import AuditAction
from audit.models import AuditLog

ROOT = Path(__file__).resolve().parents[2]
LITERAL = re.compile(r"""\brecord\(\s*f?["']([a-z_]+\.[a-z_.{}]+)["']""")
# Actions built from a value: the values it takes.
BUILT = {"billing.read_only.{reason}": ["trial_expired", "payment_failed"]}


def actions_in_the_code():
    found = set()
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0].startswith(".") or "tests" in parts or parts[0] in ("bench", "scripts"):
            continue
        for action in LITERAL.findall(path.read_text()):
            if "{" in action:
                found |= {action.replace("{reason}", value) for value in BUILT[action]}
            else:
                found.add(action)
    return found


def test_every_action_the_code_records_is_in_the_enum_and_no_other():
    in_code = actions_in_the_code()
    assert len(in_code) > 80
    assert sorted(in_code - set(AuditAction.values)) == [], "add these to audit/enums.py"
    assert sorted(set(AuditAction.values) - in_code) == [], "recorded nowhere: remove from audit/enums.py"


@pytest.mark.django_db
def test_an_action_outside_the_enum_is_refused(named):
    with pytest.raises(ValueError), transaction.atomic():
        audit.record("member.danced", actor=named.alice, target=named.acme, tenant=named.acme)
    assert not AuditLog.objects.filter(action="member.danced").exists()


def test_a_change_on_a_page_records_the_person_and_ip(client, named):
    client.force_login(named.alice)
    client.post("/dashboard/settings/", {"name": "Acme", "timezone": "Asia/Jakarta", "locale": "en",
                                         "webhook_url": ""}, REMOTE_ADDR="203.0.113.7")
    row = AuditLog.objects.get(action="tenant.settings_updated")
    assert (row.actor, row.actor_key, row.ip) == (named.alice, "", "203.0.113.7")


def test_a_change_through_a_key_records_the_key_prefix_and_ip(named, api_as):
    api = api_as(named.alice)
    key = named.alice.api_keys.get(name="test")
    api.patch("/api/v1/workspace", {"timezone": "Europe/Berlin"}, format="json", REMOTE_ADDR="2001:db8::5")
    row = AuditLog.objects.get(action="tenant.settings_updated")
    assert (row.actor, row.actor_key, row.ip) == (named.alice, key.prefix, "2001:db8::5")
    # The audit log shows both, and finds rows by the key's prefix.
    listed = api.get(f"/api/v1/audit-log?actor={key.prefix}").json()["data"]
    assert [(r["action"], r["actor_key"], r["ip"]) for r in listed] == [
        ("tenant.settings_updated", key.prefix, "2001:db8::5")]
    assert api.get("/api/v1/audit-log?actor=sb_00000000").json()["data"] == []


@pytest.mark.django_db
def test_outside_a_request_a_row_has_no_ip_or_key(named):
    key, _ = create_api_key(user=named.alice, tenant=named.acme, name="cli")
    row = AuditLog.objects.get(action="api_key.created", target_id=str(key.pk))
    assert (row.actor_key, row.ip) == ("", None)
