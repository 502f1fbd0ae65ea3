"""A local stand-in for the few Stripe API endpoints Switchboard calls, so the real stripe client runs in tests.

    with StripeFake() as fake:
        settings.STRIPE_API_BASE = fake.url
        ...
        fake.requests_to("/v1/checkout/sessions")  # what was sent: params (nested), idempotency key

Implements POST /v1/customers, POST /v1/checkout/sessions, POST /v1/checkout/sessions/<id>/expire and
POST /v1/billing_portal/sessions with Stripe-shaped JSON, replays a response for a repeated Idempotency-Key
like Stripe does (and refuses the key with different parameters), and can fail on demand (`fail_with = 500`)
or answer slowly (`delay`), to exercise error handling and concurrency.
"""
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict
    headers: dict = field(default_factory=dict)

    @property
    def idempotency_key(self):
        return self.headers.get("idempotency-key")


def nest(pairs):
    """Stripe's form encoding back into data: a[b][0][c]=1 → {"a": {"b": [{"c": "1"}]}}."""
    root = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part, following in zip(parts, parts[1:]):
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if not isinstance(node, dict):
        return node
    node = {key: _lists(value) for key, value in node.items()}
    if node and all(key.isdigit() for key in node):
        return [node[key] for key in sorted(node, key=int)]
    return node


class StripeFake:
    def __init__(self):
        self.requests = []
        self.fail_with = None  # an HTTP status to answer every request with, e.g. 500
        self.delay = 0.0  # seconds before answering, to widen race windows
        self._ids = itertools.count(1)
        self._idempotent = {}  # key -> (path, params, status, body)
        self.canceled_subscriptions = set()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                params = nest(parse_qsl(body, keep_blank_values=True))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, payload = fake._handle("POST", self.path, params, headers)
                self._reply(status, payload)

            def do_DELETE(self):
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, payload = fake._handle("DELETE", self.path.split("?")[0], {}, headers)
                self._reply(status, payload)

            def do_GET(self):
                self._reply(404, fake._error("invalid_request_error", f"Unrecognized request URL (GET: {self.path})"))

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_fake_{next(fake._ids)}")
                if status >= 500:
                    self.send_header("Stripe-Should-Retry", "false")  # as Stripe says when a retry is pointless
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self):
        host, port = self._server.server_address
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- what tests look at ------------------------------------------------------------------------------

    def requests_to(self, path):
        return [request for request in self.requests if request.path == path]

    # --- the API -----------------------------------------------------------------------------------------

    def _new_id(self, prefix):
        return f"{prefix}_fake{next(self._ids):06d}"

    @staticmethod
    def _error(kind, message, status_code=None):
        error = {"type": kind, "message": message}
        if status_code:
            error["code"] = status_code
        return {"error": error}

    def _handle(self, method, path, params, headers):
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.requests.append(RecordedRequest(method, path, params, headers))
            if self.fail_with:
                return self.fail_with, self._error("api_error", "Something went wrong on Stripe's end (fake).")
            if not headers.get("authorization", "").startswith("Bearer sk_"):
                return 401, self._error("invalid_request_error", "Invalid API Key provided.")
            key = headers.get("idempotency-key")
            if key and key in self._idempotent:
                seen_path, seen_params, status, body = self._idempotent[key]
                if (seen_path, seen_params) != (path, params):
                    return 400, self._error("idempotency_error", "Keys for idempotent requests can only be used "
                                            "with the same parameters they were first used with.")
                return status, body
            status, body = self._route(path, params) if method == "POST" else self._route_delete(path)
            if key and status not in (400, 409):
                # Like Stripe: a result is kept for the key once the endpoint ran, 5xx included; parameters
                # refused by validation are not.
                self._idempotent[key] = (path, params, status, body)
            return status, body

    def _route(self, path, params):
        now = int(time.time())
        if path == "/v1/customers":
            return 200, {"id": self._new_id("cus"), "object": "customer", "created": now, "livemode": False,
                         "email": params.get("email"), "name": params.get("name"),
                         "metadata": params.get("metadata", {})}
        if path == "/v1/checkout/sessions":
            session_id = self._new_id("cs_test")
            return 200, {
                "id": session_id, "object": "checkout.session", "created": now, "livemode": False,
                "expires_at": now + 24 * 3600, "mode": params.get("mode"), "status": "open",
                "customer": params.get("customer"), "client_reference_id": params.get("client_reference_id"),
                "metadata": params.get("metadata", {}), "success_url": params.get("success_url"),
                "cancel_url": params.get("cancel_url"), "subscription": None,
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            }
        match = re.fullmatch(r"/v1/checkout/sessions/([^/]+)/expire", path)
        if match:
            return 200, {"id": match.group(1), "object": "checkout.session", "status": "expired", "url": None}
        if path == "/v1/billing_portal/sessions":
            if not params.get("customer"):
                return 400, self._error("invalid_request_error", "Missing required param: customer.")
            session_id = self._new_id("bps")
            return 200, {"id": session_id, "object": "billing_portal.session", "created": now, "livemode": False,
                         "customer": params["customer"], "return_url": params.get("return_url"),
                         "url": f"https://billing.stripe.test/p/session/{session_id}"}
        return 404, self._error("invalid_request_error", f"Unrecognized request URL (POST: {path})")

    def _route_delete(self, path):
        match = re.fullmatch(r"/v1/subscriptions/([^/]+)", path)
        if match:
            if match.group(1) in self.canceled_subscriptions:
                return 404, self._error("invalid_request_error", f"No such subscription: '{match.group(1)}'",
                                        "resource_missing")
            self.canceled_subscriptions.add(match.group(1))
            return 200, {"id": match.group(1), "object": "subscription", "status": "canceled",
                         "canceled_at": int(time.time())}
        return 404, self._error("invalid_request_error", f"Unrecognized request URL (DELETE: {path})")


# --- pytest fixtures: import them into a test module to use them -------------------------------------------

SECRET_KEY = "sk_test_switchboard"
WEBHOOK_SECRET = "whsec_test_switchboard"
PRICE_IDS = {
    "free:monthly": "price_free_monthly",
    "basic:monthly": "price_basic_monthly",
    "basic:yearly": "price_basic_yearly",
    "pro:monthly": "price_pro_monthly",
    "pro:yearly": "price_pro_yearly",
}


@pytest.fixture
def stripe_api(settings):
    """Stripe mode pointed at a fresh fake: returns the StripeFake."""
    with StripeFake() as fake:
        settings.STRIPE_SECRET_KEY = SECRET_KEY
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_PRICE_IDS = dict(PRICE_IDS)
        settings.SITE_URL = "https://switchboard.test"
        yield fake
