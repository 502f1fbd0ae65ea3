"""Stripe's webhook endpoint: verify, store once, hand to the worker.

Answers:
- 400 for a bad or stale signature (Stripe's 300 s tolerance) or a body that is not an event; nothing is stored.
- 200 for an event already processed (a replay changes nothing).
- 200 once the event is stored and processing is done, or durably queued for the worker (which retries with
  backoff; Stripe's advice is to answer quickly and process asynchronously).
- 500 when processing ran synchronously (eager Celery: tests, single-process setups) and failed, or when the
  hand-off itself failed (broker down). The event stays stored with its error; Stripe delivers it again, and a
  redelivery of a stored but unprocessed event queues it again.
"""
import json
import logging

import stripe
from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.permissions import Perm, permission_required

from . import stripe_events

logger = logging.getLogger(__name__)


def _answer(outcome):
    return JsonResponse({"success": True, "data": {"received": True, "status": outcome}})


def _error(status, code, message):
    return JsonResponse({"success": False, "error": {"code": code, "message": message, "details": None}},
                        status=status)


@csrf_exempt
@require_POST
@transaction.non_atomic_requests
@permission_required(Perm.PUBLIC)
def stripe_webhook(request):
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # A configuration problem on our side: a 5xx makes Stripe keep the event and retry once it is fixed.
        return _error(503, "webhooks_not_configured", "STRIPE_WEBHOOK_SECRET is not set.")
    payload = request.body
    try:
        stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature"), secret)
        data = json.loads(payload)
        event_id, event_type = data["id"], data["type"]
        if not (isinstance(event_id, str) and 0 < len(event_id) <= 100 and isinstance(event_type, str)
                and 0 < len(event_type) <= 100):
            raise ValueError("no event id or type")
    except stripe.SignatureVerificationError as exc:
        logger.warning("Stripe webhook refused: %s", exc)
        return _error(400, "invalid_signature", "The Stripe-Signature header is missing, wrong or too old.")
    except (ValueError, TypeError, KeyError, AttributeError):
        return _error(400, "invalid_payload", "The body is not a Stripe event.")

    try:
        event = stripe_events.receive(event_id, event_type, data)
    except Exception:
        logger.exception("Stripe event %s was not processed", event_id)
        return _error(500, "processing_failed", "The event could not be processed now; it is kept and will be "
                      "processed when Stripe delivers it again.")

    was_processed = event.processed_at is not None
    event.refresh_from_db(fields=["processed_at", "error"])
    if was_processed:
        return _answer("duplicate")
    if event.processed_at is not None:
        return _answer("processed")
    if stripe_events.process_stripe_event.app.conf.task_always_eager:
        # Ran in this request without raising (eager, errors not propagated) and still not processed.
        return _error(500, "processing_failed", "The event could not be processed now; it is kept and will be "
                      "processed when Stripe delivers it again.")
    return _answer("queued")
