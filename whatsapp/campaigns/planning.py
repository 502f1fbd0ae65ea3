"""Who a campaign goes to and when it will be done.

The audience is contacts with any of the campaign's tags, or all of them, plus explicit numbers, minus the opt-out
list, the tenant's blocked numbers and the installation's: one statement read in chunks (memory stays flat in the
audience's size). Planning turns it into recipient rows with their rendered message, in chunks of CHUNK; the
estimate walks the days in the workspace's time zone: a number sends one message per (min+max)/2 seconds outside
quiet hours, at most its daily cap, and its cold cap of contacts who never wrote first.
"""
import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q

from billing import entitlements
from core import crypto
from core.errors import DomainError
from whatsapp.messaging import recipients as messaging_recipients
from whatsapp.messaging.models import BlockedNumber, Message

from . import rendering
from .errors import CampaignError
from .models import AudienceContact, CampaignRecipient, OptOut

CHUNK = 2000
SAMPLE = 5


def max_recipients(tenant):
    plan = entitlements.plan_of(tenant)
    limit = (plan.features or {}).get("max_campaign_recipients") if plan else None
    return int(limit) if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else \
        settings.CAMPAIGN_MAX_RECIPIENTS


def _contacts(audience):
    wanted = Q(pk__in=[])
    if audience.get("all"):
        wanted = Q()
    for tag in audience.get("tags") or ():
        wanted |= Q(tags__contains=[tag])
    return (AudienceContact.objects.filter(wanted)
            .annotate(opted=Exists(OptOut.objects.filter(phone=OuterRef("phone"))),
                      blocked=Exists(BlockedNumber.objects.filter(phone=OuterRef("phone"))))
            .filter(opted=False, blocked=False).order_by("pk"))


def audience(audience_spec):
    """Each recipient as {"phone", "name", "fields"}, in a stable order, without opted-out or blocked numbers and
    without repeats; a generator (read in chunks)."""
    # Only the numbers also listed explicitly are remembered (contacts' phones are unique): memory stays flat in the
    # audience's size (a set of every phone was ~9 MB per 100,000).
    listed = list(dict.fromkeys(audience_spec.get("phones") or ()))
    wanted_too, seen = set(listed), set()
    installation_blocked = messaging_recipients.blocked_numbers()
    pattern = messaging_recipients.allowed_pattern()
    query = _contacts(audience_spec).values_list("phone", "name", "fields")
    for phone, name, fields in query.iterator(chunk_size=CHUNK):
        if phone in installation_blocked or (pattern is not None and not pattern.fullmatch(phone)):
            continue
        if phone in wanted_too:
            seen.add(phone)
        yield {"phone": phone, "name": name, "fields": fields}
    explicit = [p for p in listed if p not in seen]
    if explicit:
        known = {c.phone: c for c in AudienceContact.objects.filter(phone__in=explicit)}
        gone = set(OptOut.objects.filter(phone__in=explicit).values_list("phone", flat=True))
        gone |= set(BlockedNumber.objects.filter(phone__in=explicit).values_list("phone", flat=True))
        for phone in explicit:
            if phone in gone or phone in installation_blocked or (pattern is not None and not pattern.fullmatch(phone)):
                continue
            contact = known.get(phone)
            yield {"phone": phone, "name": contact.name if contact else "", "fields": contact.fields if contact else {}}


def _warm(phones):
    """Of these numbers, those that ever wrote to the workspace first (an inbound message)."""
    return set(Message.objects.filter(direction=Message.Direction.IN, from_phone__in=phones)
               .values_list("from_phone", flat=True).distinct())


def plan(campaign, tenant):
    """Create the campaign's recipient rows (in the caller's transaction); returns how many. 400 empty_audience,
    402 too_many_recipients (nothing kept: the caller's transaction rolls back)."""
    template, limit, count = campaign.template, max_recipients(tenant), 0
    texts = rendering.texts_of(template)
    chunk = []

    def flush():
        warm = _warm([r["phone"] for r in chunk])
        rows = []
        for r in chunk:
            values = rendering.values_for(r)
            index = rendering.pick(len(texts), campaign.pk, r["phone"])
            rows.append((r["phone"], r["name"][:255], rendering.render(texts[index], values, template.defaults),
                         index, r["phone"] not in warm))
        insert_recipients(campaign, rows)
        chunk.clear()

    for recipient in audience(campaign.audience):
        count += 1
        if count > limit:
            raise DomainError(CampaignError.TOO_MANY_RECIPIENTS,
                              f"A campaign may go to at most {limit} recipients on your plan; this audience has more. "
                              "Narrow it with tags, or split it into several campaigns.", {"max": limit})
        chunk.append(recipient)
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    if count == 0:
        raise DomainError(CampaignError.EMPTY_AUDIENCE, "Nobody to send to: the audience is empty once opted-out and "
                                                        "blocked numbers are taken out.")
    return count


COLUMNS = ("campaign_id", "phone", "name", "text", "variation", "cold", "status", "reason")


def insert_recipients(campaign, rows):
    """Recipient rows (phone, name, text, variation, cold), pending: by COPY (SPEED_PATH_SQL; a fifth of the ORM's
    time for 100,000, bench/campaigns.py measures both) or by the ORM's bulk_create; the same rows either way."""
    if not settings.SPEED_PATH_SQL:
        CampaignRecipient.objects.bulk_create([
            CampaignRecipient(campaign=campaign, phone=phone, name=name, text=text, variation=variation, cold=cold)
            for phone, name, text, variation, cold in rows], batch_size=CHUNK)
        return
    pending = CampaignRecipient.Status.PENDING
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {CampaignRecipient._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for phone, name, text, variation, cold in rows:
                copy.write_row((campaign.pk, phone, name, crypto.seal(text), variation, cold, pending, ""))


def dry_run(campaign, tenant, now):
    """What starting would do, without writing: the count, the first rendered messages, the estimated finish."""
    template = campaign.template
    texts = rendering.texts_of(template)
    count, sample, cold, phones = 0, [], 0, []
    limit = max_recipients(tenant)
    for recipient in audience(campaign.audience):
        count += 1
        phones.append(recipient["phone"])
        if len(sample) < SAMPLE:
            values = rendering.values_for(recipient)
            index = rendering.pick(len(texts), campaign.pk, recipient["phone"])
            sample.append({"phone": recipient["phone"], "name": recipient["name"], "variation": index,
                           "text": rendering.render(texts[index], values, template.defaults)})
        if len(phones) >= CHUNK:
            cold += len(phones) - len(_warm(phones))
            phones = []
    if phones:
        cold += len(phones) - len(_warm(phones))
    senders = campaign.sessions.count()
    finish = estimate(campaign, count, cold / count if count else 0, senders, now, timezone_of(tenant))
    return {"count": count, "cold": cold, "over_limit": count > limit, "max_recipients": limit,
            "sessions": senders, "sample": sample, "estimated_finish": finish.isoformat() if finish else None}


def timezone_of(tenant):
    try:
        return ZoneInfo(tenant.timezone or "UTC")
    except Exception:  # an unknown zone name in an old row: UTC rather than no estimate
        return ZoneInfo("UTC")


def in_quiet_hours(campaign, moment, tz):
    """Whether `moment` falls in the campaign's quiet hours (workspace time); the quiet window may span midnight."""
    if campaign.quiet_start is None or campaign.quiet_end is None or campaign.quiet_start == campaign.quiet_end:
        return False
    local = moment.astimezone(tz).time()
    start, end = campaign.quiet_start, campaign.quiet_end
    return start <= local < end if start < end else (local >= start or local < end)


def quiet_ends(campaign, moment, tz):
    """When the quiet hours `moment` is in end."""
    local = moment.astimezone(tz)
    end = datetime.combine(local.date(), campaign.quiet_end, tzinfo=tz)
    if end <= local:
        end += timedelta(days=1)
    return end


def estimate(campaign, count, cold_share, senders, now, tz, already_today=0):
    """When `count` more messages will have gone from `senders` numbers (each having sent `already_today` today), or
    None when none can send."""
    if not count:
        return now
    if not senders:
        return None
    gap = (campaign.min_gap_seconds + campaign.max_gap_seconds) / 2
    per_day = campaign.daily_cap
    if cold_share > 0:
        per_day = min(per_day, int(campaign.cold_daily_cap / cold_share) if campaign.cold_daily_cap else 0)
    if per_day <= 0:
        return None
    used = {now.astimezone(tz).date(): already_today}
    remaining, moment = count, now
    for _ in range(3000):
        if in_quiet_hours(campaign, moment, tz):
            moment = quiet_ends(campaign, moment, tz)
        local = moment.astimezone(tz)
        day = local.date()
        window_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        if campaign.quiet_start is not None and campaign.quiet_end is not None:
            quiet_from = datetime.combine(day, campaign.quiet_start, tzinfo=tz)
            if local < quiet_from < window_end:
                window_end = quiet_from
        by_time = math.ceil((window_end - moment).total_seconds() / gap)
        take = max(0, min(by_time, per_day - used.get(day, 0)))
        if remaining <= take * senders:
            return moment + timedelta(seconds=gap * (-(-remaining // senders) - 1))
        remaining -= take * senders
        used[day] = used.get(day, 0) + take
        moment = window_end
    return None
