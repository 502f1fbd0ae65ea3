"""A real webhook receiver for the webhook tests: an http.server on 127.0.0.1 in a thread of the test process that
verifies every request with the standardwebhooks library, as a tenant's own receiver would."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django_tenants.utils import tenant_context
from standardwebhooks import Webhook, WebhookVerificationError

from whatsapp.webhooks import actions


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops the SYNs of a burst of concurrent deliveries (retried after 1 s).
    request_queue_size = 128


class Receiver:
    """Answers 401 when the signature or the timestamp does not verify (the library refuses timestamps more than
    5 minutes off), else the next status of `statuses` (the last one repeats). `delay` seconds of sleep before
    answering make it a slow receiver. `received` holds (headers, body, verified) of every request, verified or
    not; `delivered` only the verified ones."""

    def __init__(self, host="127.0.0.1", port=0, tls=None):
        """`tls`: an ssl.SSLContext (server side) to serve https; `server_names` then records each
        connection's SNI name."""
        self.secret = None
        self.server_names = []
        self.statuses = [200]
        self.delay = 0
        self.received = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                with receiver._lock:
                    receiver.received.append((headers, body, verified))
                    if not verified:
                        status = 401
                    elif len(receiver.statuses) > 1:
                        status = receiver.statuses.pop(0)
                    else:
                        status = receiver.statuses[0]
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.end_headers()
                    if status not in (204, 304):  # no body there (HTTP): aiohttp's parser refuses one
                        self.wfile.write(b"ok" if status < 300 else b"nope")
                except (BrokenPipeError, ConnectionResetError):  # the sender gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.server = _Server((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def delivered(self):
        return [(headers, body) for headers, body, verified in self.received if verified]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def emit(tenant, capture, event="message.received", data=None):
    """Emit an event in the tenant and run the on-commit callbacks (the first attempts); returns the deliveries' ids."""
    with tenant_context(tenant):
        with capture(execute=True):
            deliveries = actions.emit_event(event, data or {"id": 1, "text": "hi"})
    return [d.pk for d in deliveries]
