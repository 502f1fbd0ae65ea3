"""State changes of broadcasts, in the tenant's schema: audience contacts and their CSV import, the opt-out list,
templates and campaigns. Each is one transaction with its audit row; side effects (webhooks, live updates,
messages) go out on commit. Campaign sending itself is whatsapp.campaigns.feeder."""
import logging
import re
import unicodedata

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit import actions as audit
from billing import entitlements
from core.errors import DomainError
from tenants.models import Tenant
from whatsapp.messaging import actions as messaging

from . import csvimport
from .errors import CampaignError
from .models import AudienceContact, BroadcastSettings, CampaignRecipient, OptOut
from .phones import to_e164, valid_country

log = logging.getLogger(__name__)
R = CampaignRecipient.Status
DEFAULT_CONFIRMATION = ("You will not get our broadcasts any more. Reply START if you change your mind.")
MAX_OPT_OUT_WORDS = 50
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
    CampaignRecipient.objects.filter(phone=phone, status=R.QUEUED, replied_at__isnull=True,
                                     queued_at__lte=now).update(replied_at=now)
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
