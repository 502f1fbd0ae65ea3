"""Alerts: an incident is told once when it fires and once when it resolves, by a fake Telegram server, the email
outbox and a webhook receiver checking the signature; flapping within the cooldown tells nobody again; the history
page is the platform admins'.

alice owns Acme; admin is a platform admin.
"""
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from alerts import actions
from alerts.models import Alert
from whatsapp.messaging.models import Message
from whatsapp.sessions.models import WhatsAppSession


class Recorder:
    """A local HTTP server keeping every POST (path, headers, body): Telegram's Bot API and a webhook receiver."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def telegram(settings):
    server = Recorder()
    settings.TELEGRAM_API_BASE, settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_IDS = server.url, "123:abc", ["42"]
    yield server
    server.close()


@pytest.fixture
def hook(settings):
    server = Recorder()
    settings.WHATSAPP_ALERT_WEBHOOK, settings.WHATSAPP_ALERT_WEBHOOK_SECRET = server.url + "/alerts", "whsec-test"
    yield server
    server.close()


def texts(telegram):
    return [json.loads(body)["text"] for _, _, body in telegram.received]


def test_each_incident_is_told_once_firing_and_once_resolved(named, telegram, hook, mailoutbox, settings):
    now = timezone.now()
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="desk", should_run=True, status="disconnected",
                                                 last_activity_at=now - timedelta(minutes=30))
        for i in range(25):
            Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net",
                                   status="failed" if i < 10 else "sent", failure_reason="timeout")

    fired, resolved = actions.check()
    assert sorted(a.rule for a in fired) == ["error_rate", "session_down"] and resolved == []
    assert sorted(texts(telegram)) == ["[Switchboard] ALERT (Acme): Session desk is disconnected for more than 10 "
                                       "minutes", "[Switchboard] ALERT: 10 of 25 messages failed in the last 15 "
                                       "minutes (40%)"]
    assert {path for path, _, _ in telegram.received} == {"/bot123:abc/sendMessage"}
    assert len(hook.received) == 2
    for _, headers, body in hook.received:
        assert headers["X-Switchboard-Signature"] == actions.webhook_signature(
            "whsec-test", headers["X-Switchboard-Timestamp"], body)
        assert json.loads(body)["event"] == "alert.firing"
    assert len(mailoutbox) == 3
    session_mails = [m for m in mailoutbox if "Session desk" in m.subject]
    # The platform admins, linked to the platform's history; Acme's owner (its default: email), to its own.
    assert sorted((m.to, m.body.split("\n")[-1]) for m in session_mails) == [
        (["admin@platform.test"], f"{settings.SITE_URL}/platform/alerts/"),
        (["alice@acme.test"], f"{settings.SITE_URL}/alerts/")]
    error_mail = next(m for m in mailoutbox if "messages failed" in m.subject)
    assert error_mail.to == ["admin@platform.test"]  # the platform's own figures: admins only

    assert actions.check() == ([], [])  # still firing: nobody is told again
    assert len(telegram.received) == 2 and len(mailoutbox) == 3

    with tenant_context(named.acme):
        WhatsAppSession.objects.filter(pk=session.pk).update(status="connected")
    fired, resolved = actions.check()
    assert fired == [] and [a.rule for a in resolved] == ["session_down"]
    assert texts(telegram)[-1].startswith("[Switchboard] RESOLVED (Acme): Session desk")
    assert json.loads(hook.received[-1][2])["event"] == "alert.resolved"

    # Down again within the cooldown: the same incident goes on, told to nobody.
    with tenant_context(named.acme):
        WhatsAppSession.objects.filter(pk=session.pk).update(status="logged_out")
    assert actions.check() == ([], [])
    assert len(telegram.received) == 3
    alert = Alert.objects.get(rule="session_down")
    assert alert.state == "firing" and [n["event"] for n in alert.notifications if n["channel"] == "telegram"] == [
        "firing", "resolved"]


def test_a_channel_down_does_not_silence_the_others(named, telegram, settings, mailoutbox):
    settings.WHATSAPP_ALERT_WEBHOOK = "http://127.0.0.1:9/nobody"
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="desk", should_run=True, status="error",
                                       last_activity_at=timezone.now() - timedelta(hours=1))
    [alert], _ = actions.check()
    assert len(telegram.received) == 1
    alert.refresh_from_db()
    assert {(n["to"], n["channel"]): n["ok"] for n in alert.notifications} == {
        ("platform", "email"): True, ("platform", "webhook"): False, ("platform", "telegram"): True,
        ("workspace", "email"): True}
    assert len(mailoutbox) == 2  # the admins' and Acme's owner's


def test_the_history_is_for_platform_admins(named, client):
    Alert.objects.create(key="queue_age", rule="queue_age", summary="A message has waited 12 minutes to be sent")
    client.force_login(named.admin)
    page = client.get("/platform/alerts/")
    assert page.status_code == 200 and b"A message has waited 12 minutes" in page.content
    client.force_login(named.alice)
    assert client.get("/platform/alerts/").status_code == 404


def test_connection_status_prints_every_session(named, capsys):
    from django.core.management import call_command

    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", status="connected", last_activity_at=timezone.now())
    call_command("connection_status")
    out = capsys.readouterr().out
    assert "acme" in out and "front-desk" in out and "connected" in out
