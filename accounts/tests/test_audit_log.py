"""The audit log a workspace reads: its own rows only, filtered, paginated and exported; owners and admins only."""
import csv
import io

import pytest

from accounts import members
from accounts.models import Membership

pytestmark = pytest.mark.django_db
V1 = "/api/v1"


def test_owners_read_their_workspaces_log_filtered_and_paged(named, api_as):
    members.invite_member(named.acme, acting_user=named.alice, email="dora@example.com", role="agent")
    members.change_role(Membership.objects.get(user=named.bob), acting_user=named.alice, role="viewer")
    members.invite_member(named.globex, acting_user=named.carol, email="gus@example.com", role="agent")
    alice = api_as(named.alice)  # api_key.created is recorded too
    body = alice.get(f"{V1}/audit-log?limit=2").json()
    assert body["pagination"]["total"] == 3 and len(body["data"]) == 2
    assert [r["action"] for r in body["data"]] == ["api_key.created", "member.role_changed"]
    rows = alice.get(f"{V1}/audit-log?action=member.").json()["data"]
    assert [r["action"] for r in rows] == ["member.role_changed", "member.invited"]
    assert rows[0]["actor"] == "alice@acme.test" and rows[0]["before"]["role"] == "agent"
    assert "gus@example.com" not in str(alice.get(f"{V1}/audit-log").json())  # Globex's rows are not Acme's
    assert alice.get(f"{V1}/audit-log?actor=carol@globex.test").json()["data"] == []
    assert alice.get(f"{V1}/audit-log?since=2999-01-01").json()["data"] == []
    bad = alice.get(f"{V1}/audit-log?since=yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    refused = api_as(named.bob).get(f"{V1}/audit-log")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"


def test_the_page_filters_and_exports_csv(named, client):
    members.invite_member(named.acme, acting_user=named.alice, email="dora@example.com", role="agent")
    client.force_login(named.alice)
    page = client.get("/audit/?action=member.")
    assert page.status_code == 200 and b"member.invited" in page.content
    export = client.get("/audit/export.csv?action=member.")
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert lines[0][:3] == ["created_at", "action", "actor"] and lines[1][1] == "member.invited"
    assert lines[1][2] == "alice@acme.test"
    client.force_login(named.bob)
    assert client.get("/audit/").status_code == 403 and client.get("/audit/export.csv").status_code == 403
