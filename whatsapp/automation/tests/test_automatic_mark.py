"""Issue 15 item 5: every automatic message says which rule or bot sent it, in the API (`automation`, null for the
others) and on the conversation page (a small "Automatic · …" label), without a query per message.
Inbound messages come from the simulated phone; answers go out through the sending pipeline to the simulator.
"""
from datetime import datetime, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from whatsapp import live
from whatsapp.automation import schedule
from whatsapp.automation.tests.test_receptionist import configure, inbound, rule
from whatsapp.models import Message
from whatsapp.tests.support import link_session, ok

V1 = "/api/v1"
pytestmark = pytest.mark.django_db(transaction=True)


def _messages(client):
    body = ok(client.get(f"{V1}/messages"))
    return {m["text"]: m for m in (body["results"] if isinstance(body, dict) else body)}


def test_a_rule_reply_and_an_away_message_carry_their_source_and_the_others_null(named, clients, host, clock, client,
                                                                               monkeypatch):
    published = []  # what open conversation pages hear (their websocket payloads)
    real_publish = live.publish
    monkeypatch.setattr(live, "publish", lambda schema, updates: (published.append(updates),
                                                                  real_publish(schema, updates)))
    link_session(clients["alice"], host, clock)
    configure(named.acme, cooldown_minutes=0)
    rule(named.acme, name="prices", match="contains", pattern="price", reply_text="Prices: see acme.test")
    inbound(clients["alice"], host, "price?")
    shown = _messages(clients["alice"])
    assert shown["price?"]["automation"] is None  # the customer's message
    reply = shown["Prices: see acme.test"]
    assert reply["automation"] == {"kind": "rule", "source": "prices", "label": "Automatic · rule ‘prices’"}
    assert ok(clients["alice"].get(f"{V1}/messages/{reply['id']}"))["automation"] == reply["automation"]
    live_payloads = [m for updates in published for rows in updates.values() for m in rows]
    assert {m["automation"]["label"] for m in live_payloads if m["id"] == reply["id"]} == {"Automatic · rule ‘prices’"}
    assert all(m["automation"] is None for m in live_payloads if m["id"] == shown["price?"]["id"])
    conversation_id = reply["conversation_id"]
    listed = ok(clients["alice"].get(f"{V1}/conversations/{conversation_id}/messages"))
    listed = listed["results"] if isinstance(listed, dict) else listed
    assert {m["id"]: m["automation"] for m in listed}[reply["id"]] == reply["automation"]

    # A person's message from the dashboard API is not automatic.
    person = ok(clients["alice"].post(f"{V1}/messages", {"session": "front-desk", "to": "+6281234567890",
                                                          "text": "Hello from a person"}, format="json"), 202)
    assert person["automation"] is None

    # Closed now: the away message, marked as such.
    closed_today = schedule.DAYS[(datetime.now(dt_timezone.utc).weekday() + 3) % 7]
    configure(named.acme, schedule=[{"day": closed_today, "start": "09:00", "end": "10:00"}],
              away_message="We are closed.")
    inbound(clients["alice"], host, "Anyone there?")
    away = _messages(clients["alice"])["We are closed."]
    assert away["automation"] == {"kind": "away", "source": "Away message", "label": "Automatic · Away message"}

    # The conversation page labels the automatic messages only.
    client.force_login(named.alice)
    page = client.get(f"/conversations/{conversation_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-testid="automatic-{reply["id"]}">Automatic · rule ‘prices’<' in html
    assert f'data-testid="automatic-{away["id"]}">Automatic · Away message<' in html
    assert html.count("data-automation") == 2


def test_the_message_list_loads_the_marks_without_a_query_per_message(named, clients, host, clock, settings):
    settings.AUTOREPLY_MAX_PER_CONTACT_PER_HOUR = 10
    link_session(clients["alice"], host, clock)
    configure(named.acme, cooldown_minutes=0, fallback="We'll get back to you.")

    def queries():
        with CaptureQueriesContext(connection) as captured:
            ok(clients["alice"].get(f"{V1}/messages"))
        return len(captured.captured_queries)

    inbound(clients["alice"], host, "hello 1")
    first = queries()
    for n in range(2, 5):
        inbound(clients["alice"], host, f"hello {n}")
    with tenant_context(named.acme):
        assert Message.objects.filter(direction="out").count() == 4
    assert queries() == first
