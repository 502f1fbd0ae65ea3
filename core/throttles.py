"""Request throttles of the whole API (REST_FRAMEWORK's DEFAULT_THROTTLE_CLASSES): per API key, per user (all of
their keys and their browser session together) and, for the few endpoints open without a key, per client IP.

DRF's SimpleRateThrottle keeps each client's request times as a list in the cache, read and written back whole
on every request: racy across the web processes (two daphnes read the same list, each adds one, one write wins)
and a list of up to `rate` entries to unpickle per request. These count in Redis instead, in fixed windows of
the rate's period: one INCR (atomic, shared by every process) and an EXPIRE in one round trip. A window allows up
to `rate` requests; a burst straddling two windows may see up to twice that in one period, the usual price of a
fixed window. A refused request is answered 429 `throttled` with Retry-After (the seconds left in the window)
by core.api's exception handler.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (API_THROTTLE_* in settings), read on every request so
a test's override applies; None switches a throttle off. The send endpoints' per-tenant limit
(whatsapp.messaging.ratelimit) applies on top of these.
"""
import logging
import math
import time

from django.db import connection
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .redis import client

KEY_PREFIX = "sb:throttle"
logger = logging.getLogger(__name__)


class WindowThrottle(SimpleRateThrottle):
    """A fixed-window counter in Redis for one scope; subclasses say whose requests count together."""

    what = "requests"  # how a refusal names the counted client, e.g. "this API key"

    def __init__(self):
        # SimpleRateThrottle reads the rate at construction from a class attribute fixed at import: read it here.
        self.rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.retry_after = None

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        now = time.time()
        window = int(now // self.duration) * self.duration
        # The database's name keeps two installations (or two test runs) sharing one Redis apart.
        key = f"{KEY_PREFIX}:{connection.settings_dict['NAME']}:{self.scope}:{ident}:{window}"
        pipe = client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, self.duration + 1, nx=True)
        try:
            count, _ = pipe.execute()
        except RedisError as exc:
            # Open, not shut: an unreachable Redis must not turn every API answer (the health check's included,
            # which reports Redis down) into a 500.
            logger.warning("API throttle %s not counted: Redis unreachable (%s)", self.scope, exc)
            return True
        if count <= self.num_requests:
            return True
        self.retry_after = max(1, math.ceil(window + self.duration - now))
        earlier = getattr(request, "throttled_by", None)
        if earlier is None or earlier.retry_after < self.retry_after:
            request.throttled_by = self  # the refusal's message names the limit that holds longest (core.api)
        return False

    def wait(self):
        return self.retry_after

    def describe(self):
        """The refusal's message, for a person."""
        period = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(self.duration, f"{self.duration} s")
        return f"Too many requests from {self.what}: at most {self.num_requests} a {period}."


class ApiKeyThrottle(WindowThrottle):
    scope = "api_key"
    what = "this API key"

    def get_cache_key(self, request, view):
        key = request.auth
        return None if key is None or getattr(key, "pk", None) is None else key.pk


class UserThrottle(WindowThrottle):
    scope = "user"
    what = "this user (all of their API keys and sessions together)"

    def get_cache_key(self, request, view):
        return request.user.pk if request.user and request.user.is_authenticated else None


class AnonymousThrottle(WindowThrottle):
    scope = "anon"
    what = "this address"

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            return None
        return self.get_ident(request)  # REMOTE_ADDR: NUM_PROXIES is 0, a client's X-Forwarded-For is not believed
