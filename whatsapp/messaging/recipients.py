"""Who a message may go to: recipients normalised to E.164 and WhatsApp JIDs, the numbers nobody may message
(the installation's WHATSAPP_BLOCKED_NUMBERS), the numbers this tenant blocked (BlockedNumber, tenant schema)
and the installation's allow-list pattern (WHATSAPP_ALLOWED_PHONE_PATTERN). Group JIDs are not phone numbers:
the pattern and the blocks do not apply to them."""
import functools
import re

from django.conf import settings
from django.core import checks
from django.db import connection

from core import rows
from core.errors import DomainError
from core.phones import normalize_phone

from .errors import MessagingError
from .models import BlockedNumber

GROUP_JID_RE = re.compile(r"^[0-9]+(-[0-9]+)?@g\.us$")


def blocked_numbers():
    numbers = set()
    for raw in settings.WHATSAPP_BLOCKED_NUMBERS:
        try:
            numbers.add(normalize_phone(raw, digits_mean_international=True))
        except DomainError:
            continue
    return numbers


@functools.lru_cache(maxsize=8)
def _compiled(pattern):
    return re.compile(pattern)


def allowed_pattern():
    """The compiled WHATSAPP_ALLOWED_PHONE_PATTERN, or None when any number is allowed. An invalid pattern is
    reported by the system check at startup; a process started anyway refuses phone recipients with a 503 that
    names the setting, rather than a bare 500."""
    pattern = settings.WHATSAPP_ALLOWED_PHONE_PATTERN
    if not pattern:
        return None
    try:
        return _compiled(pattern)
    except re.error as exc:
        raise DomainError(MessagingError.RECIPIENT_POLICY_INVALID,
                          f"The installation's WHATSAPP_ALLOWED_PHONE_PATTERN is not a valid regular expression "
                          f"({exc}); ask the operator to fix it.")


@checks.register(checks.Tags.compatibility)
def check_allowed_phone_pattern(app_configs=None, **kwargs):
    pattern = settings.WHATSAPP_ALLOWED_PHONE_PATTERN
    if not pattern:
        return []
    try:
        re.compile(pattern)
    except re.error as exc:
        return [checks.Error(f"WHATSAPP_ALLOWED_PHONE_PATTERN {pattern!r} is not a valid regular expression: {exc}",
                             hint=r"Use a Python regular expression the whole E.164 number must match, e.g. "
                                  r"^\+(1|44)\d+$, or leave it empty to allow any number.",
                             id="whatsapp.E001")]
    return []


def blocked_by_tenant(phone):
    if not settings.SPEED_PATH_SQL:  # the ORM's statement, to measure the written-out one against
        return BlockedNumber.objects.filter(phone=phone).exists()
    with connection.cursor() as cursor:  # on every send: written out rather than compiled each time (core.rows)
        cursor.execute(f"SELECT 1 FROM {rows.table(BlockedNumber)} WHERE phone = %s LIMIT 1", [phone])
        return cursor.fetchone() is not None


def check_phone_allowed(phone, *, tenant_blocked=None):
    """400 blocked_recipient / recipient_not_allowed unless this tenant may message `phone` (E.164); in the
    tenant's schema. `tenant_blocked`: whether the tenant blocked it, when the caller looked already."""
    if phone in blocked_numbers():
        raise DomainError(MessagingError.BLOCKED_RECIPIENT, "Messages to this number are blocked on this installation.")
    if tenant_blocked if tenant_blocked is not None else blocked_by_tenant(phone):
        raise DomainError(MessagingError.BLOCKED_RECIPIENT,
                          "Your business blocked this number; remove it from the blocked numbers (Sending settings) "
                          "to message it.", {"blocked_by": "tenant"})
    pattern = allowed_pattern()
    if pattern is not None and not pattern.fullmatch(phone):
        raise DomainError(MessagingError.RECIPIENT_NOT_ALLOWED,
                          f"This installation only sends to numbers matching {pattern.pattern}; {phone} does not.",
                          {"pattern": pattern.pattern})


def parse_recipient(to):
    """(E.164 phone or "" for a group, chat JID) of `to`, or 400 invalid_recipient: its form only, nothing
    looked up (normalize_recipient also applies the blocks and the allow-list)."""
    raw = str(to or "").strip()
    if GROUP_JID_RE.match(raw):
        return "", raw
    if "@" in raw:
        user, _, server = raw.partition("@")
        if server != "s.whatsapp.net" or not user.isdigit():
            raise DomainError(MessagingError.INVALID_RECIPIENT, f"'{raw}' is not a phone number or a WhatsApp address.")
        raw = user
    phone = normalize_phone(raw, code=MessagingError.INVALID_RECIPIENT, digits_mean_international=True)
    return phone, f"{phone[1:]}@s.whatsapp.net"


def normalize_recipient(to):
    """(E.164 phone or "" for a group, chat JID) or 400 invalid_recipient / blocked_recipient /
    recipient_not_allowed. Accepts +E.164, digits with the country code, "<digits>@s.whatsapp.net" and group
    JIDs "<id>@g.us" (as they are). In the tenant's schema (its blocked numbers are checked)."""
    phone, chat_jid = parse_recipient(to)
    if phone:
        check_phone_allowed(phone)
    return phone, chat_jid
