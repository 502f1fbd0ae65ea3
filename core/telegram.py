"""Telegram's Bot API, the one client: sendMessage with the platform's bot (TELEGRAM_BOT_TOKEN) at
TELEGRAM_API_BASE (a local fake in tests). Used by the receptionist's escalations (whatsapp.automation.escalation);
the alerts app (alerts.actions) sends through it too."""
import re

import httpx
from django.conf import settings

TIMEOUT = 10
# A chat's numeric id (groups and channels are negative) or a public channel's @username.
CHAT_ID_RE = re.compile(r"^-?\d{1,20}$|^@[A-Za-z][A-Za-z0-9_]{4,31}$")


def configured():
    return bool(settings.TELEGRAM_BOT_TOKEN)


def send_message(chat_id, text, *, timeout=TIMEOUT):
    """Post `text` to `chat_id`; raises httpx.HTTPError when Telegram does not take it."""
    response = httpx.post(f"{settings.TELEGRAM_API_BASE.rstrip('/')}/bot{settings.TELEGRAM_BOT_TOKEN}/sendMessage",
                          json={"chat_id": chat_id, "text": text[:4096]}, timeout=timeout)
    response.raise_for_status()
