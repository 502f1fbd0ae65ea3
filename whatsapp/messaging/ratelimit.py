"""The per-tenant API rate limit on sending.

A sliding window in Redis (a sorted set of accepted request times per tenant, trimmed and counted atomically by
one Lua script): at most `limit` send requests in any WHATSAPP_RATE_LIMIT_WINDOW seconds, where limit is the
lower of the plan's messages_per_minute (scaled to the window) and WHATSAPP_RATE_LIMIT_PER_COMPANY (-1 = no
limit on either side). Refused requests are not recorded, so a client that backs off for Retry-After seconds
gets through.
"""
import math
import time
import uuid

from django.conf import settings

from billing import entitlements
from core.errors import CommonError, DomainError
from core.redis import client

from .errors import MessagingError

KEY_PREFIX = "sb:ratelimit:send"

# KEYS[1] the tenant's window; ARGV now (s), window (s), limit, count, member prefix. Returns {0, 0} when the
# `count` requests fit (and are recorded) or {1, retry_after_ms}: when enough of the window's entries expire.
SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used + count > limit then
  local freeing = redis.call('ZRANGE', KEYS[1], used + count - limit - 1, used + count - limit - 1, 'WITHSCORES')
  local wait = tonumber(freeing[2]) + window - now
  return {1, math.ceil(wait * 1000)}
end
for i = 1, count do
  redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. i)
end
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
return {0, 0}
"""

_script = None


def _redis():

    return client()


def _sliding_window():
    global _script
    if _script is None:
        _script = _redis().register_script(SLIDING_WINDOW)
    return _script


def _clock():
    return time.time()


class RateLimited(DomainError):
    """429 rate_limited; the API answers `wait` as the Retry-After header."""

    def __init__(self, limit, window, retry_after):
        self.wait = retry_after
        super().__init__(CommonError.RATE_LIMITED,
                         f"Too many messages: this business may send {limit} per {window} seconds. "
                         f"Try again in {retry_after} seconds.",
                         {"limit": limit, "window": window, "retry_after": retry_after})


def limit_for(tenant):
    """(limit, window seconds) for the tenant, or (None, window) when nothing limits it."""
    window = max(1, int(settings.WHATSAPP_RATE_LIMIT_WINDOW))
    limits = []
    plan = entitlements.plan_of(tenant)
    if plan is not None and plan.messages_per_minute != -1:
        limits.append(max(1, math.floor(plan.messages_per_minute * window / 60)))
    if settings.WHATSAPP_RATE_LIMIT_PER_COMPANY != -1:
        limits.append(max(1, settings.WHATSAPP_RATE_LIMIT_PER_COMPANY))
    return (min(limits) if limits else None), window


def key_for(tenant):
    # The schema names the tenant's data; the tenant's id keeps a schema reused by a later tenant apart.
    return f"{KEY_PREFIX}:{tenant.schema_name}:{tenant.pk}"


def check_send_rate(tenant, count=1):
    """429 rate_limited (with Retry-After) when `count` more messages would put the tenant over its plan's
    sending rate; otherwise they are counted in the window. A batch larger than the limit can never fit: 400
    batch_over_rate_limit."""
    limit, window = limit_for(tenant)
    if limit is None:
        return None
    if count > limit:
        raise DomainError(MessagingError.BATCH_OVER_RATE_LIMIT,
                          f"This business may send {limit} messages per {window} seconds; a batch of {count} can never "
                          f"fit. Send smaller batches.", {"limit": limit, "window": window, "count": count})
    refused, wait_ms = _sliding_window()(keys=[key_for(tenant)],
                                         args=[_clock(), window, limit, count, uuid.uuid4().hex], client=_redis())
    if refused:
        raise RateLimited(limit, window, max(1, math.ceil(int(wait_ms) / 1000)))
    return None


def reset(tenant):
    """Forget the tenant's window (tests, and an operator lifting a limit at once)."""
    _redis().delete(key_for(tenant))
