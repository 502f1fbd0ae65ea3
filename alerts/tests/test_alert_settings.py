"""A workspace's alert settings and history: its owners and admins choose the kinds and channels (page: POST ->
redirect -> GET; API: GET|PATCH /api/v1/alerts/settings), audited; an incident then goes only to the chosen
channels (a fake Telegram server, the email outbox, a Standard Webhooks receiver), once when it fires and once when
it resolves, while the platform admins are told every alert; the history is each workspace's own (another's is 404).

alice owns Acme, bob is an agent of Acme, carol owns Globex; admin is a platform admin.
"""
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from alerts import actions
from alerts.models import Alert, AlertSettings
from alerts.tests.test_alerts import Recorder
from audit.models import AuditLog
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.tests.support import error, ok
from whatsapp.webhooks import actions as webhook_actions

V1 = "/api/v1"


@pytest.fixture
def telegram(settings):
    server = Recorder()
    settings.TELEGRAM_API_BASE, settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_IDS = server.url, "123:abc", ["42"]
    settings.WHATSAPP_ALERT_WEBHOOK = ""
    yield server
    server.close()


def chats(telegram):
    return [(json.loads(body)["chat_id"], json.loads(body)["text"]) for _, _, body in telegram.received]


def down(tenant, name="desk", status="disconnected"):
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, should_run=True, status=status,
                                              last_activity_at=timezone.now() - timedelta(hours=1))


def check(capture):
    with capture(execute=True):  # the workspace webhook's first attempt runs on commit
        return actions.check()


def test_defaults_every_kind_by_email_and_managers_change_them_audited(named, api_as, telegram):
    alice, bob = api_as(named.alice), api_as(named.bob)
    assert ok(bob.get(f"{V1}/alerts/settings")) == {
        "channels": ["email"], "kinds": ["session_down", "webhooks_dead", "campaign_safety_stop"],
        "telegram_chat_ids": [], "telegram_available": True, "webhook_endpoints": 0}
    assert error(bob.patch(f"{V1}/alerts/settings", {"channels": []}, format="json"), 403, "permission_denied")

    changed = ok(alice.patch(f"{V1}/alerts/settings", {"channels": ["telegram", "email"],
                                                        "telegram_chat_ids": ["-1001234567890", "@acme_ops"]},
                             format="json"))
    assert changed["channels"] == ["email", "telegram"] and changed["telegram_chat_ids"] == ["-1001234567890",
                                                                                             "@acme_ops"]
    assert changed["kinds"] == ["session_down", "webhooks_dead", "campaign_safety_stop"]  # untouched
    row = AuditLog.objects.get(action="alerts.settings_updated")
    assert row.actor == named.alice and row.tenant == named.acme
    assert row.before == {"channels": ["email"], "telegram_chat_ids": []}
    assert row.after == {"channels": ["email", "telegram"], "telegram_chat_ids": ["-1001234567890", "@acme_ops"]}
    ok(alice.patch(f"{V1}/alerts/settings", {"kinds": ["webhooks_dead", "session_down"]}, format="json"))
    assert AlertSettings.objects.get(tenant=named.acme).kinds == ["session_down", "webhooks_dead"]
    ok(alice.patch(f"{V1}/alerts/settings", {"kinds": ["webhooks_dead", "session_down"]}, format="json"))
    assert AuditLog.objects.filter(action="alerts.settings_updated").count() == 2  # no change, no row
    assert ok(api_as(named.carol).get(f"{V1}/alerts/settings"))["channels"] == ["email"]  # Globex's own


@pytest.mark.parametrize("body, status, code", [
    ({"channels": ["sms"]}, 400, "unknown_channel"),
    ({"kinds": ["memory"]}, 400, "unknown_alert_kind"),
    ({"telegram_chat_ids": ["12 34"]}, 400, "invalid_chat_id"),
    ({"telegram_chat_ids": [str(n) for n in range(11)]}, 400, "too_many_chat_ids"),
    ({"channels": ["telegram"]}, 400, "chat_ids_required"),
    ({"channels": "email"}, 400, "validation_error"),
    ({"channels": [1]}, 400, "validation_error"),
    ({"telegram_chat_ids": [12345]}, 400, "validation_error"),  # a string, as the schema says
    ({"colour": "red"}, 400, "validation_error"),
])
def test_bad_settings_are_refused_and_nothing_is_written(named, api_as, telegram, body, status, code):
    assert error(api_as(named.alice).patch(f"{V1}/alerts/settings", body, format="json"), status, code)
    assert not AlertSettings.objects.exists() and not AuditLog.objects.filter(
        action="alerts.settings_updated").exists()


def test_telegram_needs_the_platforms_bot(named, api_as, settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    alice = api_as(named.alice)
    assert ok(alice.get(f"{V1}/alerts/settings"))["telegram_available"] is False
    assert error(alice.patch(f"{V1}/alerts/settings", {"channels": ["telegram"], "telegram_chat_ids": ["5"]},
                             format="json"), 409, "telegram_unavailable")


def test_an_incident_goes_only_to_the_chosen_channels_once_and_resolved_once(
        named, telegram, receiver, mailoutbox, django_capture_on_commit_callbacks):
    actions.update_alert_settings(named.acme, acting_user=named.alice, channels=["telegram", "webhook"],
                                  telegram_chat_ids=["-1001"], kinds=["session_down"])
    actions.update_alert_settings(named.globex, acting_user=named.carol, kinds=["webhooks_dead"])
    with tenant_context(named.acme):
        _, receiver.secret = webhook_actions.create_endpoint(named.acme, acting_user=named.alice, url=receiver.url,
                                                             events=["alert.firing", "alert.resolved"])
    acme_desk = down(named.acme)
    down(named.globex, status="logged_out")

    fired, _ = check(django_capture_on_commit_callbacks)
    assert len(fired) == 2
    # Telegram: the platform's chat hears both; Acme's chat only Acme's; Globex chose no session alerts.
    assert sorted(chats(telegram)) == [
        ("-1001", "[Switchboard] ALERT (Acme): Session desk is disconnected for more than 10 minutes"),
        ("42", "[Switchboard] ALERT (Acme): Session desk is disconnected for more than 10 minutes"),
        ("42", "[Switchboard] ALERT (Globex): Session desk is logged out for more than 10 minutes")]
    # Email: the platform admins only (Acme chose Telegram and its webhook; Globex not this kind).
    assert [m.to for m in mailoutbox] == [["admin@platform.test"], ["admin@platform.test"]]
    # Acme's webhook endpoint: one signed alert.firing (verified by the receiver with the endpoint's secret).
    [(headers, body)] = receiver.delivered
    event = json.loads(body)
    assert event["type"] == "alert.firing" and event["data"]["rule"] == "session_down"
    assert event["data"]["tenant"] == "acme" and event["data"]["resolved_at"] is None

    assert check(django_capture_on_commit_callbacks) == ([], [])  # still firing: nobody is told again
    assert len(telegram.received) == 3 and len(mailoutbox) == 2 and len(receiver.delivered) == 1

    with tenant_context(named.acme):
        WhatsAppSession.objects.filter(pk=acme_desk.pk).update(status="connected")
    _, [resolved] = check(django_capture_on_commit_callbacks)
    assert sorted(chats(telegram)[3:]) == [
        ("-1001", "[Switchboard] RESOLVED (Acme): Session desk is disconnected for more than 10 minutes"),
        ("42", "[Switchboard] RESOLVED (Acme): Session desk is disconnected for more than 10 minutes")]
    assert json.loads(receiver.delivered[-1][1])["type"] == "alert.resolved" and len(receiver.delivered) == 2
    assert len(mailoutbox) == 3 and mailoutbox[-1].to == ["admin@platform.test"]
    resolved.refresh_from_db()
    told = [(n["to"], n["channel"], n["event"], n["ok"]) for n in resolved.notifications]
    assert sorted(told) == sorted([(to, channel, event, True) for event in ("firing", "resolved")
                                   for to, channel in (("platform", "email"), ("platform", "telegram"),
                                                       ("workspace", "webhook"), ("workspace", "telegram"))])
    assert check(django_capture_on_commit_callbacks) == ([], [])
    assert len(telegram.received) == 5 and len(receiver.delivered) == 2


def test_a_chosen_webhook_without_a_subscribed_endpoint_is_recorded_as_failed(named, telegram, mailoutbox):
    actions.update_alert_settings(named.acme, acting_user=named.alice, channels=["webhook", "email"])
    down(named.acme)
    [alert], _ = actions.check()
    alert.refresh_from_db()
    workspace = {n["channel"]: (n["ok"], n["error"]) for n in alert.notifications if n["to"] == "workspace"}
    assert workspace["email"] == (True, "")
    assert workspace["webhook"][0] is False and "alert.firing" in workspace["webhook"][1]
    assert sorted(m.to[0] for m in mailoutbox) == ["admin@platform.test", "alice@acme.test"]


def test_the_settings_page_posts_redirects_and_shows_the_choice(named, client, telegram):
    client.force_login(named.alice)
    page = client.get("/alerts/settings/")
    assert page.status_code == 200 and b"csrfmiddlewaretoken" in page.content
    response = client.post("/alerts/settings/", {"channels": ["email", "telegram"],
                                                  "telegram_chat_ids": "-1001, 42\n@acme_ops",
                                                  "kinds": ["session_down"]})
    assert response.status_code == 302 and response["Location"] == "/alerts/settings/"
    chosen = AlertSettings.objects.get(tenant=named.acme)
    assert chosen.channels == ["email", "telegram"] and chosen.telegram_chat_ids == ["-1001", "42", "@acme_ops"]
    assert chosen.kinds == ["session_down"]
    again = client.get("/alerts/settings/").content.decode()
    assert "Alert settings saved." in again and "@acme_ops" in again

    wrong = client.post("/alerts/settings/", {"channels": ["telegram"], "telegram_chat_ids": "not a chat"})
    assert wrong.status_code == 400 and b"is not a Telegram chat id" in wrong.content
    assert AlertSettings.objects.get(tenant=named.acme).telegram_chat_ids == ["-1001", "42", "@acme_ops"]

    client.force_login(named.bob)  # an agent reads the history, changes no settings
    assert client.get("/alerts/settings/").status_code == 403
    assert client.post("/alerts/settings/", {"channels": []}).status_code == 403
    assert client.get("/alerts/").status_code == 200


def alerts_of(tenant, n, rule="session_down", state="resolved"):
    now = timezone.now()
    return [Alert.objects.create(key=f"{rule}:{tenant.pk if tenant else 'p'}:{i}", rule=rule, tenant=tenant,
                                 state=state, summary=f"{rule} {tenant.slug if tenant else 'platform'} {i}",
                                 started_at=now - timedelta(minutes=i),
                                 resolved_at=now if state == "resolved" else None) for i in range(n)]


def test_the_history_is_each_workspaces_own_filtered_and_paginated(named, api_as, client):
    old = alerts_of(named.acme, 30)
    [firing] = alerts_of(named.acme, 1, rule="webhooks_dead", state="firing")
    [theirs] = alerts_of(named.globex, 1)
    [platform] = alerts_of(None, 1, rule="queue_age", state="firing")
    firing.notifications = [{"at": "2026-01-01T00:00:00+00:00", "event": "firing", "channel": "telegram",
                             "to": "platform", "ok": True, "error": ""},
                            {"at": "2026-01-01T00:00:00+00:00", "event": "firing", "channel": "email",
                             "to": "workspace", "ok": True, "error": ""}]
    firing.save()
    bob = api_as(named.bob)

    listed = bob.get(f"{V1}/alerts?limit=5").json()
    assert listed["pagination"]["total"] == 31 and listed["data"][0]["id"] == firing.pk  # firing first
    assert listed["data"][0]["told"] == [{"at": "2026-01-01T00:00:00+00:00", "event": "firing", "channel": "email",
                                          "ok": True, "error": ""}]  # only what the workspace was told
    assert [a["id"] for a in listed["data"][1:]] == [a.pk for a in old[:4]]
    assert ok(bob.get(f"{V1}/alerts?state=firing"))[0]["kind"] == "webhooks_dead"
    assert len(ok(bob.get(f"{V1}/alerts?kind=session_down&limit=100"))) == 30
    assert error(bob.get(f"{V1}/alerts?state=burning"), 400, "unknown_state")
    assert error(bob.get(f"{V1}/alerts?kind=queue_age"), 400, "unknown_alert_kind")
    assert ok(bob.get(f"{V1}/alerts/{firing.pk}"))["summary"] == firing.summary
    assert error(bob.get(f"{V1}/alerts/{theirs.pk}"), 404, "not_found")  # Globex's
    assert error(bob.get(f"{V1}/alerts/{platform.pk}"), 404, "not_found")  # the platform's own
    assert [a["id"] for a in ok(api_as(named.carol).get(f"{V1}/alerts"))] == [theirs.pk]

    client.force_login(named.bob)
    page = client.get("/alerts/").content.decode()
    assert firing.summary in page and old[0].summary in page and old[29].summary not in page  # 25 a page
    assert theirs.summary not in page and platform.summary not in page and "Page 1 of 2" in page
    assert old[29].summary in client.get("/alerts/?page=2").content.decode()
    filtered = client.get("/alerts/?state=firing").content.decode()
    assert firing.summary in filtered and old[0].summary not in filtered
    assert "email" in filtered and "by telegram" not in filtered  # the platform's channels are not shown

    client.force_login(named.admin)
    everything = client.get("/platform/alerts/?kind=queue_age").content.decode()
    assert platform.summary in everything and firing.summary not in everything
    assert theirs.summary in client.get("/platform/alerts/?kind=session_down&page=1").content.decode() or (
        theirs.summary in client.get("/platform/alerts/?kind=session_down&page=2").content.decode())
