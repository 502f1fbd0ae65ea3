"""Who a message may go to: recipients normalised to E.164 and WhatsApp JIDs, and the numbers nobody may
message (the installation's WHATSAPP_BLOCKED_NUMBERS)."""
import re

from django import forms
from django.conf import settings

from accounts.forms import normalize_phone
from config.api import ApiError

GROUP_JID_RE = re.compile(r"^[0-9]+(-[0-9]+)?@g\.us$")


def blocked_numbers():
    numbers = set()
    for raw in settings.WHATSAPP_BLOCKED_NUMBERS:
        try:
            numbers.add(normalize_phone(raw if raw.strip().startswith("+") else f"+{raw.strip()}"))
        except forms.ValidationError:
            continue
    return numbers


def normalize_recipient(to):
    """(E.164 phone or "" for a group, chat JID) or 400 invalid_recipient. Accepts +E.164, digits with the
    country code, "<digits>@s.whatsapp.net" and group JIDs "<id>@g.us" (as they are)."""
    raw = str(to or "").strip()
    if GROUP_JID_RE.match(raw):
        return "", raw
    if "@" in raw:
        user, _, server = raw.partition("@")
        if server != "s.whatsapp.net" or not user.isdigit():
            raise ApiError(400, "invalid_recipient", f"'{raw}' is not a phone number or a WhatsApp address.")
        raw = user
    candidate = raw if raw.startswith("+") else f"+{raw}"
    try:
        phone = normalize_phone(candidate)
    except forms.ValidationError as exc:
        raise ApiError(400, "invalid_recipient", exc.messages[0])
    if phone in blocked_numbers():
        raise ApiError(400, "blocked_recipient", "Messages to this number are blocked on this installation.")
    return phone, f"{phone[1:]}@s.whatsapp.net"
