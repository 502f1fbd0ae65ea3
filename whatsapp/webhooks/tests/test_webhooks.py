"""Webhooks: endpoints over the API, deliveries signed per Standard Webhooks and checked by a real receiver, the
retry schedule and dead-lettering on a controllable clock, 410, replay, private targets, tenant isolation.

alice owns Acme, bob is a member of Acme, carol owns Globex. Celery is eager: the first attempt runs when the
on-commit callbacks run (django_capture_on_commit_callbacks), later ones when the test calls the sweeper.
"""
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import httpx
import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from audit.models import AuditLog
from billing.models import Subscription
from whatsapp.models import WebhookDelivery, WebhookEndpoint
from whatsapp.tests import webhook_support
from whatsapp.tests.support import error, ok
from whatsapp.webhooks import actions, pump
from whatsapp.webhooks import delivery as wire
from whatsapp.webhooks.tasks import deliver_due_webhooks

V1 = "/api/v1"


def register(client, receiver, events=("message.received",)):
    data = ok(client.post(f"{V1}/webhooks", {"url": receiver.url, "events": list(events)}, format="json"), 201)
    receiver.secret = data["secret"]
    return data["endpoint"]["id"]


def emit(tenant, capture, event="message.received", data=None):
    pks = webhook_support.emit(tenant, capture, event, data)
    with tenant_context(tenant):
        return [WebhookDelivery.objects.get(pk=pk) for pk in pks]


def load(tenant, pk):
    with tenant_context(tenant):
        return WebhookDelivery.objects.select_related("endpoint").get(pk=pk)


# --- endpoints over the API ---------------------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_stores_it_encrypted(named, clients, receiver):
    created = ok(clients["alice"].post(f"{V1}/webhooks", {"url": receiver.url, "events": ["message.received",
                 "session.connected"], "description": "CRM"}, format="json"), 201)
    secret = created["secret"]
    assert secret.startswith("whsec_") and created["endpoint"]["events"] == ["message.received", "session.connected"]
    pk = created["endpoint"]["id"]
    detail = ok(clients["alice"].get(f"{V1}/webhooks/{pk}"))
    listed = clients["alice"].get(f"{V1}/webhooks").json()
    assert listed["pagination"]["total"] == 1 and listed["data"][0] == detail
    assert "secret" not in json.dumps(detail) and secret not in json.dumps(listed)

    with tenant_context(named.acme):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM whatsapp_webhookendpoint")
            stored = json.dumps(cursor.fetchall(), default=str)
        endpoint = WebhookEndpoint.objects.get(pk=pk)
    raw = secret.removeprefix("whsec_")
    assert secret not in stored and raw not in stored and raw.rstrip("=") not in stored
    assert wire.decrypt_secret(endpoint.secret_encrypted) == secret


def test_ordered_delivery_is_an_endpoint_setting_off_by_default_and_audited(named, clients, receiver):
    created = ok(clients["alice"].post(f"{V1}/webhooks", {"url": receiver.url, "events": ["message.sent"]},
                                       format="json"), 201)["endpoint"]
    assert created["ordered"] is False
    data = ok(clients["alice"].patch(f"{V1}/webhooks/{created['id']}", {"ordered": True}, format="json"))
    assert data["ordered"] is True and ok(clients["alice"].get(f"{V1}/webhooks/{created['id']}"))["ordered"] is True
    error(clients["alice"].patch(f"{V1}/webhooks/{created['id']}", {"ordered": "sometimes"}, format="json"), 400,
          "validation_error")
    error(clients["bob"].patch(f"{V1}/webhooks/{created['id']}", {"ordered": False}, format="json"), 403,
          "permission_denied")
    other = ok(clients["alice"].post(f"{V1}/webhooks", {"url": receiver.url, "events": ["message.sent"],
                                                        "ordered": True}, format="json"), 201)["endpoint"]
    assert other["ordered"] is True
    with tenant_context(named.acme):
        change = AuditLog.objects.filter(action="webhook.endpoint_updated").latest("id")
    assert change.before["ordered"] is False and change.after["ordered"] is True


def test_update_and_delete(named, clients, receiver, django_capture_on_commit_callbacks):
    pk = register(clients["alice"], receiver)
    data = ok(clients["alice"].patch(f"{V1}/webhooks/{pk}", {"events": ["message.sent", "message.sent"],
                                                              "enabled": False}, format="json"))
    assert data["events"] == ["message.sent"] and data["enabled"] is False and data["disabled_reason"]
    data = ok(clients["alice"].patch(f"{V1}/webhooks/{pk}", {"enabled": True}, format="json"))
    assert data["enabled"] is True and data["disabled_reason"] == "" and data["url"] == receiver.url
    emit(named.acme, django_capture_on_commit_callbacks, "message.sent")
    assert clients["alice"].delete(f"{V1}/webhooks/{pk}").status_code == 204
    error(clients["alice"].get(f"{V1}/webhooks/{pk}"), 404, "not_found")
    with tenant_context(named.acme):
        assert not WebhookDelivery.objects.exists()


def test_every_endpoint_change_is_audited_with_who_and_what(named, clients, receiver):
    pk = register(clients["alice"], receiver)
    ok(clients["alice"].patch(f"{V1}/webhooks/{pk}", {"events": ["message.sent"]}, format="json"))
    assert clients["alice"].delete(f"{V1}/webhooks/{pk}").status_code == 204
    rows = list(AuditLog.objects.filter(tenant=named.acme, action__startswith="webhook.").order_by("id"))
    assert [(row.action, row.actor, row.target_id) for row in rows] == [
        ("webhook.endpoint_created", named.alice, str(pk)), ("webhook.endpoint_updated", named.alice, str(pk)),
        ("webhook.endpoint_deleted", named.alice, str(pk))]
    created, updated, deleted = rows
    assert created.after["url"] == receiver.url and "secret" not in json.dumps(created.after)
    assert (updated.before["events"], updated.after["events"]) == (["message.received"], ["message.sent"])
    assert deleted.before["url"] == receiver.url


@pytest.mark.parametrize("body, code", [
    ({"url": "https://example.com/h", "events": ["message.exploded"]}, "unknown_event"),
    ({"url": "https://example.com/h", "events": []}, "invalid_events"),
    ({"url": "https://example.com/h"}, "invalid_events"),
    ({"url": "ftp://example.com/h", "events": ["message.sent"]}, "invalid_url"),
    ({"url": "not a url", "events": ["message.sent"]}, "invalid_url"),
    ({"url": "https://user:pw@example.com/h", "events": ["message.sent"]}, "invalid_url"),
    ({"events": ["message.sent"]}, "invalid_url"),
    ({"url": "http://127.0.0.1:9000/h", "events": ["message.sent"]}, "private_target"),
    ({"url": "http://localhost/h", "events": ["message.sent"]}, "private_target"),
    ({"url": "http://10.1.2.3/h", "events": ["message.sent"]}, "private_target"),
    ({"url": "http://192.168.0.10/h", "events": ["message.sent"]}, "private_target"),
    ({"url": "http://169.254.169.254/latest/meta-data", "events": ["message.sent"]}, "private_target"),
    ({"url": "http://[::1]/h", "events": ["message.sent"]}, "private_target"),
    ({"url": "http://[::ffff:127.0.0.1]/h", "events": ["message.sent"]}, "private_target"),
    ({"url": "http://0.0.0.0/h", "events": ["message.sent"]}, "private_target"),
])
def test_bad_input_is_refused_with_a_code(named, clients, settings, body, code):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    error(clients["alice"].post(f"{V1}/webhooks", body, format="json"), 400, code)
    with tenant_context(named.acme):
        assert not WebhookEndpoint.objects.exists()


def test_patch_to_a_private_target_is_refused(named, clients, receiver, settings):
    pk = register(clients["alice"], receiver)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    error(clients["alice"].patch(f"{V1}/webhooks/{pk}", {"url": "http://10.0.0.1/x"}, format="json"), 400,
          "private_target")
    error(clients["alice"].patch(f"{V1}/webhooks/{pk}", {"events": ["nope"]}, format="json"), 400, "unknown_event")


def test_members_read_owners_write_and_unpaid_tenants_cannot_write(named, clients, receiver):
    pk = register(clients["alice"], receiver)
    assert ok(clients["bob"].get(f"{V1}/webhooks/{pk}"))["id"] == pk
    body = {"url": receiver.url, "events": ["message.sent"]}
    error(clients["bob"].post(f"{V1}/webhooks", body, format="json"), 403, "permission_denied")
    error(clients["bob"].patch(f"{V1}/webhooks/{pk}", {"enabled": False}, format="json"), 403,
          "permission_denied")
    error(clients["bob"].delete(f"{V1}/webhooks/{pk}"), 403, "permission_denied")
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    error(clients["alice"].post(f"{V1}/webhooks", body, format="json"), 402, "payment_required")
    assert ok(clients["alice"].get(f"{V1}/webhooks"))


def test_another_tenants_ids_are_404(named, clients, receiver, django_capture_on_commit_callbacks):
    pk = register(clients["alice"], receiver)
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    carol = clients["carol"]
    error(carol.get(f"{V1}/webhooks/{pk}"), 404, "not_found")
    error(carol.patch(f"{V1}/webhooks/{pk}", {"enabled": False}, format="json"), 404, "not_found")
    error(carol.delete(f"{V1}/webhooks/{pk}"), 404, "not_found")
    error(carol.get(f"{V1}/webhooks/{pk}/deliveries"), 404, "not_found")
    error(carol.post(f"{V1}/webhook-deliveries/{delivery.pk}/replay"), 404, "not_found")
    assert carol.get(f"{V1}/webhooks").json()["data"] == []
    assert load(named.acme, delivery.pk).endpoint.enabled is True
    assert ok(clients["bob"].get(f"{V1}/webhooks/{pk}/deliveries"))[0]["id"] == delivery.pk


# --- delivery -----------------------------------------------------------------------------------------------------


def test_deliveries_are_signed_and_verified_by_the_receiver(named, clients, receiver,
                                                            django_capture_on_commit_callbacks):
    register(clients["alice"], receiver, events=["message.received"])
    with tenant_context(named.acme):  # subscribed to another event: gets nothing
        actions.create_endpoint(named.acme, acting_user=None, url=receiver.url, events=["message.sent"])
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks, data={"id": 7, "text": "héllo"})
    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert delivery.webhook_id.startswith("msg_") and delivery.last_status_code == 200
    [log] = delivery.attempt_log
    assert log["status_code"] == 200 and log["response"] == "ok" and log["error"] == ""
    assert log["duration_ms"] >= 0 and delivery.last_duration_ms == log["duration_ms"]

    [(headers, body, verified)] = receiver.received
    assert verified and headers["webhook-id"] == delivery.webhook_id
    assert headers["webhook-signature"].startswith("v1,") and headers["content-type"] == "application/json"
    sent = json.loads(body)
    assert sent["type"] == "message.received" and sent["data"] == {"id": 7, "text": "héllo"} and sent["timestamp"]

    # The receiver refuses a tampered body and a stale timestamp.
    tampered = body.replace(b'"id":7', b'"id":8')
    assert tampered != body
    assert httpx.post(receiver.url, content=tampered, headers=headers).status_code == 401
    stale = wire.signed_headers(receiver.secret, "msg_stale", body.decode(),
                                datetime.now(dt_timezone.utc) - timedelta(minutes=10))
    assert httpx.post(receiver.url, content=body, headers=stale).status_code == 401
    fresh = wire.signed_headers(receiver.secret, "msg_fresh", body.decode(), datetime.now(dt_timezone.utc))
    assert httpx.post(receiver.url, content=body, headers=fresh).status_code == 200
    assert [v for _, _, v in receiver.received] == [True, False, False, True]


def test_failures_follow_the_retry_schedule_then_dead_letter(named, clients, receiver,
                                                             django_capture_on_commit_callbacks):
    receiver.statuses = [500]
    pk = register(clients["alice"], receiver)
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    assert delivery.status == "failed" and delivery.attempts == 1 and delivery.last_status_code == 500

    for attempt, wait in enumerate(wire.RETRY_SCHEDULE, start=1):
        last_at = datetime.fromisoformat(delivery.attempt_log[-1]["at"])
        gap = (delivery.next_attempt_at - last_at).total_seconds()
        assert wait.total_seconds() * 0.9 <= gap <= wait.total_seconds() * 1.1, (attempt, gap)
        # Not due yet: the sweeper leaves it alone.
        assert deliver_due_webhooks(now=delivery.next_attempt_at - timedelta(milliseconds=500)) == 0
        assert deliver_due_webhooks(now=delivery.next_attempt_at + timedelta(milliseconds=1)) == 1
        delivery = load(named.acme, delivery.pk)
        assert delivery.attempts == attempt + 1

    assert delivery.status == "dead" and delivery.next_attempt_at is None and delivery.attempts == 8
    assert len(receiver.received) == 8 and all(v for _, _, v in receiver.received)  # every retry signed
    assert len({h["webhook-id"] for h, _, _ in receiver.received}) == 1  # same id on every retry
    assert deliver_due_webhooks(now=timezone.now() + timedelta(days=30)) == 0
    listed = ok(clients["alice"].get(f"{V1}/webhooks/{pk}/deliveries?status=dead"))
    assert [d["id"] for d in listed] == [delivery.pk] and len(listed[0]["attempts_log"]) == 8
    assert all(a["status_code"] == 500 and a["error"] == "HTTP 500" for a in listed[0]["attempts_log"])


def test_a_receiver_that_was_down_gets_the_delivery_on_a_later_attempt(named, clients, receiver,
                                                                       django_capture_on_commit_callbacks):
    receiver.statuses = [503, 503, 200]
    register(clients["alice"], receiver)
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    for _ in range(2):
        deliver_due_webhooks(now=load(named.acme, delivery.pk).next_attempt_at)
    delivery = load(named.acme, delivery.pk)
    assert delivery.status == "succeeded" and delivery.attempts == 3
    assert [a["status_code"] for a in delivery.attempt_log] == [503, 503, 200]


def test_410_disables_the_endpoint(named, clients, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [410]
    pk = register(clients["alice"], receiver)
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    assert delivery.status == "dead" and delivery.last_status_code == 410
    endpoint = ok(clients["alice"].get(f"{V1}/webhooks/{pk}"))
    assert endpoint["enabled"] is False and "410" in endpoint["disabled_reason"]
    assert emit(named.acme, django_capture_on_commit_callbacks) == []  # disabled endpoints get nothing new
    error(clients["alice"].post(f"{V1}/webhook-deliveries/{delivery.pk}/replay"), 409, "endpoint_disabled")


def test_replay_attempts_a_dead_delivery_again(named, clients, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [500]
    register(clients["alice"], receiver)
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    with tenant_context(named.acme):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status="dead", next_attempt_at=None)
    receiver.statuses = [200]
    with django_capture_on_commit_callbacks(execute=True):
        data = ok(clients["alice"].post(f"{V1}/webhook-deliveries/{delivery.pk}/replay"), 202)
    error(clients["bob"].post(f"{V1}/webhook-deliveries/{delivery.pk}/replay"), 403, "permission_denied")
    assert data["id"] == delivery.pk
    delivery = load(named.acme, delivery.pk)
    assert delivery.status == "succeeded" and delivery.attempts == 2
    assert [a["status_code"] for a in delivery.attempt_log] == [500, 200]
    assert receiver.received[0][0]["webhook-id"] == receiver.received[1][0]["webhook-id"] == delivery.webhook_id
    assert all(v for _, _, v in receiver.received)


def test_private_targets_are_refused_at_delivery_time(named, clients, receiver, settings,
                                                      django_capture_on_commit_callbacks):
    pk = register(clients["alice"], receiver)
    with tenant_context(named.acme):
        WebhookEndpoint.objects.filter(pk=pk).update(url=receiver.url.replace("127.0.0.1", "localhost"))
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    assert delivery.status == "failed" and delivery.last_status_code is None
    assert "private" in delivery.last_error and receiver.received == []


def test_sweeper_only_touches_due_deliveries_of_enabled_endpoints(named, clients, receiver,
                                                                  django_capture_on_commit_callbacks):
    receiver.statuses = [500]
    pk = register(clients["alice"], receiver)
    [delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    ok(clients["alice"].patch(f"{V1}/webhooks/{pk}", {"enabled": False}, format="json"))
    assert deliver_due_webhooks(now=delivery.next_attempt_at + timedelta(seconds=1)) == 0
    ok(clients["alice"].patch(f"{V1}/webhooks/{pk}", {"enabled": True}, format="json"))
    assert deliver_due_webhooks(now=delivery.next_attempt_at + timedelta(seconds=1)) == 1
    # A claimed delivery is not claimed again until its claim runs out (a worker that died mid-attempt).
    with tenant_context(named.acme):
        due = pump.claim({}, now=timezone.now() + timedelta(days=1))
        assert [d.pk for d, _ in due] == [delivery.pk]
        assert pump.claim({}, now=timezone.now() + timedelta(days=1)) == []
