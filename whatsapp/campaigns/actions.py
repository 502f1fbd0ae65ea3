"""State changes of broadcasts, in the tenant's schema: audience contacts and their CSV import, the opt-out list,
templates and campaigns. Each is one transaction with its audit row; side effects (webhooks, live updates,
messages) go out on commit. Campaign sending itself is whatsapp.campaigns.feeder."""
import logging
import re
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit import actions as audit
from billing import entitlements
from core.api import has_visible_text
from core.errors import DomainError
from tenants.models import Tenant
from whatsapp.messaging import actions as messaging
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.webhooks.actions import emit_event

from . import csvimport, planning, progress, rendering
from .errors import CampaignError
from .models import (
    AudienceContact,
    BroadcastSettings,
    Campaign,
    CampaignRecipient,
    CampaignSender,
    MessageTemplate,
    OptOut,
)
from .phones import to_e164, valid_country

log = logging.getLogger(__name__)
R = CampaignRecipient.Status
DEFAULT_CONFIRMATION = ("You will not get our broadcasts any more. Reply START if you change your mind.")
MAX_OPT_OUT_WORDS = 50
# An inbound message counts as a reply to the campaign messages its number got within this long.
REPLY_WINDOW = timedelta(days=7)
MAX_WORD_LENGTH = 40


# --- contacts -----------------------------------------------------------------------------------------------


TAG_RE = re.compile(r"^\S(.*\S)?$")


def check_tags(tags, code=CampaignError.INVALID_CONTACT):
    """The tags as a person gave them: a list of at most MAX_TAGS words of 1 to MAX_TAG_LENGTH characters, no
    blanks around (what the API's schema says); stored in lower case."""
    if (not isinstance(tags, list | tuple) or len(tags) > csvimport.MAX_TAGS
            or not all(isinstance(t, str) and len(t) <= csvimport.MAX_TAG_LENGTH and TAG_RE.match(t) for t in tags)):
        raise DomainError(code, f"tags: a list of at most {csvimport.MAX_TAGS} words of 1 to "
                                f"{csvimport.MAX_TAG_LENGTH} characters.", {"tags": tags if isinstance(tags, list)
                                                                            else None})
    return csvimport.clean_tags(tags)


def _contact_fields(*, name, tags, fields):
    if not isinstance(name, str) or len(name) > 255:
        raise DomainError(CampaignError.INVALID_CONTACT, "name: at most 255 characters.")
    tags = check_tags(tags)
    if not isinstance(fields, dict) or len(fields) > 50:
        raise DomainError(CampaignError.INVALID_CONTACT, "fields: an object of at most 50 values.")
    for key, value in fields.items():
        if not csvimport.FIELD_NAME.match(str(key)):
            raise DomainError(CampaignError.INVALID_CONTACT, f"fields: '{key}' is not a field name (a-z, 0-9, _; "
                                                             "starting with a letter).", {"field": key})
        if not isinstance(value, str) or len(value) > csvimport.MAX_FIELD_VALUE:
            raise DomainError(CampaignError.INVALID_CONTACT,
                              f"fields.{key}: a text of at most {csvimport.MAX_FIELD_VALUE} characters.")
    return name.strip(), tags, dict(fields)


def create_contact(tenant, *, acting_user, phone, name="", tags=(), fields=None):
    """One audience contact; 400 invalid_phone / invalid_contact, 409 contact_exists."""
    entitlements.require_write(tenant)
    phone = to_e164(phone)
    name, tags, fields = _contact_fields(name=name, tags=list(tags), fields=fields if fields is not None else {})
    try:
        with transaction.atomic():
            contact = AudienceContact.objects.create(phone=phone, name=name, tags=tags, fields=fields)
            audit.record("campaigns.contact_created", actor=acting_user, target=contact,
                         after={"phone": phone, "name": name, "tags": tags}, tenant=tenant)
    except IntegrityError:
        raise DomainError(CampaignError.CONTACT_EXISTS, f"{phone} is already a contact.", {"phone": phone}) from None
    return contact


def delete_contact(tenant, contact, *, acting_user):
    entitlements.require_write(tenant)
    with transaction.atomic():
        audit.record("campaigns.contact_deleted", actor=acting_user, target=contact,
                     before={"phone": contact.phone, "name": contact.name, "tags": contact.tags}, tenant=tenant)
        contact.delete()


def import_contacts(tenant, *, acting_user, data, default_country=None, add_tags=(), dry_run=False):
    """Read a contacts CSV (csvimport) and, unless `dry_run` (the preview), add its new numbers and update the
    known ones (a name given replaces the name, tags are added, fields merged). Returns the report: counts, the
    first rows as they will be stored, and every rejected row with its reason."""
    if default_country is not None and not valid_country(default_country):
        raise DomainError(CampaignError.INVALID_COUNTRY, f"'{default_country}' is not a country code (ISO 3166, e.g. "
                                                     "ID, US, DE).", {"default_country": default_country})
    if not dry_run:
        entitlements.require_write(tenant)
    parsed = csvimport.parse(data, default_country=default_country.upper() if default_country else None)
    add_tags = check_tags(list(add_tags), CampaignError.INVALID_CSV)
    for row in parsed.contacts:
        row["tags"] = csvimport.clean_tags([*row["tags"], *add_tags])
    phones = [row["phone"] for row in parsed.contacts]
    existing = {}
    for start in range(0, len(phones), 5000):
        for contact in AudienceContact.objects.filter(phone__in=phones[start:start + 5000]):
            existing[contact.phone] = contact
    report = {"dry_run": dry_run, "rows": parsed.total, "valid": len(parsed.contacts),
              "new": sum(1 for p in phones if p not in existing), "updated": sum(1 for p in phones if p in existing),
              "rejected_count": len(parsed.rejected), "rejected": parsed.rejected[:1000],
              "preview": [{k: row[k] for k in ("row", "phone", "name", "tags", "fields")}
                          for row in parsed.contacts[:20]]}
    if dry_run:
        return report
    now = timezone.now()
    with transaction.atomic():
        fresh, changed = [], []
        for row in parsed.contacts:
            contact = existing.get(row["phone"])
            if contact is None:
                fresh.append(AudienceContact(phone=row["phone"], name=row["name"], tags=row["tags"],
                                             fields=row["fields"], created_at=now, updated_at=now))
                continue
            contact.name = row["name"] or contact.name
            contact.tags = csvimport.clean_tags([*contact.tags, *row["tags"]])
            contact.fields = {**contact.fields, **row["fields"]}
            contact.updated_at = now
            changed.append(contact)
        AudienceContact.objects.bulk_create(fresh, batch_size=2000, ignore_conflicts=True)
        AudienceContact.objects.bulk_update(changed, ["name", "tags", "fields", "updated_at"], batch_size=2000)
        audit.record("campaigns.contacts_imported", actor=acting_user, target=tenant,
                     after={k: report[k] for k in ("rows", "new", "updated", "rejected_count")}, tenant=tenant)
    return report


# --- opt-outs -----------------------------------------------------------------------------------------------


def broadcast_settings():
    return BroadcastSettings.objects.order_by("pk").first()


def opt_out_words():
    row = broadcast_settings()
    words = row.opt_out_words if row is not None and row.opt_out_words else settings.CAMPAIGN_OPT_OUT_WORDS
    return {normalize_word(w) for w in words if normalize_word(w)}


def confirmation_text():
    row = broadcast_settings()
    return (row.confirmation_text if row is not None and row.confirmation_text else DEFAULT_CONFIRMATION)


def normalize_word(text):
    """A reply as the opt-out words are compared: case and accents folded, punctuation and blanks around dropped
    ("Stop!" and "  ARRÊT." are stop and arret)."""
    text = unicodedata.normalize("NFKD", str(text or "")).casefold()
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.strip(" \t\r\n.!?¡¿,;:'\"()").split())


def update_broadcast_settings(tenant, *, acting_user, words, confirmation):
    """The workspace's opt-out words (empty = the installation's) and confirmation text (empty = the default)."""
    entitlements.require_write(tenant)
    words = [w.strip() for w in words if w and w.strip()]
    if len(words) > MAX_OPT_OUT_WORDS or any(len(w) > MAX_WORD_LENGTH for w in words):
        raise DomainError(CampaignError.INVALID_CONTACT, f"At most {MAX_OPT_OUT_WORDS} opt-out words of at most "
                                                         f"{MAX_WORD_LENGTH} characters.")
    if len(confirmation) > 1000:
        raise DomainError(CampaignError.INVALID_CONTACT, "The confirmation holds at most 1000 characters.")
    with transaction.atomic():
        row = BroadcastSettings.objects.select_for_update().order_by("pk").first() or BroadcastSettings()
        before = {"opt_out_words": row.opt_out_words, "confirmation_text": row.confirmation_text}
        row.opt_out_words, row.confirmation_text, row.updated_at = words, confirmation.strip(), timezone.now()
        row.save()
        audit.record("campaigns.settings_updated", actor=acting_user, target=row, before=before,
                     after={"opt_out_words": row.opt_out_words, "confirmation_text": row.confirmation_text},
                     tenant=tenant)
    return row


def _skip_opted_out(phone, now):
    """A running or paused campaign does not send to `phone` any more; those it did count it as opted out."""
    CampaignRecipient.objects.filter(phone=phone, status=R.PENDING).update(
        status=R.SKIPPED, reason="opted_out: the contact opted out", opted_out_at=now)
    CampaignRecipient.objects.filter(phone=phone, status=R.QUEUED, opted_out_at__isnull=True).update(opted_out_at=now)


def opt_out(tenant, *, phone, source, acting_user=None, keyword="", session=None, now=None):
    """Put `phone` on the opt-out list. Returns (row, created); a number already on it is left as it was."""
    now = now or timezone.now()
    with transaction.atomic():
        row, created = OptOut.objects.get_or_create(phone=phone, defaults={
            "source": source, "keyword": keyword[:40], "session": session, "created_at": now})
        if created:
            _skip_opted_out(phone, now)
            audit.record("campaigns.opted_out", actor=acting_user, target=row,
                         after={"phone": phone, "source": source, "keyword": row.keyword}, tenant=tenant)
    return row, created


def add_opt_out(tenant, *, acting_user, phone, source=OptOut.Source.API):
    """A person adds a number to the opt-out list: 400 invalid_phone, 409 already_opted_out."""
    entitlements.require_write(tenant)
    phone = to_e164(phone)
    row, created = opt_out(tenant, phone=phone, source=source, acting_user=acting_user)
    if not created:
        raise DomainError(CampaignError.ALREADY_OPTED_OUT, f"{phone} is already on the opt-out list.",
                          {"phone": phone})
    return row


def resubscribe(tenant, row, *, acting_user):
    """Take a number off the opt-out list (they asked to get broadcasts again)."""
    entitlements.require_write(tenant)
    with transaction.atomic():
        audit.record("campaigns.resubscribed", actor=acting_user, target=row,
                     before={"phone": row.phone, "source": row.source, "keyword": row.keyword}, tenant=tenant)
        row.delete()


def on_inbound_text(session, *, phone, text, now=None):
    """An inbound message of `session` from `phone` (E.164) saying `text`, in the tenant's schema: a reply to a
    campaign is counted; a message that is only an opt-out word puts the number on the opt-out list and, the
    first time, answers it once with the confirmation."""
    now = now or timezone.now()
    CampaignRecipient.objects.filter(phone=phone, status=R.QUEUED, replied_at__isnull=True, queued_at__lte=now,
                                     queued_at__gte=now - REPLY_WINDOW).update(replied_at=now)
    word = normalize_word(text)
    if not word or word not in opt_out_words():
        return None
    tenant = Tenant.objects.get(schema_name=connection.schema_name)
    row, created = opt_out(tenant, phone=phone, source=OptOut.Source.INBOUND, keyword=word, session=session, now=now)
    if created and row.confirmed_at is None:
        try:
            with transaction.atomic():
                messaging.queue_message(tenant, body={"session": session.name, "to": phone,
                                                      "text": confirmation_text()},
                                        idempotency_key=f"opt-out-{row.pk}")
                OptOut.objects.filter(pk=row.pk).update(confirmed_at=now)
        except DomainError as exc:  # the session went away, the tenant cannot write: no confirmation then
            log.warning("opt-out of %s not confirmed: %s", phone, exc)
    return row


# --- templates ----------------------------------------------------------------------------------------------

MAX_TEXT = 4096
MAX_CAPTION = 1024


def check_template(*, name, body, variations, defaults, media_type, media_url):
    """The template's fields, cleaned, or 400 invalid_template / unknown_variable."""
    name = str(name or "")
    if not has_visible_text(name) or len(name) > 100:
        raise DomainError(CampaignError.INVALID_TEMPLATE, "name: 1 to 100 characters.")
    name = name.strip()
    if media_type not in MessageTemplate.MediaType.values:
        raise DomainError(CampaignError.INVALID_TEMPLATE, "media_type: image, video, document or empty.")
    limit = MAX_CAPTION if media_type else MAX_TEXT
    if not isinstance(variations, list) or len(variations) > rendering.MAX_VARIATIONS - 1:
        raise DomainError(CampaignError.INVALID_TEMPLATE,
                          f"variations: at most {rendering.MAX_VARIATIONS - 1} other phrasings.")
    texts = [body, *variations]
    for index, text in enumerate(texts):
        if not has_visible_text(text) or len(text) > limit:
            where = "body" if index == 0 else f"variations[{index - 1}]"
            raise DomainError(CampaignError.INVALID_TEMPLATE, f"{where}: a text of 1 to {limit} characters"
                                                              f"{' (a caption)' if media_type else ''}.")
        rendering.variables_of(text)
    if not isinstance(defaults, dict) or len(defaults) > 50:
        raise DomainError(CampaignError.INVALID_TEMPLATE, "defaults: an object of variables and their defaults.")
    for key, value in defaults.items():
        if not rendering.is_known(key):
            raise DomainError(CampaignError.UNKNOWN_VARIABLE, f"defaults: unknown variable '{key}'.",
                              {"variable": key})
        if not isinstance(value, str) or len(value) > rendering.MAX_DEFAULT:
            raise DomainError(CampaignError.INVALID_TEMPLATE,
                              f"defaults.{key}: a text of at most {rendering.MAX_DEFAULT} characters.")
    media_url = str(media_url or "").strip()
    if media_type and not re.match(r"^https?://[^\s/]+", media_url):
        raise DomainError(CampaignError.INVALID_TEMPLATE, "media_url: the http(s) address of the image, video or "
                                                          "document.")
    if not media_type and media_url:
        raise DomainError(CampaignError.INVALID_TEMPLATE, "media_url: set media_type too.")
    return {"name": name, "body": body, "variations": variations, "defaults": defaults, "media_type": media_type,
            "media_url": media_url}


def create_template(tenant, *, acting_user, name, body, variations=(), defaults=None, media_type="", media_url=""):
    entitlements.require_write(tenant)
    fields = check_template(name=name, body=body, variations=list(variations),
                            defaults=defaults if defaults is not None else {}, media_type=media_type,
                            media_url=media_url)
    try:
        with transaction.atomic():
            template = MessageTemplate.objects.create(**fields)
            audit.record("campaigns.template_created", actor=acting_user, target=template, after=fields,
                         tenant=tenant)
    except IntegrityError:
        raise DomainError(CampaignError.TEMPLATE_EXISTS, f"A template is already named '{fields['name']}'.",
                          {"name": fields["name"]}) from None
    return template


def update_template(tenant, template, *, acting_user, changes):
    entitlements.require_write(tenant)
    before = {k: getattr(template, k) for k in ("name", "body", "variations", "defaults", "media_type", "media_url")}
    fields = check_template(**{**before, **changes})
    try:
        with transaction.atomic():
            for key, value in fields.items():
                setattr(template, key, value)
            template.updated_at = timezone.now()
            template.save()
            audit.record("campaigns.template_updated", actor=acting_user, target=template, before=before,
                         after=fields, tenant=tenant)
    except IntegrityError:
        raise DomainError(CampaignError.TEMPLATE_EXISTS, f"A template is already named '{fields['name']}'.",
                          {"name": fields["name"]}) from None
    return template


def delete_template(tenant, template, *, acting_user):
    """409 template_in_use while a campaign uses it (campaigns keep what they sent)."""
    entitlements.require_write(tenant)
    with transaction.atomic():
        if template.campaigns.exists():
            raise DomainError(CampaignError.TEMPLATE_IN_USE, "A campaign uses this template; it stays.",
                              {"campaigns": list(template.campaigns.values_list("pk", flat=True)[:20])})
        audit.record("campaigns.template_deleted", actor=acting_user, target=template,
                     before={"name": template.name, "body": template.body}, tenant=tenant)
        template.delete()


def preview_template(template, contact, campaign_id=0):
    """Every variation of `template` rendered for `contact` (an AudienceContact or a dict), and the one it gets."""
    values = rendering.values_for(contact)
    chosen, _ = rendering.render_for(template, values, campaign_id)
    return {"variables": values, "chosen": chosen,
            "texts": [rendering.render(text, values, template.defaults) for text in rendering.texts_of(template)]}


# --- campaigns ----------------------------------------------------------------------------------------------

C = Campaign.Status
GAP_BOUNDS = (5, 3600)
CAP_BOUNDS = (1, 100_000)
MAX_PHONES = 1000


def campaign_payload(campaign):
    """What the campaign.* webhooks carry."""
    return {"id": campaign.pk, "name": campaign.name, "status": campaign.status,
            "pause_reason": campaign.pause_reason, "recipients": campaign.planned_count}


def check_campaign(*, name, template, audience, sessions, start_at, quiet_start, quiet_end, min_gap_seconds,
                   max_gap_seconds, daily_cap, cold_daily_cap, progress_every):
    """The campaign's fields, resolved (template, sessions) and cleaned; 400 with the field's code otherwise."""
    name = str(name or "")
    if not has_visible_text(name) or len(name) > 120:
        raise DomainError(CampaignError.INVALID_CAMPAIGN, "name: 1 to 120 characters.")
    name = name.strip()
    if isinstance(template, int) and not isinstance(template, bool):
        found = MessageTemplate.objects.filter(pk=template).first()
    else:
        found = MessageTemplate.objects.filter(name=str(template or "")).first()
    if found is None:
        raise DomainError(CampaignError.UNKNOWN_TEMPLATE, f"No template {template!r}.", {"template": template})
    if not isinstance(audience, dict) or set(audience) - {"tags", "phones", "all"}:
        raise DomainError(CampaignError.INVALID_AUDIENCE, "audience: {\"tags\": [...], \"phones\": [...], \"all\": "
                                                          "true|false}.")
    tags = check_tags(list(audience.get("tags") or []), CampaignError.INVALID_AUDIENCE)
    raw_phones = audience.get("phones") or []
    if not isinstance(raw_phones, list) or len(raw_phones) > MAX_PHONES:
        raise DomainError(CampaignError.INVALID_AUDIENCE, f"audience.phones: a list of at most {MAX_PHONES} numbers "
                                                          "(import a CSV for more).")
    phones, bad = [], []
    for raw in raw_phones:
        try:
            phones.append(to_e164(raw))
        except DomainError as exc:
            bad.append({"phone": str(raw)[:40], "reason": exc.message})
    if bad:
        raise DomainError(CampaignError.INVALID_AUDIENCE, f"{len(bad)} of the numbers are not valid; nothing was "
                                                          "created.", {"rejected": bad[:100]})
    everyone = audience.get("all", False)
    if not isinstance(everyone, bool):
        raise DomainError(CampaignError.INVALID_AUDIENCE, "audience.all: true or false.")
    if not (tags or phones or everyone):
        raise DomainError(CampaignError.INVALID_AUDIENCE, "audience: give tags, phones, or all: true.")
    if not isinstance(sessions, list) or not sessions or len(sessions) > 20:
        raise DomainError(CampaignError.UNKNOWN_SESSION, "sessions: the names of 1 to 20 numbers to send from.")
    names = list(dict.fromkeys(str(s) for s in sessions))
    found_sessions = list(WhatsAppSession.objects.filter(name__in=names))
    missing = sorted(set(names) - {s.name for s in found_sessions})
    if missing:
        raise DomainError(CampaignError.UNKNOWN_SESSION, f"No session named {', '.join(missing)}.",
                          {"sessions": missing})
    for field_name, value in (("min_gap_seconds", min_gap_seconds), ("max_gap_seconds", max_gap_seconds)):
        if not GAP_BOUNDS[0] <= value <= GAP_BOUNDS[1]:
            raise DomainError(CampaignError.INVALID_CAMPAIGN, f"{field_name}: {GAP_BOUNDS[0]} to {GAP_BOUNDS[1]} "
                                                              "seconds.")
    if min_gap_seconds > max_gap_seconds:
        raise DomainError(CampaignError.INVALID_CAMPAIGN, "min_gap_seconds cannot be more than max_gap_seconds.")
    if not CAP_BOUNDS[0] <= daily_cap <= CAP_BOUNDS[1] or not 0 <= cold_daily_cap <= daily_cap:
        raise DomainError(CampaignError.INVALID_CAMPAIGN, "daily_cap: 1 to 100000; cold_daily_cap: 0 to daily_cap.")
    if (quiet_start is None) != (quiet_end is None):
        raise DomainError(CampaignError.INVALID_CAMPAIGN, "quiet_start and quiet_end go together.")
    if not 1 <= progress_every <= 100_000:
        raise DomainError(CampaignError.INVALID_CAMPAIGN, "progress_every: 1 to 100000.")
    return {"name": name, "template": found, "audience": {"tags": tags, "phones": phones, "all": everyone},
            "sessions": found_sessions, "start_at": start_at, "quiet_start": quiet_start, "quiet_end": quiet_end,
            "min_gap_seconds": min_gap_seconds, "max_gap_seconds": max_gap_seconds, "daily_cap": daily_cap,
            "cold_daily_cap": cold_daily_cap, "progress_every": progress_every}


DEFAULTS = {"start_at": None, "quiet_start": None, "quiet_end": None, "min_gap_seconds": 30, "max_gap_seconds": 60,
            "daily_cap": 200, "cold_daily_cap": 50, "progress_every": 100}


def _check_monthly_limit(tenant, now):
    plan = entitlements.plan_of(tenant)
    limit = (plan.features or {}).get("campaigns_per_month") if plan else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        return
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    made = Campaign.objects.filter(created_at__gte=month).count()
    if made >= limit:
        raise DomainError(CampaignError.CAMPAIGN_LIMIT_REACHED,
                          f"Your plan allows {limit} campaigns a month and you made {made}. Upgrade on the Billing "
                          "page for more.", {"allowed": limit, "in_use": made})


def create_campaign(tenant, *, acting_user, start=False, now=None, **given):
    """A draft campaign (and, with `start`, started at once: see start_campaign)."""
    entitlements.require_write(tenant)
    now = now or timezone.now()
    fields = check_campaign(**{**DEFAULTS, **given})
    sessions = fields.pop("sessions")
    with transaction.atomic():
        _check_monthly_limit(tenant, now)
        campaign = Campaign.objects.create(created_by=acting_user if getattr(acting_user, "pk", None) else None,
                                           created_at=now, **fields)
        campaign.sessions.set(sessions)
        audit.record("campaigns.campaign_created", actor=acting_user, target=campaign,
                     after={"name": campaign.name, "template": campaign.template_id, "audience": campaign.audience,
                            "sessions": [s.name for s in sessions]}, tenant=tenant)
        if start:
            campaign = start_campaign(tenant, campaign, acting_user=acting_user, now=now)
    return campaign


def _locked(campaign):
    return Campaign.objects.select_for_update().select_related("template").get(pk=campaign.pk)


def start_campaign(tenant, campaign, *, acting_user, now=None):
    """Plan a draft's recipients (planning.plan) and run it now, or at its start_at (scheduled). Every number must be
    connected (409 session_not_connected); a campaign not in draft is 409 campaign_not_startable."""
    entitlements.require_write(tenant)
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign)
        if campaign.status != C.DRAFT:
            raise DomainError(CampaignError.CAMPAIGN_NOT_STARTABLE,
                              f"This campaign is {campaign.get_status_display().lower()}; only a draft starts "
                              "(resume a paused one).", {"status": campaign.status})
        sessions = list(campaign.sessions.all())
        down = [s.name for s in sessions if s.status != WhatsAppSession.Status.CONNECTED]
        if down:
            raise DomainError(CampaignError.SESSION_NOT_CONNECTED,
                              f"Not connected: {', '.join(down)}. Link the number(s) or leave them out.",
                              {"sessions": down})
        campaign.planned_count = planning.plan(campaign, tenant)
        CampaignSender.objects.bulk_create([CampaignSender(campaign=campaign, session=s) for s in sessions])
        campaign.status = C.SCHEDULED if campaign.start_at and campaign.start_at > now else C.RUNNING
        if campaign.status == C.RUNNING:
            campaign.started_at = now
            emit_event("campaign.started", campaign_payload(campaign))
        campaign.save(update_fields=["planned_count", "status", "started_at"])
        audit.record("campaigns.campaign_started", actor=acting_user, target=campaign,
                     after={"status": campaign.status, "recipients": campaign.planned_count}, tenant=tenant)
        progress.push(campaign, tenant)
    return campaign


def pause_campaign(tenant, campaign, *, acting_user=None, reason="", now=None):
    """Stop feeding it (messages already handed to a number's queue still go). A person's pause or a safety stop
    (`reason`, acting_user None): both audited, both a campaign.paused webhook."""
    with transaction.atomic():
        campaign = _locked(campaign)
        if campaign.status not in (C.RUNNING, C.SCHEDULED):
            raise DomainError(CampaignError.CAMPAIGN_STATE, f"This campaign is "
                                                            f"{campaign.get_status_display().lower()}; only a running "
                                                            "or scheduled one pauses.", {"status": campaign.status})
        before = campaign.status
        campaign.status, campaign.pause_reason = C.PAUSED, reason[:300]
        campaign.save(update_fields=["status", "pause_reason"])
        audit.record("campaigns.campaign_paused", actor=acting_user, target=campaign,
                     before={"status": before}, after={"status": campaign.status, "reason": reason}, tenant=tenant)
        emit_event("campaign.paused", campaign_payload(campaign))
        progress.push(campaign, tenant)
    return campaign


def resume_campaign(tenant, campaign, *, acting_user, now=None):
    entitlements.require_write(tenant)
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign)
        if campaign.status != C.PAUSED:
            raise DomainError(CampaignError.CAMPAIGN_STATE, "Only a paused campaign resumes.",
                              {"status": campaign.status})
        campaign.status = C.SCHEDULED if campaign.start_at and campaign.start_at > now else C.RUNNING
        campaign.pause_reason = ""
        if campaign.status == C.RUNNING and campaign.started_at is None:
            campaign.started_at = now
            emit_event("campaign.started", campaign_payload(campaign))
        campaign.save(update_fields=["status", "pause_reason", "started_at"])
        audit.record("campaigns.campaign_resumed", actor=acting_user, target=campaign,
                     after={"status": campaign.status}, tenant=tenant)
        progress.push(campaign, tenant)
    return campaign


def cancel_campaign(tenant, campaign, *, acting_user, now=None):
    """For good: recipients not handed to a queue yet are cancelled. 409 campaign_state once finished/cancelled."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign)
        if campaign.status in (C.CANCELLED, C.FINISHED):
            raise DomainError(CampaignError.CAMPAIGN_STATE, f"This campaign is already "
                                                            f"{campaign.get_status_display().lower()}.",
                              {"status": campaign.status})
        before = campaign.status
        CampaignRecipient.objects.filter(campaign=campaign, status=R.PENDING).update(
            status=R.CANCELLED, reason="cancelled: the campaign was cancelled")
        campaign.status, campaign.finished_at = C.CANCELLED, now
        campaign.save(update_fields=["status", "finished_at"])
        audit.record("campaigns.campaign_cancelled", actor=acting_user, target=campaign,
                     before={"status": before}, after={"status": campaign.status}, tenant=tenant)
        if before != C.DRAFT:
            emit_event("campaign.finished", campaign_payload(campaign))
        progress.push(campaign, tenant)
    return campaign
