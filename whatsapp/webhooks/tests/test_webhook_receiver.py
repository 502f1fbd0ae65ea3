"""The webhook guarantees, checked from the receiving end: a real HTTP receiver in the test verifies every request
with the standardwebhooks library; copies of real deliveries with a tampered body or a stale timestamp are refused
by it; the retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, with jitter) and dead-lettering run on a
controllable clock (the sweeper takes `now`); only a 2xx within WEBHOOK_TIMEOUT_SECONDS counts; 410 disables the
endpoint; a receiver that was down for hours gets everything afterwards, signed, with the same webhook-ids; the
delivery connects to the address that was checked (DNS rebinding); the API contract and cross-tenant matrix.

alice owns Acme, bob is a member of Acme, carol owns Globex.
"""
import ipaddress
import json
import socket
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import httpx
import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.models import WebhookDelivery, WebhookEndpoint
from whatsapp.tests.support import error, ok
from whatsapp.tests.webhook_support import Receiver, emit
from whatsapp.webhooks import actions
from whatsapp.webhooks import delivery as wire
from whatsapp.webhooks.tasks import deliver_due_webhooks

V1 = "/api/v1"


def register(client, url, events=("message.received",)):
    data = ok(client.post(f"{V1}/webhooks", {"url": url, "events": list(events)}, format="json"), 201)
    return data["endpoint"]["id"], data["secret"]


def load(tenant, pk):
    with tenant_context(tenant):
        return WebhookDelivery.objects.select_related("endpoint").get(pk=pk)


# --- what the receiver accepts -------------------------------------------------------------------------------------


def test_the_receiver_refuses_tampered_and_stale_copies_of_a_real_delivery(named, clients, receiver,
                                                                           django_capture_on_commit_callbacks):
    _, receiver.secret = register(clients["alice"], receiver.url)
    [pk] = emit(named.acme, django_capture_on_commit_callbacks, data={"id": 41, "text": "pay 10 EUR"})
    assert load(named.acme, pk).status == "succeeded"
    [(headers, body, verified)] = receiver.received
    assert verified

    # The same bytes again verify (receivers dedupe by webhook-id, not the library).
    assert httpx.post(receiver.url, content=body, headers=headers).status_code == 200
    tampered = body.replace(b"10 EUR", b"99 EUR")
    assert tampered != body
    assert httpx.post(receiver.url, content=tampered, headers=headers).status_code == 401
    forged_id = {**headers, "webhook-id": "msg_someone_else"}
    assert httpx.post(receiver.url, content=body, headers=forged_id).status_code == 401
    # Correctly signed, but 10 minutes old: a captured request replayed later is refused.
    stale = wire.signed_headers(receiver.secret, headers["webhook-id"], body.decode(),
                                datetime.now(dt_timezone.utc) - timedelta(minutes=10))
    assert httpx.post(receiver.url, content=body, headers=stale).status_code == 401
    wrong_secret = wire.signed_headers(wire.new_secret(), headers["webhook-id"], body.decode(),
                                       datetime.now(dt_timezone.utc))
    assert httpx.post(receiver.url, content=body, headers=wrong_secret).status_code == 401
    assert [v for _, _, v in receiver.received] == [True, True, False, False, False, False]


# --- the schedule on a controllable clock --------------------------------------------------------------------------


def test_the_schedule_is_the_documented_one_with_jitter():
    assert [d.total_seconds() for d in wire.RETRY_SCHEDULE] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert wire.MAX_ATTEMPTS == 8
    for attempt, base in enumerate(wire.RETRY_SCHEDULE, start=1):
        waits = {wire.next_delay(attempt).total_seconds() for _ in range(50)}
        assert all(base.total_seconds() * 0.9 <= w <= base.total_seconds() * 1.1 for w in waits)
        assert len(waits) > 1  # jittered, so that a tenant's retries do not all land in the same second
    assert wire.next_delay(8) is None


def test_every_retry_waits_its_turn_and_the_eighth_failure_is_dead(named, clients, receiver,
                                                                   django_capture_on_commit_callbacks):
    receiver.statuses = [500]
    endpoint_id, receiver.secret = register(clients["alice"], receiver.url)
    [pk] = emit(named.acme, django_capture_on_commit_callbacks)
    delivery = load(named.acme, pk)
    start = delivery.created_at
    elapsed = []
    while delivery.status == "failed":
        due = delivery.next_attempt_at
        assert deliver_due_webhooks(now=due - timedelta(seconds=1)) == 0
        assert deliver_due_webhooks(now=due) == 1
        delivery = load(named.acme, pk)
        elapsed.append((due - start).total_seconds())
    assert delivery.status == "dead" and delivery.attempts == 8 and len(elapsed) == 7
    # Cumulative time from the first attempt: 5 s, 5 min 5 s, … about 37.6 hours in all, ±10 % per step.
    cumulative = 0
    for step, wait in zip(elapsed, wire.RETRY_SCHEDULE):
        cumulative += wait.total_seconds()
        assert abs(step - cumulative) <= 0.1 * cumulative + 1
    assert deliver_due_webhooks(now=start + timedelta(days=60)) == 0  # dead stays dead
    assert len(receiver.delivered) == 8
    endpoint = ok(clients["alice"].get(f"{V1}/webhooks/{endpoint_id}"))
    assert endpoint["enabled"] is True  # failures alone never disable; only 410 does


# --- what counts as delivered ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, outcome", [(200, "succeeded"), (201, "succeeded"), (204, "succeeded"),
                                             (299, "succeeded"), (301, "failed"), (302, "failed"),
                                             (400, "failed"), (401, "failed"), (404, "failed"),
                                             (429, "failed"), (500, "failed"), (503, "failed")])
def test_only_a_2xx_is_success_and_redirects_are_not_followed(named, clients, receiver, status, outcome,
                                                             django_capture_on_commit_callbacks):
    receiver.statuses = [status]
    _, receiver.secret = register(clients["alice"], receiver.url)
    [pk] = emit(named.acme, django_capture_on_commit_callbacks)
    delivery = load(named.acme, pk)
    assert delivery.status == outcome and delivery.last_status_code == status, delivery.last_error
    assert len(receiver.received) == 1


def test_a_2xx_after_the_timeout_is_a_failure(named, clients, receiver, settings,
                                              django_capture_on_commit_callbacks):
    _, receiver.secret = register(clients["alice"], receiver.url)
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.delay = 1.5
    [pk] = emit(named.acme, django_capture_on_commit_callbacks)
    delivery = load(named.acme, pk)
    assert delivery.status == "failed" and delivery.last_status_code is None
    assert delivery.last_error == "Timed out after 0.5 s" and delivery.next_attempt_at is not None
    assert len(receiver.delivered) == 1  # it got the request, but answered too late


def test_410_disables_the_endpoint_and_keeps_other_deliveries_waiting(named, clients, receiver,
                                                                       django_capture_on_commit_callbacks):
    receiver.statuses = [500, 410]
    endpoint_id, receiver.secret = register(clients["alice"], receiver.url)
    [first] = emit(named.acme, django_capture_on_commit_callbacks)
    [second] = emit(named.acme, django_capture_on_commit_callbacks)
    assert load(named.acme, first).status == "failed"
    gone = load(named.acme, second)
    assert gone.status == "dead" and gone.last_error.startswith("HTTP 410")
    endpoint = ok(clients["alice"].get(f"{V1}/webhooks/{endpoint_id}"))
    assert endpoint["enabled"] is False and "410 Gone" in endpoint["disabled_reason"] and endpoint["disabled_at"]
    # The earlier failure is not attempted while the endpoint is disabled, and goes out once it is enabled.
    later = load(named.acme, first).next_attempt_at + timedelta(seconds=1)
    assert deliver_due_webhooks(now=later) == 0
    receiver.statuses = [200]
    ok(clients["alice"].patch(f"{V1}/webhooks/{endpoint_id}", {"enabled": True}, format="json"))
    assert deliver_due_webhooks(now=later) == 1
    assert load(named.acme, first).status == "succeeded"


def test_a_receiver_down_for_hours_gets_everything_afterwards_signed_with_the_same_ids(
        named, clients, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [503]
    _, receiver.secret = register(clients["alice"], receiver.url)
    pks = [emit(named.acme, django_capture_on_commit_callbacks, data={"n": n})[0] for n in range(3)]
    first_ids = {h["webhook-id"] for h, _ in receiver.delivered}
    assert len(first_ids) == 3 and all(load(named.acme, pk).status == "failed" for pk in pks)
    port, secret = receiver.port, receiver.secret
    receiver.close()  # the receiver goes down: its port is closed

    start = min(load(named.acme, pk).created_at for pk in pks)
    clock = start
    while clock < start + timedelta(hours=4):  # sweeps every minute for four hours, all refused
        clock += timedelta(minutes=1)
        deliver_due_webhooks(now=clock)
    down = [load(named.acme, pk) for pk in pks]
    assert all(d.status == "failed" and d.attempts == 5 for d in down)
    assert all(d.attempt_log[-1]["status_code"] is None and "ConnectError" in d.attempt_log[-1]["error"]
               for d in down)

    back = Receiver(port=port)  # up again on the same address
    back.secret = secret
    try:
        deliver_due_webhooks(now=max(d.next_attempt_at for d in down))
        assert all(load(named.acme, pk).status == "succeeded" for pk in pks)
        assert len(back.received) == len(back.delivered) == 3  # every one signed
        assert {h["webhook-id"] for h, _ in back.delivered} == first_ids
        assert sorted(json.loads(b)["data"]["n"] for _, b in back.delivered) == [0, 1, 2]
    finally:
        back.close()


# --- DNS rebinding ---------------------------------------------------------------------------------------------------


class RebindingResolver:
    """A DNS stub for one name: the first answer is `first`, every later one `later` (a TTL-0 rebinding attack).
    Other names, and address literals, resolve as usual."""

    def __init__(self, name, first, later):
        self.name, self.first, self.later = name, first, later
        self.asked = 0
        self.real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):
        if host != self.name:
            return self.real(host, port, *args, **kwargs)
        self.asked += 1
        address = self.first if self.asked == 1 else self.later
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


def test_the_delivery_connects_to_the_address_that_was_checked(named, clients, receiver, monkeypatch,
                                                              django_capture_on_commit_callbacks):
    """The name answers 127.0.0.1 (where the receiver is) when checked, then 127.0.0.2, where an internal
    service listens on the same port. The POST must go to the checked address, still addressed to the name."""
    internal = Receiver(host="127.0.0.2", port=receiver.port)
    try:
        url = f"http://hooks.example.test:{receiver.port}/hooks"
        _, secret = register(clients["alice"], url)
        receiver.secret = internal.secret = secret
        resolver = RebindingResolver("hooks.example.test", "127.0.0.1", "127.0.0.2")
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        [pk] = emit(named.acme, django_capture_on_commit_callbacks)
        assert load(named.acme, pk).status == "succeeded"
        assert resolver.asked == 1  # resolved once, at the check; the connection did not ask again
        [(headers, _)] = receiver.delivered
        assert headers["host"] == f"hooks.example.test:{receiver.port}"
        assert internal.received == []
    finally:
        internal.close()


def test_a_name_that_rebinds_to_a_private_address_never_reaches_it(named, clients, settings, monkeypatch,
                                                                   django_capture_on_commit_callbacks):
    """Registered while the name answered a public address; by delivery time it answers 127.0.0.1, where a
    service listens. Each attempt checks the answer it will connect to, so nothing reaches that service."""
    local = Receiver()
    try:
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
        resolver = RebindingResolver("rebind.example.test", "93.184.216.34", "127.0.0.1")
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        _, local.secret = register(clients["alice"], f"http://rebind.example.test:{local.port}/hooks")
        [pk] = emit(named.acme, django_capture_on_commit_callbacks)
        delivery = load(named.acme, pk)
        assert delivery.status == "failed" and delivery.last_status_code is None
        assert "127.0.0.1" in delivery.last_error and "private" in delivery.last_error
        assert resolver.asked == 2 and local.received == []
    finally:
        local.close()


def _certificate(tmp_path, name):
    """A self-signed certificate for `name` (the test trusts it through SSL_CERT_FILE) and a server context."""
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(dt_timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


@pytest.mark.parametrize("certificate_name, outcome", [("hooks.example.test", "succeeded"),
                                                       ("other.example.test", "failed")])
def test_https_to_the_checked_address_still_verifies_the_name(named, clients, settings, monkeypatch, tmp_path,
                                                              certificate_name, outcome,
                                                              django_capture_on_commit_callbacks):
    """Connecting to the checked address must not weaken TLS: SNI carries the name and the certificate must be
    valid for the name (one for another name is refused), while the socket goes to the pinned address."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    cert_file, context = _certificate(tmp_path, certificate_name)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    server = Receiver(tls=context)
    try:
        _, server.secret = register(clients["alice"], f"https://hooks.example.test:{server.port}/hooks")
        resolver = RebindingResolver("hooks.example.test", "127.0.0.1", "127.0.0.2")
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        [pk] = emit(named.acme, django_capture_on_commit_callbacks)
        delivery = load(named.acme, pk)
        assert delivery.status == outcome and resolver.asked == 1
        assert server.server_names[:1] == ["hooks.example.test"]
        if outcome == "succeeded":
            [(headers, _)] = server.delivered
            assert headers["host"] == f"hooks.example.test:{server.port}"
        else:
            assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error and server.received == []
    finally:
        server.close()


def test_resolve_target_returns_the_checked_addresses_and_check_target_keeps_its_signature(settings,
                                                                                           monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    monkeypatch.setattr(socket, "getaddrinfo", RebindingResolver("hooks.example.test", "93.184.216.34",
                                                                 "127.0.0.1"))
    assert [str(ip) for ip in wire.resolve_target("https://hooks.example.test/x")] == ["93.184.216.34"]
    with pytest.raises(wire.TargetError) as refused:
        wire.check_target("https://hooks.example.test/x", resolve=True)
    assert refused.value.code == "private_target"  # the second answer, checked again, is refused
    assert wire.check_target("https://hooks.example.test/x", resolve=False) is None
    target, host, extensions = wire._pinned("https://hooks.example.test:8443/x?y=1",
                                            ipaddress.ip_address("93.184.216.34"))
    assert target == "https://93.184.216.34:8443/x?y=1" and host == "hooks.example.test:8443"
    assert extensions == {"sni_hostname": "hooks.example.test"}  # TLS verifies the name, not the address
    target, _, _ = wire._pinned("http://hooks.example.test/x", ipaddress.ip_address("2606:4700::1111"))
    assert target == "http://[2606:4700::1111]/x"


# --- API contract and the cross-tenant matrix ----------------------------------------------------------------------


def test_every_endpoint_needs_an_api_key(named, client):
    for method, path in [("get", "/webhooks"), ("post", "/webhooks"), ("get", "/webhooks/1"),
                         ("patch", "/webhooks/1"), ("delete", "/webhooks/1"), ("get", "/webhooks/1/deliveries"),
                         ("post", "/webhook-deliveries/1/replay")]:
        error(getattr(client, method)(f"{V1}{path}"), 401, "not_authenticated")


def test_cross_tenant_matrix(named, clients, receiver, django_capture_on_commit_callbacks):
    alice_endpoint, receiver.secret = register(clients["alice"], receiver.url)
    [alice_delivery] = emit(named.acme, django_capture_on_commit_callbacks)
    carol_endpoint, _ = register(clients["carol"], receiver.url + "/globex", events=["message.sent"])
    with tenant_context(named.globex):
        [carol_delivery] = [d.pk for d in actions.emit_event("message.sent", {"id": 2})]

    own = {"alice": (alice_endpoint, alice_delivery), "bob": (alice_endpoint, alice_delivery),
           "carol": (carol_endpoint, carol_delivery)}
    for user, client in clients.items():
        mine_endpoint, mine_delivery = own[user]
        theirs_endpoint, theirs_delivery = own["carol" if user != "carol" else "alice"]
        assert [e["id"] for e in ok(client.get(f"{V1}/webhooks"))] == [mine_endpoint]
        assert ok(client.get(f"{V1}/webhooks/{mine_endpoint}"))["id"] == mine_endpoint
        assert [d["id"] for d in ok(client.get(f"{V1}/webhooks/{mine_endpoint}/deliveries"))] == [mine_delivery]
        error(client.get(f"{V1}/webhooks/{theirs_endpoint}"), 404, "not_found")
        error(client.get(f"{V1}/webhooks/{theirs_endpoint}/deliveries"), 404, "not_found")
        # bob, an agent, may not manage webhooks at all: refused before any lookup.
        refused = (403, "permission_denied") if user == "bob" else (404, "not_found")
        error(client.patch(f"{V1}/webhooks/{theirs_endpoint}", {"enabled": False}, format="json"), *refused)
        error(client.delete(f"{V1}/webhooks/{theirs_endpoint}"), *refused)
        error(client.post(f"{V1}/webhook-deliveries/{theirs_delivery}/replay"), *refused)
    with tenant_context(named.acme):
        assert WebhookEndpoint.objects.get(pk=alice_endpoint).enabled
    with tenant_context(named.globex):
        assert WebhookEndpoint.objects.get(pk=carol_endpoint).enabled
        assert WebhookDelivery.objects.get(pk=carol_delivery).attempts == 0  # nobody replayed it


def test_delivery_list_filters_by_status_and_pages(named, clients, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [200, 500, 200]
    endpoint_id, receiver.secret = register(clients["alice"], receiver.url)
    pks = [emit(named.acme, django_capture_on_commit_callbacks, data={"n": n})[0] for n in range(3)]
    listed = clients["bob"].get(f"{V1}/webhooks/{endpoint_id}/deliveries?limit=2").json()
    assert [d["id"] for d in listed["data"]] == pks[::-1][:2] and listed["pagination"]["total"] == 3
    failed = ok(clients["bob"].get(f"{V1}/webhooks/{endpoint_id}/deliveries?status=failed"))
    assert [d["id"] for d in failed] == [pks[1]] and failed[0]["next_attempt_at"]
    error(clients["bob"].get(f"{V1}/webhooks/{endpoint_id}/deliveries?status=lost"), 400, "invalid_status")


def test_replay_in_a_read_only_tenant_is_402(named, clients, receiver, django_capture_on_commit_callbacks):
    _, receiver.secret = register(clients["alice"], receiver.url)
    [pk] = emit(named.acme, django_capture_on_commit_callbacks)
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    error(clients["alice"].post(f"{V1}/webhook-deliveries/{pk}/replay"), 402, "payment_required")
    assert load(named.acme, pk).attempts == 1
