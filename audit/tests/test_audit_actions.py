"""One enum of audit actions (audit.enums.AuditAction), and the actor's key and IP on every row a request writes."""
import ast
from pathlib import Path

import pytest
from django.db import transaction

from accounts.actions import create_api_key
from audit import actions as audit
from audit.enums import AuditAction
from audit.models import AuditLog

ROOT = Path(__file__).resolve().parents[2]
# Actions built from a value (an f-string): the values it takes.
BUILT = {"billing.read_only.{reason}": ["trial_expired", "payment_failed"]}


def _is_audit_record(call, imports_record):
    """audit.record(…) (or x.audit.record(…)), or record(…) in a module that imports it from audit.actions."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "record" and imports_record
    return isinstance(func, ast.Attribute) and func.attr == "record" and ast.unparse(func.value).endswith("audit")


def _actions_of(expression, where):
    """The actions an expression (the first argument of audit.record) can be: its string constants, each branch of
    a conditional, an f-string's values from BUILT. Anything else cannot be checked and fails the test."""
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return {expression.value}
    if isinstance(expression, ast.IfExp):
        return _actions_of(expression.body, where) | _actions_of(expression.orelse, where)
    if isinstance(expression, ast.JoinedStr):
        template = "".join(part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
                           for part in expression.values)
        assert template in BUILT, f"{where}: list the values of {template} in BUILT"
        name = template[template.index("{"):template.index("}") + 1]
        return {template.replace(name, value) for value in BUILT[template]}
    if isinstance(expression, ast.Attribute) and isinstance(expression.value, ast.Name) \
            and expression.value.id == "AuditAction":
        return {AuditAction[expression.attr].value}
    raise AssertionError(f"{where}: audit.record's action is not a literal the test can read: "
                         f"{ast.unparse(expression)}")


def actions_in_the_code():
    found = set()
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0].startswith(".") or "tests" in parts or parts[0] in ("bench", "scripts"):
            continue
        source = path.read_text()
        imports_record = "from audit.actions import record" in source
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and _is_audit_record(node, imports_record):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                first = node.args[0] if node.args else next(k.value for k in node.keywords if k.arg == "action")
                found |= _actions_of(first, where)
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
