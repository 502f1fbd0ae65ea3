"""Send latency as Prometheus histograms, observed where a message's status changes: accept → sent when the drain
records a send (drain.record_sent), sent → delivered when a receipt first marks it delivered
(actions.apply_receipt). Exported by analytics.metrics at /metrics (multiprocess-safe through
PROMETHEUS_MULTIPROC_DIR like the HTTP figures). No tenant label unless METRICS_PER_TENANT (read at import)."""
from django.conf import settings
from django.db import connection
from prometheus_client import Histogram

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_LABELS = ("tenant",) if settings.METRICS_PER_TENANT else ()

ACCEPT_TO_SENT = Histogram("switchboard_message_accept_to_sent_seconds",
                           "Seconds from a message's acceptance (created_at) to WhatsApp taking it (sent_at).",
                           _LABELS, buckets=BUCKETS)
SENT_TO_DELIVERED = Histogram("switchboard_message_sent_to_delivered_seconds",
                              "Seconds from a message being sent to its first delivery receipt.",
                              _LABELS, buckets=BUCKETS)
HISTOGRAMS = (ACCEPT_TO_SENT, SENT_TO_DELIVERED)


def _observe(histogram, seconds):
    if seconds is None or seconds < 0:
        return
    (histogram.labels(connection.schema_name) if _LABELS else histogram).observe(seconds)


def sent(messages, now):
    """Messages the drain just recorded as sent at `now`."""
    for message in messages:
        if message.created_at:
            _observe(ACCEPT_TO_SENT, (now - message.created_at).total_seconds())


def delivered(messages, now):
    """Messages a receipt just moved: those whose delivered_at was set by it (now) and were sent before."""
    for message in messages:
        if message.delivered_at == now and message.sent_at and message.sent_at != now:
            _observe(SENT_TO_DELIVERED, (now - message.sent_at).total_seconds())
