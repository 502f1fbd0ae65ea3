"""The bot webhook ("brain"): an inbound message is POSTed, signed like our webhooks (Standard Webhooks headers,
the receptionist's own whsec_ secret), to the tenant's bot URL; within BOT_TIMEOUT_MS it may answer

    {"replies": [{"type": "text", "text": "…"} | {"type": "image|document|audio|video", "media_url": "…",
                 "caption": "…"}], "handoff": false}

Replies go out through the sending pipeline like every automatic answer (at most MAX_REPLIES, within the contact's
hourly cap). A bot that is slow, fails, or answers something else (not JSON, too many replies, a reply too large)
is logged, its failure shown on the Automation page, and the keyword rules answer instead: the contact never gets
garbage. The call runs in a worker (ask_bot task), never on the session host's event thread.
"""
import ipaddress
import json
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from core.net import TargetError, resolve_target
from whatsapp.messaging.payloads import message_payload
from whatsapp.webhooks import delivery as wire

from . import engine
from .models import AutomationLog, Receptionist

log = logging.getLogger(__name__)
MAX_REPLIES = 5
MAX_TEXT = 4096
MAX_BODY_BYTES = 64 * 1024
MEDIA_TYPES = ("image", "document", "audio", "video")
Kind = AutomationLog.Kind


class BotFailed(Exception):
    """Why the bot's answer cannot be used (shown on the page and in the log)."""


def request_body(message, profile, *, time_zone, now):
    return json.dumps({
        "type": "message.received",
        "timestamp": now.isoformat(),
        "data": message_payload(message),
        "conversation_id": message.conversation_id,
        "business": {"open_now": engine.schedule.is_open(profile.schedule, profile.holidays, time_zone, now),
                     "time_zone": time_zone},
    }, cls=DjangoJSONEncoder, separators=(",", ":"))


def _pinned(url, ip):
    parts = urlsplit(url)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{host}:{parts.port}" if parts.port else host
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), parts.netloc, extensions


def call(url, secret, body):
    """POST `body` signed to `url` (connecting only to the addresses checked now), within BOT_TIMEOUT_MS; returns
    the decoded JSON answer or raises BotFailed."""
    timeout = settings.BOT_TIMEOUT_MS / 1000
    started = time.monotonic()
    try:
        addresses = resolve_target(url)
    except TargetError as exc:
        raise BotFailed(f"{exc.code.value}: {exc.message}") from exc
    webhook_id = wire.new_webhook_id()
    headers = wire.signed_headers(secret, webhook_id, body, timezone.now())
    target, host_header, extensions = _pinned(url, ipaddress.ip_address(addresses[0]))
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client, client.stream(
                "POST", target, content=body.encode(), headers={**headers, "host": host_header},
                extensions=extensions) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise BotFailed(f"oversized: the answer is over {MAX_BODY_BYTES // 1024} KB")
                if time.monotonic() - started > timeout:
                    raise httpx.ReadTimeout("too slow")
                chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise BotFailed(f"timeout: no answer within {settings.BOT_TIMEOUT_MS} ms") from exc
    except httpx.HTTPError as exc:
        raise BotFailed(f"unreachable: {type(exc).__name__}: {exc}"[:300]) from exc
    if time.monotonic() - started > timeout:
        raise BotFailed(f"timeout: no answer within {settings.BOT_TIMEOUT_MS} ms")
    if not 200 <= response.status_code < 300:
        raise BotFailed(f"http_{response.status_code}: the bot answered HTTP {response.status_code}")
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BotFailed("not_json: the answer is not JSON") from exc


def read_answer(answer):
    """[(reply_type, text, media_url)], handoff — or BotFailed for an answer the contact must not see."""
    if not isinstance(answer, dict):
        raise BotFailed("invalid_answer: the answer is not a JSON object")
    replies = answer.get("replies", [])
    handoff = answer.get("handoff", False)
    if not isinstance(replies, list) or not isinstance(handoff, bool):
        raise BotFailed('invalid_answer: "replies" is a list and "handoff" true or false')
    if len(replies) > MAX_REPLIES:
        raise BotFailed(f"too_many_replies: {len(replies)} replies, at most {MAX_REPLIES}")
    read = []
    for index, reply in enumerate(replies):
        kind = reply.get("type", "text") if isinstance(reply, dict) else None
        if kind == "text":
            text = reply.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
                raise BotFailed(f"invalid_reply: reply {index} needs a text of 1 to {MAX_TEXT} characters")
            read.append(("text", text, ""))
        elif kind in MEDIA_TYPES:
            url, caption = reply.get("media_url"), reply.get("caption", "")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000 \
                    or not isinstance(caption, str) or len(caption) > 1024:
                raise BotFailed(f"invalid_reply: reply {index} needs an http(s) media_url and a short caption")
            read.append((kind, caption, url))
        else:
            raise BotFailed(f"invalid_reply: reply {index} has an unknown type")
    return read, handoff


def _note(profile, *, error=None, now):
    if error is None:
        Receptionist.objects.filter(pk=profile.pk).update(bot_last_ok_at=now, bot_last_error="")
    else:
        Receptionist.objects.filter(pk=profile.pk).update(bot_last_error=error[:500], bot_last_error_at=now)


def ask(message_id, now=None):
    """Ask the bot about the inbound message and carry out its answer, or the rules' when it fails. In the
    tenant's schema (the ask_bot task)."""
    now = now or timezone.now()
    found = engine.facts(now, pk=message_id)
    if found is None or found.answered:
        return None
    message, profile = found.message, found.profile
    if profile is None or not profile.enabled or not profile.bot_enabled or not profile.bot_url:
        return None
    time_zone = profile.time_zone or engine.workspace_time_zone(connection.schema_name)
    try:
        secret = wire.decrypt_secret(profile.bot_secret)
        replies, handoff = read_answer(call(profile.bot_url, secret, request_body(message, profile,
                                                                                 time_zone=time_zone, now=now)))
    except (BotFailed, wire.SecretUnreadable) as exc:
        reason = str(exc)
        log.warning("bot of %s failed: %s", message.session.name, reason)
        _note(profile, error=reason, now=timezone.now())
        engine.carry_out(message, engine.Answer(Kind.BOT_FAILED, source="bot", detail=reason), now)
        answer = engine.decide(found, now, time_zone=time_zone)
        return engine.carry_out(message, answer, now) if answer is not None else None
    _note(profile, now=timezone.now())
    room = settings.AUTOREPLY_MAX_PER_CONTACT_PER_HOUR - found.replies_since(now - timedelta(hours=1))
    done = None
    for index, (reply_type, text, media_url) in enumerate(replies):
        if index >= room:
            engine.carry_out(message, engine.Answer(Kind.SKIPPED, source="bot", detail=(
                f"rate_cap: {len(replies) - index} bot replies over the hourly cap")), now)
            break
        done = engine.carry_out(message, engine.Answer(Kind.BOT, text=text, reply_type=reply_type,
                                                       media_url=media_url, source="bot",
                                                       handoff=handoff and index == 0), now)
    if handoff and not replies:
        done = engine.carry_out(message, engine.Answer(Kind.HANDOFF, source="bot", handoff=True,
                                                       detail="the bot asked for a person"), now)
    return done
