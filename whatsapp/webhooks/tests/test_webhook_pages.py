"""The webhook pages through Django's test client: endpoints listed with their state and dead-letter counts;
create with inline errors and the secret shown once; edit, disable, delete with confirmation; one endpoint's
deliveries with their attempts and payloads, filtered by status; replay one or every dead one to a real
receiver; who may do what; another tenant's ids are 404; a read-only tenant is refused with the reason; the
dashboard's notice about dead deliveries.

alice owns Acme, bob is a member of Acme, carol owns Globex.
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.models import WebhookDelivery, WebhookEndpoint
from whatsapp.tests.support import texts
from whatsapp.tests.webhook_support import emit
from whatsapp.webhooks import actions
from whatsapp.webhooks import delivery as wire
from whatsapp.webhooks.tasks import deliver_due_webhooks


def endpoints(tenant):
    with tenant_context(tenant):
        return list(WebhookEndpoint.objects.all())


def make_endpoint(tenant, receiver, events=("message.received",)):
    with tenant_context(tenant):
        endpoint, receiver.secret = actions.create_endpoint(tenant, acting_user=None, url=receiver.url, events=list(events))
    return endpoint


def run_until_dead(tenant, pk):
    """Let the sweeper try again at each due time until the delivery is dead-lettered."""
    with tenant_context(tenant):
        delivery = WebhookDelivery.objects.get(pk=pk)
    while delivery.status == "failed":
        deliver_due_webhooks(now=delivery.next_attempt_at)
        with tenant_context(tenant):
            delivery = WebhookDelivery.objects.get(pk=pk)
    return delivery


def test_login_is_required(client, named):
    response = client.get("/webhooks/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_owner_adds_an_endpoint_and_sees_the_secret_once(as_user, named, receiver):
    client = as_user(named.alice)
    page = client.get("/webhooks/")
    assert page.status_code == 200 and b"No endpoints yet" in page.content
    assert b'data-testid="create-endpoint"' in page.content and b'value="session.qr"' in page.content

    created = client.post("/webhooks/", {"url": receiver.url, "description": "CRM",
                                         "events": ["message.received", "session.connected"]})
    [endpoint] = endpoints(named.acme)
    # POST → redirect → GET: the secret rides the session to the endpoint's page, never the URL.
    assert created.status_code == 302 and created["Location"] == f"/webhooks/{endpoint.pk}/"
    assert "whsec_" not in created["Location"]
    response = client.get(created["Location"])
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert endpoint.events == ["message.received", "session.connected"] and endpoint.description == "CRM"
    secret = response.context["new_secret"]
    html = response.content.decode()
    assert secret.startswith("whsec_") and 'data-testid="new-secret"' in html and secret in html
    assert 'data-copy="#new-secret-value"' in html and "not shown again" in html
    assert wire.decrypt_secret(endpoint.secret_encrypted) == secret

    again = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    listing = client.get("/webhooks/").content.decode()
    assert secret not in again and secret not in listing and 'data-testid="new-secret"' not in again
    assert receiver.url in listing and "session.connected" in listing and "enabled" in listing


def test_the_endpoint_form_sets_ordered_delivery(as_user, named, receiver):
    client = as_user(named.alice)
    assert 'data-testid="ordered"' in client.get("/webhooks/").content.decode()
    created = client.post("/webhooks/", {"url": receiver.url, "events": ["message.sent"], "ordered": "on"})
    [endpoint] = endpoints(named.acme)
    assert created.status_code == 302 and endpoint.ordered is True
    page = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert 'name="ordered" value="on" checked' in page
    saved = client.post(f"/webhooks/{endpoint.pk}/", {"action": "update", "url": receiver.url,
                                                     "events": ["message.sent"], "enabled": "on"})
    assert saved.status_code == 302 and endpoints(named.acme)[0].ordered is False


@pytest.mark.parametrize("body, field, message", [
    ({"url": "http://127.0.0.1:9000/h", "events": ["message.sent"]}, "url", "a private, loopback or link-local"),
    ({"url": "http://169.254.169.254/latest", "events": ["message.sent"]}, "url", "webhooks go to public"),
    ({"url": "ftp://example.com/h", "events": ["message.sent"]}, "url", "Use an http:// or https:// URL"),
    ({"url": "https://user:pw@example.com/h", "events": ["message.sent"]}, "url", "Credentials in the URL"),
    ({"url": "", "events": ["message.sent"]}, "url", "This field is required"),
    ({"url": "https://example.com/h"}, "events", "Choose at least one event"),
    ({"url": "https://example.com/h", "events": ["message.exploded"]}, "events", "Select a valid choice"),
])
def test_bad_input_is_shown_on_the_form(as_user, named, settings, body, field, message):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    response = as_user(named.alice).post("/webhooks/", body)
    assert response.status_code == 400
    assert message in response.context["form"].errors[field][0]
    assert f'data-testid="error-{field}"' in response.content.decode()
    assert endpoints(named.acme) == []


def test_the_api_and_the_page_refuse_a_private_target_with_the_same_message(as_user, api_as, named, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    url = "http://10.1.2.3/hooks"
    page = as_user(named.alice).post("/webhooks/", {"url": url, "events": ["message.sent"]})
    api = api_as(named.alice).post("/api/v1/webhooks", {"url": url, "events": ["message.sent"]}, format="json")
    assert api.json()["error"]["message"] == page.context["form"].errors["url"][0]


def test_edit_disable_enable_and_delete_with_confirmation(as_user, named, receiver):
    client = as_user(named.alice)
    endpoint = make_endpoint(named.acme, receiver)
    url = f"/webhooks/{endpoint.pk}/"
    response = client.post(url, {"action": "update", "url": receiver.url + "/v2", "description": "new",
                                 "events": ["message.sent", "message.read"]}, follow=True)
    assert response.redirect_chain[-1][0] == url
    assert "It is disabled" in texts(response)[0]
    [saved] = endpoints(named.acme)
    assert saved.url == receiver.url + "/v2" and saved.events == ["message.sent", "message.read"]
    assert saved.enabled is False and saved.disabled_reason == "Disabled by the tenant."
    page = client.get(url).content.decode()
    assert 'data-testid="disabled-banner"' in page and "Disabled by the tenant." in page
    assert "Disabled by the tenant." in client.get("/webhooks/").content.decode()

    client.post(url, {"action": "update", "url": saved.url, "events": saved.events, "enabled": "on"})
    [enabled] = endpoints(named.acme)
    assert enabled.enabled is True and enabled.disabled_reason == ""

    response = client.post(url, {"action": "update", "url": "gopher://x", "events": []})
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"url", "events"}
    assert endpoints(named.acme)[0].url == saved.url  # nothing half-saved

    response = client.post(url, {"action": "delete"}, follow=True)
    assert "Tick the box" in texts(response)[0] and len(endpoints(named.acme)) == 1
    response = client.post(url, {"action": "delete", "confirm": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == "/webhooks/" and "deleted" in texts(response)[0]
    assert endpoints(named.acme) == []


def test_deliveries_with_attempts_payload_status_filter_and_dead_letters(as_user, named, receiver,
                                                                         django_capture_on_commit_callbacks):
    endpoint = make_endpoint(named.acme, receiver)
    receiver.statuses = [200, 500]
    [ok_pk] = emit(named.acme, django_capture_on_commit_callbacks, data={"id": 1, "text": "first"})
    [failing_pk] = emit(named.acme, django_capture_on_commit_callbacks, data={"id": 2, "text": "second"})
    client = as_user(named.bob)  # members see deliveries too
    page = client.get(f"/webhooks/{endpoint.pk}/")
    html = page.content.decode()
    assert [d.pk for d, _, _ in page.context["rows"]] == [failing_pk, ok_pk]  # newest first
    assert html.index(f'data-testid="delivery-{failing_pk}"') < html.index(f'data-testid="delivery-{ok_pk}"')
    assert "failed, will retry" in html and 'data-testid="next-attempt"' in html
    assert "HTTP 500" in html and "&quot;text&quot;: &quot;second&quot;" in html and "nope" in html
    assert 'data-testid="dead-banner"' not in html

    failed_only = client.get(f"/webhooks/{endpoint.pk}/?status=failed")
    assert [d.pk for d, _, _ in failed_only.context["rows"]] == [failing_pk]
    assert [d.pk for d, _, _ in client.get(f"/webhooks/{endpoint.pk}/?status=dead").context["rows"]] == []

    dead = run_until_dead(named.acme, failing_pk)
    assert dead.attempts == wire.MAX_ATTEMPTS
    page = client.get(f"/webhooks/{endpoint.pk}/?status=dead")
    html = page.content.decode()
    [(row, attempts, _)] = page.context["rows"]
    assert row.pk == failing_pk and len(attempts) == 8 and all(a["status_code"] == 500 for a in attempts)
    assert 'data-testid="dead-banner"' in html and "1 delivery gave up</strong> after 8 attempts" in html
    assert html.count('data-testid="attempt"') == 8
    listing = client.get("/webhooks/").content.decode()
    assert 'data-testid="dead-count">1 dead' in listing


def test_replay_one_and_replay_all_dead_reach_the_receiver(as_user, named, receiver,
                                                           django_capture_on_commit_callbacks):
    endpoint = make_endpoint(named.acme, receiver)
    receiver.statuses = [500]
    pks = [emit(named.acme, django_capture_on_commit_callbacks, data={"n": n})[0] for n in range(3)]
    for pk in pks:
        run_until_dead(named.acme, pk)
    receiver.statuses = [200]
    client = as_user(named.alice)  # replays are for owners and admins (core.permissions: webhooks.manage)
    url = f"/webhooks/{endpoint.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "replay", "delivery": pks[0]}, follow=True)
    assert "is being sent again" in texts(response)[0]
    with tenant_context(named.acme):
        replayed = WebhookDelivery.objects.get(pk=pks[0])
    assert replayed.status == "succeeded" and replayed.attempts == 9
    assert receiver.delivered[-1][0]["webhook-id"] == replayed.webhook_id

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "replay_dead"}, follow=True)
    assert "2 dead deliveries are being sent again." in texts(response)
    with tenant_context(named.acme):
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
        others = set(WebhookDelivery.objects.filter(pk__in=pks[1:]).values_list("webhook_id", flat=True))
    assert 'data-testid="dead-banner"' not in response.content.decode()
    assert {h["webhook-id"] for h, _ in receiver.delivered[-2:]} == others  # the same ids as before

    response = client.post(url, {"action": "replay", "delivery": "999999"})
    assert response.status_code == 404
    response = client.post(url, {"action": "replay", "delivery": "abc"})
    assert response.status_code == 404


def test_replay_on_a_disabled_endpoint_says_to_enable_it(as_user, named, receiver,
                                                         django_capture_on_commit_callbacks):
    endpoint = make_endpoint(named.acme, receiver)
    receiver.statuses = [410]
    [pk] = emit(named.acme, django_capture_on_commit_callbacks)
    client = as_user(named.alice)
    page = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert "410 Gone" in page and 'data-testid="disabled-banner"' in page
    assert 'data-testid="replay-dead"' not in page  # nothing to replay to while disabled
    response = client.post(f"/webhooks/{endpoint.pk}/", {"action": "replay", "delivery": pk}, follow=True)
    assert "Enable it first" in texts(response)[0]
    with tenant_context(named.acme):
        assert WebhookDelivery.objects.get(pk=pk).attempts == 1


def test_members_read_and_replay_but_do_not_manage(as_user, named, receiver):
    endpoint = make_endpoint(named.acme, receiver)
    client = as_user(named.bob)
    listing = client.get("/webhooks/").content.decode()
    assert 'data-testid="member-note"' in listing and 'data-testid="create-endpoint"' not in listing
    detail = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert 'data-testid="edit-endpoint"' not in detail and 'data-testid="delete-endpoint"' not in detail
    assert client.post("/webhooks/", {"url": receiver.url, "events": ["message.sent"]}).status_code == 403
    assert client.post(f"/webhooks/{endpoint.pk}/", {"action": "update", "url": receiver.url,
                                                     "events": ["message.sent"]}).status_code == 403
    assert client.post(f"/webhooks/{endpoint.pk}/", {"action": "delete", "confirm": "yes"}).status_code == 403
    [unchanged] = endpoints(named.acme)
    assert unchanged.events == ["message.received"]


def test_another_tenants_endpoint_is_404(as_user, named, receiver, django_capture_on_commit_callbacks):
    endpoint = make_endpoint(named.acme, receiver)
    [pk] = emit(named.acme, django_capture_on_commit_callbacks)
    client = as_user(named.carol)
    assert client.get(f"/webhooks/{endpoint.pk}/").status_code == 404
    assert client.post(f"/webhooks/{endpoint.pk}/", {"action": "delete", "confirm": "yes"}).status_code == 404
    assert client.post(f"/webhooks/{endpoint.pk}/", {"action": "replay", "delivery": pk}).status_code == 404
    assert receiver.url not in client.get("/webhooks/").content.decode()
    assert len(endpoints(named.acme)) == 1


def test_a_read_only_tenant_sees_the_pages_but_changes_are_refused_with_the_reason(as_user, named, receiver):
    endpoint = make_endpoint(named.acme, receiver)
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    client = as_user(named.alice)
    assert client.get(f"/webhooks/{endpoint.pk}/").status_code == 200
    response = client.post("/webhooks/", {"url": receiver.url, "events": ["message.sent"]}, follow=True)
    assert "read-only" in texts(response)[0] and "Billing" in texts(response)[0]
    response = client.post(f"/webhooks/{endpoint.pk}/", {"action": "delete", "confirm": "yes"}, follow=True)
    assert "read-only" in texts(response)[0]
    assert len(endpoints(named.acme)) == 1


def test_the_dashboard_points_to_dead_deliveries(as_user, named, receiver):
    endpoint = make_endpoint(named.acme, receiver)
    client = as_user(named.alice)
    assert 'data-testid="dead-webhooks"' not in client.get("/dashboard/").content.decode()
    with tenant_context(named.acme):
        for n in range(2):
            WebhookDelivery.objects.create(endpoint=endpoint, event_type="message.received", payload={"n": n},
                                           webhook_id=wire.new_webhook_id(), status="dead", attempts=8,
                                           created_at=timezone.now() - timedelta(days=2))
    html = client.get("/dashboard/").content.decode()
    assert 'data-testid="dead-webhooks"' in html and "2 webhook deliveries gave up" in html
    assert 'href="/webhooks/"' in html
    assert 'data-testid="dead-webhooks"' not in as_user(named.carol).get("/dashboard/").content.decode()
