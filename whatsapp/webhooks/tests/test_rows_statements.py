"""The subscribed endpoints written out with core.rows (whatsapp.webhooks.actions.emit_events, on every batch of
messages the session host sends or hears about): exactly the enabled endpoints subscribed to the event, each as
the ORM reads it, every concrete field."""
import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from core.tests.instances import assert_same_instance
from whatsapp.models import WebhookEndpoint
from whatsapp.webhooks import actions as webhooks

pytestmark = pytest.mark.django_db


def test_the_endpoints_of_an_event_are_the_enabled_subscribed_ones_as_the_orm_reads_them(
        named, django_capture_on_commit_callbacks):
    with tenant_context(named.acme):
        subscribed = [webhooks.create_endpoint(named.acme, acting_user=None, url=f"https://example.com/hook/{i}",
                                               events=events, description=f"hook {i}")[0]
                      for i, events in enumerate([["message.sent"], ["message.received", "message.sent"]])]
        webhooks.create_endpoint(named.acme, acting_user=None, url="https://example.com/hook/received",
                                 events=["message.received"])
        WebhookEndpoint.objects.filter(pk=webhooks.create_endpoint(
            named.acme, acting_user=None, url="https://example.com/hook/off", events=["message.sent"])[0].pk).update(
            enabled=False, disabled_reason="gone", disabled_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=False):
            deliveries = webhooks.emit_events("message.sent", [{"id": 1}, {"id": 2}])
        expected = WebhookEndpoint.objects.in_bulk([endpoint.pk for endpoint in subscribed])
    assert sorted(d.endpoint_id for d in deliveries) == sorted([e.pk for e in subscribed] * 2)
    for delivery in deliveries:
        assert_same_instance(delivery.endpoint, expected[delivery.endpoint_id])
    assert expected[subscribed[1].pk].events == ["message.received", "message.sent"]
