"""The automation API and page: settings of the workspace and of a number, keyword rules (CRUD in the envelope, bad
input refused with its code and nothing written), the log, the handoff switches, who may do what, and isolation
(another tenant's rules, sessions and conversations are 404). alice owns Acme, bob is a member, carol owns Globex."""
import pytest
from django_tenants.utils import tenant_context

from audit.models import AuditLog
from whatsapp.automation.models import AutomationLog, KeywordRule, Receptionist
from whatsapp.models import Conversation, WhatsAppSession
from whatsapp.tests.support import error, ok, texts

V1 = "/api/v1"
RULE = {"name": "Prices", "match": "contains", "pattern": "price", "reply_text": "See acme.test/prices"}


def session(tenant, name="front-desk"):
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, phone="+14155550123", status="connected")


def test_workspace_settings_read_and_change(named, clients):
    data = ok(clients["bob"].get(f"{V1}/automation"))
    assert data["scope"] == "workspace" and data["own"] is False and data["enabled"] is False
    assert data["effective_time_zone"] == "UTC" and data["open_now"] is True and data["handoff_keywords"] == ["human"]
    body = {"enabled": True, "time_zone": "Europe/Berlin", "away_message": "Closed",
            "schedule": [{"day": "tue", "start": "13:00", "end": "17:00"}, {"day": "mon", "start": "09:00",
                                                                            "end": "12:00"}],
            "holidays": ["2026-12-25"], "cooldown_minutes": 30, "handoff_keywords": ["Human", "Agent"]}
    data = ok(clients["alice"].patch(f"{V1}/automation", body, format="json"))
    assert data["own"] is True and data["enabled"] is True and data["effective_time_zone"] == "Europe/Berlin"
    assert [i["day"] for i in data["schedule"]] == ["mon", "tue"] and data["holidays"] == ["2026-12-25"]
    assert data["handoff_keywords"] == ["human", "agent"]
    assert ok(clients["bob"].get(f"{V1}/automation")) == data
    # Members read, owners and admins change; Globex sees its own (default) settings.
    error(clients["bob"].patch(f"{V1}/automation", {"enabled": False}, format="json"), 403,
          "permission_denied")
    assert ok(clients["carol"].get(f"{V1}/automation"))["enabled"] is False
    with tenant_context(named.acme):
        assert AuditLog.objects.filter(action="whatsapp.automation_updated", actor=named.alice).count() == 1


@pytest.mark.parametrize("body, status, code", [
    ({"schedule": [{"day": "mon", "start": "10:00", "end": "09:00"}]}, 400, "invalid_schedule"),
    ({"schedule": [{"day": "mon", "start": "09:00", "end": "12:00"},
                   {"day": "mon", "start": "11:30", "end": "13:00"}]}, 400, "invalid_schedule"),
    ({"schedule": [{"day": "mon", "start": "9", "end": "12:00"}]}, 400, "invalid_schedule"),
    ({"time_zone": "Mars/Olympus"}, 400, "invalid_time_zone"),
    ({"holidays": ["25/12/2026"]}, 400, "validation_error"),
    ({"bot_url": "http://127.0.0.1:9/bot"}, 400, "private_target"),
    ({"bot_enabled": True}, 400, "invalid_bot_url"),
    ({"enabled": "yes"}, 400, "validation_error"),
    ({"surprise": 1}, 400, "validation_error"),
])
def test_bad_settings_are_refused_and_nothing_changes(named, clients, body, status, code):
    error(clients["alice"].patch(f"{V1}/automation", body, format="json"), status, code)
    with tenant_context(named.acme):
        assert not Receptionist.objects.exists()


def test_a_number_can_have_settings_of_its_own_and_go_back(named, clients):
    session(named.acme)
    ok(clients["alice"].patch(f"{V1}/automation", {"enabled": True, "fallback": "workspace"}, format="json"))
    data = ok(clients["bob"].get(f"{V1}/sessions/front-desk/automation"))
    assert data["own"] is False and data["fallback"] == "workspace" and data["session"] == "front-desk"
    data = ok(clients["alice"].patch(f"{V1}/sessions/front-desk/automation", {"fallback": "number"}, format="json"))
    assert data["own"] is True and data["fallback"] == "number" and data["scope"] == "session"
    assert clients["alice"].delete(f"{V1}/sessions/front-desk/automation").status_code == 204
    assert ok(clients["bob"].get(f"{V1}/sessions/front-desk/automation"))["fallback"] == "workspace"
    error(clients["carol"].get(f"{V1}/sessions/front-desk/automation"), 404, "not_found")


def test_rules_crud_in_the_envelope(named, clients):
    session(named.acme)
    created = ok(clients["alice"].post(f"{V1}/automation/rules", RULE, format="json"), 201)
    assert created["session"] is None and created["priority"] == 100 and created["cooldown_minutes"] == 60
    assert created["action"] == "reply" and created["reply_type"] == "text" and created["enabled"] is True
    scoped = ok(clients["alice"].post(f"{V1}/automation/rules", {**RULE, "name": "Number's", "session": "front-desk",
                                                                  "priority": 5}, format="json"), 201)
    listed = clients["bob"].get(f"{V1}/automation/rules").json()
    assert [r["id"] for r in listed["data"]] == [scoped["id"], created["id"]] and listed["pagination"]["total"] == 2
    changed = ok(clients["alice"].patch(f"{V1}/automation/rules/{created['id']}",
                                        {"match": "regex", "pattern": r"pric(e|ing)", "priority": 1}, format="json"))
    assert changed["match"] == "regex" and changed["priority"] == 1 and changed["name"] == "Prices"
    assert ok(clients["bob"].get(f"{V1}/automation/rules/{created['id']}")) == changed
    error(clients["bob"].delete(f"{V1}/automation/rules/{created['id']}"), 403, "permission_denied")
    error(clients["carol"].get(f"{V1}/automation/rules/{created['id']}"), 404, "not_found")
    error(clients["carol"].delete(f"{V1}/automation/rules/{created['id']}"), 404, "not_found")
    assert clients["alice"].delete(f"{V1}/automation/rules/{created['id']}").status_code == 204
    assert [r["id"] for r in ok(clients["bob"].get(f"{V1}/automation/rules"))] == [scoped["id"]]


@pytest.mark.parametrize("body, code", [
    ({**RULE, "match": "regex", "pattern": "(unclosed"}, "invalid_pattern"),
    ({**RULE, "reply_text": ""}, "invalid_rule"),
    ({**RULE, "reply_type": "image"}, "invalid_rule"),
    ({**RULE, "media_url": "https://example.com/a.png"}, "invalid_rule"),
    ({**RULE, "match": "sounds_like"}, "validation_error"),
    ({**RULE, "priority": -1}, "validation_error"),
    ({**RULE, "session": "nowhere"}, "not_found"),
    ({"name": "x"}, "validation_error"),
])
def test_bad_rules_are_refused_and_nothing_is_written(named, clients, body, code):
    response = clients["alice"].post(f"{V1}/automation/rules", body, format="json")
    error(response, 404 if code == "not_found" else 400, code)
    with tenant_context(named.acme):
        assert not KeywordRule.objects.exists()


def test_the_rule_cap_is_enforced(named, clients, monkeypatch):
    from whatsapp.automation import actions

    monkeypatch.setattr(actions, "MAX_RULES", 2)
    for _ in range(2):
        ok(clients["alice"].post(f"{V1}/automation/rules", RULE, format="json"), 201)
    error(clients["alice"].post(f"{V1}/automation/rules", RULE, format="json"), 400, "too_many_rules")


def test_handoff_switches_by_conversation_and_by_number(named, clients):
    front = session(named.acme)
    with tenant_context(named.acme):
        conversation = Conversation.objects.create(session=front, chat_jid="6281234567890@s.whatsapp.net")
    data = ok(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/handoff", {"on": True, "minutes": 30},
                                  format="json"))
    assert data["on"] is True and data["until"] and data["conversation_id"] == conversation.pk
    off = ok(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/handoff", {"on": False}, format="json"))
    assert off == {"session": "front-desk", "conversation_id": conversation.pk, "on": False, "until": None,
                   "requested": False}
    assert ok(clients["alice"].post(f"{V1}/sessions/front-desk/handoff", {"on": True}, format="json"))["on"] is True
    error(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/handoff", {"on": True, "minutes": 0},
                              format="json"), 400, "validation_error")
    error(clients["carol"].post(f"{V1}/conversations/{conversation.pk}/handoff", {"on": True}, format="json"),
          404, "not_found")
    error(clients["carol"].post(f"{V1}/sessions/front-desk/handoff", {"on": True}, format="json"), 404, "not_found")
    with tenant_context(named.acme):
        assert AuditLog.objects.filter(action__startswith="whatsapp.handoff_").count() == 3


def test_the_log_lists_what_automation_did(named, clients):
    front = session(named.acme)
    with tenant_context(named.acme):
        AutomationLog.objects.create(session=front, chat_jid="1@s.whatsapp.net", kind="skipped", detail="rate_cap")
        AutomationLog.objects.create(session=front, chat_jid="1@s.whatsapp.net", kind="away", source="Away message")
    rows = ok(clients["bob"].get(f"{V1}/automation/log?session=front-desk"))
    assert [r["kind"] for r in rows] == ["away", "skipped"]
    assert [r["kind"] for r in ok(clients["bob"].get(f"{V1}/automation/log?kind=skipped"))] == ["skipped"]
    error(clients["bob"].get(f"{V1}/automation/log?kind=bogus"), 400, "validation_error")
    assert ok(clients["carol"].get(f"{V1}/automation/log")) == []


def test_the_page_shows_and_changes_the_automation(named, as_user):
    session(named.acme)
    page = as_user(named.alice).get("/automation/")
    assert page.status_code == 200 and b"Keyword rules" in page.content
    response = as_user(named.alice).post("/automation/", {
        "action": "settings", "s-enabled": "on", "s-time_zone": "Europe/Berlin", "s-hours_mon": "09:00-12:00, 13:00-17:00",
        "s-holidays": "2026-12-25", "s-away_message": "Closed", "s-cooldown_minutes": "60",
        "s-handoff_keywords": "human, agent", "s-handoff_minutes": "60"})
    assert response.status_code == 302
    with tenant_context(named.acme):
        row = Receptionist.objects.get(scope="workspace")
        assert row.schedule == [{"day": "mon", "start": "09:00", "end": "12:00"},
                                {"day": "mon", "start": "13:00", "end": "17:00"}]
        assert row.holidays == ["2026-12-25"] and row.handoff_keywords == ["human", "agent"]
    bad = as_user(named.alice).post("/automation/", {"action": "settings", "s-hours_tue": "17:00-09:00",
                                                     "s-cooldown_minutes": "60", "s-handoff_minutes": "60"})
    assert bad.status_code == 400 and "before it starts" in bad.content.decode()
    added = as_user(named.alice).post("/automation/?session=front-desk", {
        "action": "add_rule", "r-name": "Hours", "r-match": "contains", "r-pattern": "open", "r-priority": "10",
        "r-action": "reply", "r-reply_type": "text", "r-reply_text": "9 to 5", "r-cooldown_minutes": "60"})
    assert added.status_code == 302 and added["Location"] == "/automation/?session=front-desk"
    with tenant_context(named.acme):
        rule = KeywordRule.objects.get()
        assert rule.session.name == "front-desk"
    assert "Rule “Hours” added." in texts(as_user(named.alice).get("/automation/?session=front-desk"))
    # bob reads but may not change; carol's workspace does not have Acme's session.
    assert as_user(named.bob).get("/automation/").status_code == 200
    assert as_user(named.bob).post("/automation/", {"action": "delete_rule", "id": rule.pk}).status_code == 403
    assert as_user(named.carol).get("/automation/?session=front-desk").status_code == 404
    assert as_user(named.carol).post("/automation/", {"action": "delete_rule", "id": rule.pk}).status_code == 404
    assert as_user(named.alice).post("/automation/", {"action": "delete_rule", "id": rule.pk}).status_code == 302


def test_the_conversation_page_switches_the_handoff(named, as_user):
    front = session(named.acme)
    with tenant_context(named.acme):
        conversation = Conversation.objects.create(session=front, chat_jid="6281234567890@s.whatsapp.net")
    url = f"/conversations/{conversation.pk}/"
    assert b"Automation answers this conversation" in as_user(named.bob).get(url).content
    assert as_user(named.bob).post(url, {"action": "handoff_on"}).status_code == 302
    page = as_user(named.bob).get(url).content.decode()
    assert "A person has this conversation" in page and "Give back to automation" in page
    assert as_user(named.bob).post(url, {"action": "handoff_off"}).status_code == 302
    assert b"Automation answers this conversation" in as_user(named.bob).get(url).content
    with tenant_context(named.acme):
        assert AuditLog.objects.filter(action__in=["whatsapp.handoff_on", "whatsapp.handoff_off"]).count() == 2
