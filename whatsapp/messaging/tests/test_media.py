"""Media: media_url fetched at request time from a local HTTP server started here (allowed only with
WEBHOOK_ALLOW_PRIVATE_TARGETS, refused by default as loopback), redirects, failures with their reasons, the
size cap cutting an oversized download, the checked address being the one connected to (no second DNS answer),
inbound media stored under the tenant's directory, and the download endpoint answering only its own tenant.
"""
import base64
import http.server
import os
import socket
import threading

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from whatsapp.messaging.tests.test_message_types import (
    BASE,
    MP3,
    PDF,
    count,
    load,
    make_session,
    media_files,
    png_bytes,
    post,
)
from whatsapp.models import Message
from whatsapp.tests.support import drain, error, link_session, ok

V1 = "/api/v1"
PNG = png_bytes("green")


class MediaServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), MediaHandler)
        self.requests = []  # (path, Host header)
        self.sent_bytes = 0
        self.release = threading.Event()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class MediaHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Host")))
        routes = {
            "/green.png": (200, {"Content-Type": "image/png"}, PNG),
            "/report": (200, {"Content-Disposition": 'attachment; filename="Q3 report.pdf"'}, PDF),
            "/hello.mp3": (200, {}, MP3),
            "/missing.png": (404, {}, b"not here"),
            "/moved": (302, {"Location": "/green.png"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/to-private": (302, {"Location": f"http://127.0.0.2:{server.server_address[1]}/green.png"}, b""),
            "/declared-big": (200, {"Content-Length": str(50 * 1024 * 1024)}, b""),
        }
        if self.path == "/endless":  # no Content-Length: only the byte cap stops it
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            chunk = PNG + b"\0" * (64 * 1024 - len(PNG))
            try:
                for _ in range(1024):  # 64 MB if nobody stops reading
                    self.wfile.write(chunk)
                    server.sent_bytes += len(chunk)
            except OSError:
                pass
            return
        if self.path == "/silent":
            server.release.wait(10)
            return
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


@pytest.fixture
def server():
    srv = MediaServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _fresh(settings, tmp_path):
    from redis import Redis

    from whatsapp.messaging import ratelimit

    settings.WHATSAPP_PACING_ENABLED = False
    settings.MEDIA_ROOT = str(tmp_path / "media")
    redis = Redis.from_url(settings.REDIS_URL)
    for key in redis.scan_iter(match=f"*{ratelimit.KEY_PREFIX}*", count=500):
        redis.delete(key)


@pytest.fixture
def private_ok(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def send_url(client, url, kind="image", **extra):
    return post(client, {**BASE, "type": kind, "media_url": url, **extra})


# --- fetching ------------------------------------------------------------------------------------------------------

def test_media_url_is_fetched_and_stored_with_its_name_and_type(named, clients, server, private_ok, settings,
                                                                 django_capture_on_commit_callbacks):
    make_session(named.acme)
    with django_capture_on_commit_callbacks(execute=True):
        image = ok(send_url(clients["alice"], f"{server.base}/moved", caption="via redirect"), 202)
        doc = ok(send_url(clients["alice"], f"{server.base}/report", "document"), 202)
        audio = ok(send_url(clients["alice"], f"{server.base}/hello.mp3", "audio"), 202)
    assert image["media"] == {"url": f"{server.base}/moved", "mimetype": "image/png", "size": len(PNG),
                              "filename": "green.png", "stored": True, "error": None}
    assert (doc["media"]["filename"], doc["media"]["mimetype"]) == ("Q3 report.pdf", "application/pdf")
    assert audio["media"]["mimetype"] == "audio/mpeg"
    root = settings.MEDIA_ROOT
    stored = load(named.acme, image["id"]).media_file
    assert open(os.path.join(root, stored), "rb").read() == PNG
    assert len(media_files(root)) == 3
    assert [path for path, _ in server.requests] == ["/moved", "/green.png", "/report", "/hello.mp3"]


FETCH_FAILURES = [
    ("/missing.png", 422, "media_unreachable", "HTTP 404"),
    ("/loop", 422, "media_unreachable", "more than 3 redirects"),
    ("/declared-big", 413, "media_too_large", None),
    ("/endless", 413, "media_too_large", None),
    ("/report", 415, "unsupported_media_type", None),  # a PDF is no image
]


@pytest.mark.parametrize("path,status,code,reason", FETCH_FAILURES)
def test_media_url_failures_answer_at_once_and_leave_nothing(named, clients, server, private_ok, settings,
                                                             django_capture_on_commit_callbacks, path, status,
                                                             code, reason):
    settings.WHATSAPP_MEDIA_MAX_MB = 1
    make_session(named.acme)
    with django_capture_on_commit_callbacks(execute=True):
        err = error(send_url(clients["alice"], server.base + path), status, code)
    if reason:
        assert err["details"]["reason"] == reason
    if path == "/endless":  # cut at the limit, not read to the end
        assert server.sent_bytes < 64 * 1024 * 1024
    assert count(named.acme) == 0 and media_files(settings.MEDIA_ROOT) == []


def test_unreachable_hosts_say_why(named, clients, private_ok, settings, server):
    make_session(named.acme)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    err = error(send_url(clients["alice"], f"http://127.0.0.1:{port}/a.png"), 422, "media_unreachable")
    assert err["details"]["reason"] == "connection refused"
    err = error(send_url(clients["alice"], "http://no-such-host.invalid/a.png"), 422, "media_unreachable")
    assert err["details"]["reason"].startswith("DNS")
    settings.WHATSAPP_MEDIA_FETCH_TIMEOUT = 0.3
    err = error(send_url(clients["alice"], f"{server.base}/silent"), 422, "media_unreachable")
    assert err["details"]["reason"] == "timeout"
    assert count(named.acme) == 0


def test_private_and_loopback_targets_are_refused_by_default(named, clients, server):
    make_session(named.acme)
    for url in (f"{server.base}/green.png", f"http://localhost:{server.server_address[1]}/green.png",
                "http://10.1.2.3/a.png", "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.png"):
        error(send_url(clients["alice"], url), 400, "media_url_forbidden")
    error(send_url(clients["alice"], "file:///etc/passwd"), 400, "invalid_media_url")
    error(send_url(clients["alice"], "http://user:pw@example.com/a.png"), 400, "invalid_media_url")
    assert server.requests == [] and count(named.acme) == 0


def test_every_redirect_hop_is_checked(named, clients, server, monkeypatch):
    """The first hop passes the address rules (here only 127.0.0.1 is treated as public), its redirect points at
    another loopback address: refused before anything connects to it."""
    from core import net

    make_session(named.acme)
    monkeypatch.setattr(net, "_refused", lambda ip: str(ip) != "127.0.0.1")
    error(send_url(clients["alice"], f"{server.base}/to-private"), 400, "media_url_forbidden")
    assert [path for path, _ in server.requests] == ["/to-private"]
    assert count(named.acme) == 0


def test_the_checked_address_is_the_one_connected_to(named, clients, server, private_ok, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    """DNS rebinding: the name resolves once; a second answer (here: another address) is never asked for, and
    the server sees the original Host header."""
    make_session(named.acme)
    real_getaddrinfo = socket.getaddrinfo
    port = server.server_address[1]
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]])
    asked = []

    def resolve(host, *args, **kwargs):
        if host == "media.example":
            asked.append(host)
            return next(answers)  # a second lookup would raise StopIteration
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with django_capture_on_commit_callbacks(execute=True):
        data = ok(send_url(clients["alice"], f"http://media.example:{port}/green.png"), 202)
    assert data["media"]["size"] == len(PNG)
    assert asked == ["media.example"]
    assert server.requests == [("/green.png", f"media.example:{port}")]


# --- inbound media and the download endpoint -------------------------------------------------------------------------

def inbound(client, **body):
    return client.post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": "+6281234567890", **body},
                       format="json")


@pytest.mark.django_db(transaction=True)
def test_inbound_media_is_stored_per_tenant_and_downloadable_only_by_that_tenant(named, clients, host, clock, settings):
    link_session(clients["alice"], host, clock)
    alice, carol = clients["alice"], clients["carol"]
    ok(inbound(alice, type="image", media=base64.b64encode(PNG).decode(), mimetype="image/png", caption="look"),
       202)
    ok(inbound(alice, type="document", media=base64.b64encode(PDF).decode(), mimetype="application/pdf",
               filename="../../etc/invoice.pdf"), 202)
    ok(inbound(alice, type="location", latitude=-6.2, longitude=106.8, text="Office"), 202)
    drain(host)
    received = ok(alice.get(f"{V1}/messages?direction=in"))
    location, document, image = received
    assert (image["type"], image["caption"], image["media"]["mimetype"], image["media"]["stored"]) == (
        "image", "look", "image/png", True)
    assert document["media"]["filename"] == "invoice.pdf"
    assert location["location"] == {"latitude": -6.2, "longitude": 106.8, "name": "Office"}

    row = load(named.acme, image["id"])
    today = timezone.now()
    assert row.media_file.startswith(f"t_test_acme/whatsapp/{today:%Y}/{today:%m}/")
    assert open(os.path.join(settings.MEDIA_ROOT, row.media_file), "rb").read() == PNG

    response = alice.get(f"{V1}/messages/{image['id']}/media")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("attachment;")
    pdf = alice.get(f"{V1}/messages/{document['id']}/media")
    assert pdf["Content-Type"] == "application/pdf" and 'filename="invoice.pdf"' in pdf["Content-Disposition"]

    error(carol.get(f"{V1}/messages/{image['id']}/media"), 404, "not_found")  # Globex: no such message
    error(alice.get(f"{V1}/messages/{location['id']}/media"), 404, "not_found")  # no media
    error(alice.get(f"{V1}/messages/999999/media"), 404, "not_found")
    os.remove(os.path.join(settings.MEDIA_ROOT, row.media_file))
    error(alice.get(f"{V1}/messages/{image['id']}/media"), 404, "not_found")  # the file is gone


@pytest.mark.django_db(transaction=True)
def test_oversized_or_failed_inbound_media_keeps_the_message_with_the_reason(named, clients, host, clock, settings):
    link_session(clients["alice"], host, clock)
    settings.WHATSAPP_MEDIA_MAX_MB = 0.001
    ok(inbound(clients["alice"], type="image", media=base64.b64encode(PNG + b"\0" * 2000).decode(),
               caption="too big"), 202)
    drain(host)
    provider = host.provider(next(iter(host.providers)))
    provider.simulate_inbound("+6281234567890", type="video", media_error="download_failed: media expired")
    drain(host)
    failed, big = ok(clients["alice"].get(f"{V1}/messages?direction=in"))
    assert big["caption"] == "too big" and big["media"]["stored"] is False
    assert big["media"]["error"].startswith("media_too_large")
    assert failed["type"] == "video" and failed["media"]["error"] == "download_failed: media expired"
    assert media_files(settings.MEDIA_ROOT) == []
    with tenant_context(named.acme):
        assert Message.objects.filter(direction="in").count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_inbound_test_helper_checks_its_input(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    error(inbound(clients["alice"], type="image"), 400, "missing_media")
    error(inbound(clients["alice"], type="image", media="***not base64***"), 400, "missing_media")
    error(inbound(clients["alice"], type="location", latitude=1), 400, "invalid_location")
    error(inbound(clients["alice"], type="text"), 400, "missing_text")
