"""The bot webhook on a local fake bot server: inbound messages POSTed signed (verified by the bot with the secret),
its replies sent through the pipeline, handoff asked by the bot, and a bot that times out, fails, answers garbage,
too many or oversized replies: logged, shown, and the rules answer instead."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django_tenants.utils import tenant_context
from standardwebhooks import Webhook

from whatsapp.automation import actions
from whatsapp.automation.models import AutomationLog, Receptionist
from whatsapp.tests.support import error, link_session, ok

from .test_receptionist import CHAT, answers, inbound

V1 = "/api/v1"
pytestmark = pytest.mark.django_db(transaction=True)


class FakeBot:
    """A bot on 127.0.0.1: verifies each request's signature with `secret`, sleeps `delay` seconds, then answers
    `status` with `body` (bytes, or an object sent as JSON)."""

    def __init__(self):
        self.secret, self.delay, self.status, self.body = None, 0, 200, {"replies": []}
        self.received = []
        bot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                Webhook(bot.secret).verify(raw, headers)  # raises (500 below) when unsigned
                bot.received.append(json.loads(raw))
                time.sleep(bot.delay)
                body = bot.body if isinstance(bot.body, bytes) else json.dumps(bot.body).encode()
                try:
                    self.send_response(bot.status)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/brain"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def brain(settings, named, clients, host, clock):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.BOT_TIMEOUT_MS = 500
    bot = FakeBot()
    link_session(clients["alice"], host, clock)
    ok(clients["alice"].patch(f"{V1}/automation", {"enabled": True, "bot_url": bot.url, "bot_enabled": True,
                                                    "fallback": "Rules here", "cooldown_minutes": 0}, format="json"))
    bot.secret = ok(clients["alice"].post(f"{V1}/automation/bot-secret"), 201)["secret"]
    yield bot
    bot.close()


def bot_status(tenant):
    with tenant_context(tenant):
        return Receptionist.objects.values_list("bot_last_error", flat=True).get()


def test_the_bot_gets_the_message_signed_and_its_replies_go_out(named, clients, host, brain):
    brain.body = {"replies": [{"type": "text", "text": "Hi, I am the bot"}, {"type": "text", "text": "Ask me"}]}
    inbound(clients["alice"], host, "hello bot")
    [request] = brain.received
    assert request["type"] == "message.received" and request["data"]["text"] == "hello bot"
    assert request["data"]["from"] == "+6281234567890" and request["business"]["open_now"] is True
    assert answers(named.acme) == [("bot", "Hi, I am the bot", "sent"), ("bot", "Ask me", "sent")]
    assert bot_status(named.acme) == ""
    assert ok(clients["bob"].get(f"{V1}/automation"))["bot_last_ok_at"]


def test_the_bot_asks_for_a_person(named, clients, host, brain):
    brain.body = {"replies": [{"type": "text", "text": "Passing you to a colleague"}], "handoff": True}
    inbound(clients["alice"], host, "I want to complain")
    inbound(clients["alice"], host, "hello?")  # a person has it now: neither the bot nor the rules answer
    assert answers(named.acme) == [("bot", "Passing you to a colleague", "sent")]
    assert len(brain.received) == 1
    with tenant_context(named.acme):
        assert AutomationLog.objects.filter(detail__startswith="handoff").count() == 1


@pytest.mark.parametrize("setup, reason", [
    (lambda bot: setattr(bot, "delay", 1.0), "timeout"),
    (lambda bot: setattr(bot, "status", 500), "http_500"),
    (lambda bot: setattr(bot, "body", b"<html>oops</html>"), "not_json"),
    (lambda bot: setattr(bot, "body", {"replies": [{"type": "text", "text": "x"}] * 6}), "too_many_replies"),
    (lambda bot: setattr(bot, "body", {"replies": [{"type": "text", "text": "x" * 5000}]}), "invalid_reply"),
    (lambda bot: setattr(bot, "body", b"[" + b"1," * 40000 + b"1]"), "oversized"),
    (lambda bot: setattr(bot, "body", {"replies": [{"type": "sticker"}]}), "invalid_reply"),
])
def test_a_failing_bot_falls_back_to_the_rules_and_is_shown(named, clients, host, brain, as_user, setup, reason):
    setup(brain)
    inbound(clients["alice"], host, "hello bot")
    assert answers(named.acme) == [("fallback", "Rules here", "sent")]
    assert bot_status(named.acme).startswith(reason)
    with tenant_context(named.acme):
        assert AutomationLog.objects.get(kind="bot_failed").detail.startswith(reason)
    assert ok(clients["bob"].get(f"{V1}/automation"))["bot_last_error"].startswith(reason)
    page = as_user(named.alice).get("/automation/").content.decode()
    assert "Failing: " + reason in page


def test_bot_urls_in_private_ranges_are_refused(named, clients, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    error(clients["alice"].patch(f"{V1}/automation", {"bot_url": "http://10.0.0.5/bot"}, format="json"), 400,
          "private_target")
    with tenant_context(named.acme):
        assert not actions.settings_row(None).pk
