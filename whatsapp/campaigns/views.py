"""Broadcast pages: contacts and the opt-out list (/broadcasts/contacts/), templates and campaigns.

Every member sees them; owners and admins change them. Forms post back with an `action` and redirect after a
change (POST → redirect → GET), with the outcome in the messages framework. A CSV preview keeps the uploaded file
in the cache for a few minutes under a token the preview's GET names; importing it is one more POST.
"""
import csv
import secrets

from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django_tenants.utils import schema_context

from billing.decorators import billing_access_required
from core.errors import DomainError
from core.permissions import Perm, can, permission_required
from whatsapp.sessions.models import WhatsAppSession

from . import actions, csvimport, planning, progress
from .errors import CampaignError
from .models import AudienceContact, Campaign, MessageTemplate, OptOut
from .selectors import FILTERS, recipient_payload, recipients_of

PREVIEW_SECONDS = 900
SHOWN = 100


class ImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, a header row with a phone column; name, tags and any "
                                                       "other column (a custom field) are optional.")
    default_country = forms.CharField(max_length=2, required=False, label="Country of numbers without a country code",
                                      help_text="Two letters, e.g. ID, US, DE. Empty: every number has its code.")
    tags = forms.CharField(max_length=200, required=False, label="Tags for every imported contact",
                           help_text="Separated by commas, e.g. spring-sale, jakarta")


class OptOutForm(forms.Form):
    phone = forms.CharField(max_length=40, label="Phone number",
                            widget=forms.TextInput(attrs={"placeholder": "+14155550123", "inputmode": "tel"}))


class WordsForm(forms.Form):
    words = forms.CharField(required=False, label="Opt-out words", widget=forms.Textarea(attrs={"rows": 3}),
                            help_text="One per line or separated by commas; a reply that is only one of these opts "
                                      "the contact out. Empty: the installation's list.")
    confirmation = forms.CharField(required=False, max_length=1000, label="Confirmation sent once",
                                   widget=forms.Textarea(attrs={"rows": 2}))


def can_manage(request):
    return can(request.membership, Perm.CAMPAIGNS_MANAGE)


def _preview_key(request, token):
    return f"campaigns:import:{request.tenant.schema_name}:{request.user.pk}:{token}"


def _split_tags(text):
    return [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]


@never_cache
@billing_access_required
@permission_required(Perm.CAMPAIGNS_READ, POST=Perm.CAMPAIGNS_MANAGE)
def contacts_page(request):
    import_form, opt_out_form = ImportForm(), OptOutForm()
    stored = actions.broadcast_settings()
    words_form = WordsForm(initial={"words": "\n".join(stored.opt_out_words) if stored else "",
                                    "confirmation": stored.confirmation_text if stored else ""})
    status = 200
    if request.method == "POST":
        if not can_manage(request):
            raise PermissionDenied("Only an owner or admin can change contacts.")
        action = request.POST.get("action", "")
        try:
            if action == "preview":
                import_form = ImportForm(request.POST, request.FILES)
                if import_form.is_valid():
                    upload = import_form.cleaned_data["file"]
                    if upload.size > csvimport.max_bytes():
                        raise DomainError(CampaignError.CSV_TOO_LARGE, "The file is larger than "
                                          f"{csvimport.max_bytes() // 1_000_000} MB; split it into several imports.")
                    options = {"default_country": import_form.cleaned_data["default_country"] or None,
                               "add_tags": _split_tags(import_form.cleaned_data["tags"])}
                    data = upload.read()
                    actions.import_contacts(request.tenant, acting_user=request.user, data=data, dry_run=True,
                                            **options)
                    token = secrets.token_urlsafe(12)
                    cache.set(_preview_key(request, token), {"data": data, "options": options,
                                                             "name": upload.name[:100]}, PREVIEW_SECONDS)
                    return redirect(f"{reverse('campaign_contacts')}?preview={token}#import")
            elif action == "import":
                kept = cache.get(_preview_key(request, request.POST.get("token", "")))
                if kept is None:
                    messages.error(request, "That preview expired; choose the file again.")
                    return redirect("campaign_contacts")
                report = actions.import_contacts(request.tenant, acting_user=request.user, data=kept["data"],
                                                 **kept["options"])
                cache.delete(_preview_key(request, request.POST.get("token", "")))
                messages.success(request, f"Imported {kept['name']}: {report['new']} new, {report['updated']} "
                                          f"updated, {report['rejected_count']} rejected.")
                return redirect("campaign_contacts")
            elif action == "opt_out":
                opt_out_form = OptOutForm(request.POST)
                if opt_out_form.is_valid():
                    row = actions.add_opt_out(request.tenant, acting_user=request.user,
                                              phone=opt_out_form.cleaned_data["phone"], source=OptOut.Source.PAGE)
                    messages.success(request, f"{row.phone} is on the opt-out list: no campaign sends to it.")
                    return redirect("campaign_contacts")
            elif action == "resubscribe":
                row = get_object_or_404(OptOut, pk=_int(request.POST.get("id")))
                actions.resubscribe(request.tenant, row, acting_user=request.user)
                messages.success(request, f"{row.phone} gets broadcasts again.")
                return redirect("campaign_contacts")
            elif action == "words":
                words_form = WordsForm(request.POST)
                if words_form.is_valid():
                    actions.update_broadcast_settings(
                        request.tenant, acting_user=request.user,
                        words=[w for line in words_form.cleaned_data["words"].splitlines() for w in line.split(",")],
                        confirmation=words_form.cleaned_data["confirmation"])
                    messages.success(request, "Opt-out words saved.")
                    return redirect("campaign_contacts")
            elif action == "delete":
                contact = get_object_or_404(AudienceContact, pk=_int(request.POST.get("id")))
                actions.delete_contact(request.tenant, contact, acting_user=request.user)
                messages.success(request, f"{contact.phone} deleted.")
                return redirect("campaign_contacts")
            else:
                messages.error(request, "Unknown action.")
                return redirect("campaign_contacts")
            status = 400
        except DomainError as exc:
            form = {"preview": import_form, "opt_out": opt_out_form, "words": words_form}.get(action, import_form)
            _show_error(request, form, exc)
            status = exc.status
    preview = None
    token = request.GET.get("preview", "")
    if token:
        kept = cache.get(_preview_key(request, token))
        if kept is None:
            messages.error(request, "That preview expired; choose the file again.")
        else:
            preview = actions.import_contacts(request.tenant, acting_user=request.user, data=kept["data"],
                                              dry_run=True, **kept["options"])
            preview.update(token=token, name=kept["name"])
    contacts = AudienceContact.objects.all()
    tag = request.GET.get("tag", "").strip().lower()
    if tag:
        contacts = contacts.filter(tags__contains=[tag])
    return render(request, "whatsapp/campaigns/contacts.html", {
        "can_manage": can_manage(request), "import_form": import_form, "opt_out_form": opt_out_form,
        "words_form": words_form, "preview": preview, "tag": tag, "contacts": contacts[:SHOWN],
        "contact_count": contacts.count(), "opt_outs": OptOut.objects.all()[:SHOWN],
        "opt_out_count": OptOut.objects.count(), "default_words": ", ".join(sorted(actions.opt_out_words())),
    }, status=status)


class _Echo:
    def write(self, value):
        return value


@never_cache
@billing_access_required
@permission_required(Perm.CAMPAIGNS_READ)
def contacts_export(request):
    """Every contact as a CSV in the import's own columns (phone, name, tags, then each custom field)."""
    keys = sorted({key for fields in AudienceContact.objects.values_list("fields", flat=True) for key in fields})
    writer = csv.writer(_Echo())

    schema_name = request.tenant.schema_name

    def rows():  # streamed after the view returned, outside the request's schema: in it again
        yield writer.writerow(["phone", "name", "tags", *keys])
        with schema_context(schema_name), transaction.atomic():
            for contact in AudienceContact.objects.order_by("pk").iterator(chunk_size=2000):
                yield writer.writerow([contact.phone, _safe(contact.name), ";".join(contact.tags),
                                       *[_safe(contact.fields.get(key, "")) for key in keys]])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="contacts.csv"'
    return response


def _safe(value):
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    value = str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _show_error(request, form, exc):
    """A domain error on the form that was posted, or as a message when the post had no form."""
    if form.is_bound:
        form.add_error(None, exc.message)
    else:
        messages.error(request, exc.message)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class TemplateForm(forms.Form):
    name = forms.CharField(max_length=100)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Text (the caption with media)",
                           help_text="Variables: {{name}}, {{first_name}}, {{phone}}, {{field.order_id}}; a default "
                                     "after a bar: {{name|friend}}.")
    variations = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}),
                                 label="Other phrasings (optional)",
                                 help_text="Separated by a line with only ---; each recipient gets one phrasing.")
    media_type = forms.ChoiceField(choices=MessageTemplate.MediaType.choices, required=False, label="Media")
    media_url = forms.CharField(max_length=2000, required=False, label="Media URL",
                                widget=forms.URLInput(attrs={"placeholder": "https://…"}))


def _variations(text):
    parts, current = [], []
    for line in text.splitlines():
        if line.strip() == "---":
            parts.append("\n".join(current))
            current = []
        else:
            current.append(line)
    parts.append("\n".join(current))
    return [p.strip() for p in parts if p.strip()]


@never_cache
@billing_access_required
@permission_required(Perm.CAMPAIGNS_READ, POST=Perm.CAMPAIGNS_MANAGE)
def templates_page(request):
    form, status = TemplateForm(), 200
    if request.method == "POST":
        if not can_manage(request):
            raise PermissionDenied("Only an owner or admin can change templates.")
        action = request.POST.get("action", "")
        try:
            if action == "create":
                form = TemplateForm(request.POST)
                if form.is_valid():
                    data = form.cleaned_data
                    template = actions.create_template(
                        request.tenant, acting_user=request.user, name=data["name"], body=data["body"],
                        variations=_variations(data["variations"]), media_type=data["media_type"] or "",
                        media_url=data["media_url"])
                    messages.success(request, f"Template “{template.name}” saved.")
                    return redirect(f"{reverse('campaign_templates')}?preview={template.pk}")
                status = 400
            elif action == "delete":
                template = get_object_or_404(MessageTemplate, pk=_int(request.POST.get("id")))
                actions.delete_template(request.tenant, template, acting_user=request.user)
                messages.success(request, f"Template “{template.name}” deleted.")
                return redirect("campaign_templates")
            else:
                messages.error(request, "Unknown action.")
                return redirect("campaign_templates")
        except DomainError as exc:
            _show_error(request, form, exc)
            status = exc.status
    preview = None
    template = MessageTemplate.objects.filter(pk=_int(request.GET.get("preview"))).first()
    contacts = list(AudienceContact.objects.all()[:200])
    if template is not None:
        contact = next((c for c in contacts if c.pk == _int(request.GET.get("contact"))), None) or (
            contacts[0] if contacts else None)
        sample = contact if contact is not None else {"phone": "+14155550123", "name": "", "fields": {}}
        preview = {"template": template, "contact": contact, **actions.preview_template(template, sample)}
    return render(request, "whatsapp/campaigns/templates.html", {
        "can_manage": can_manage(request), "form": form, "templates": MessageTemplate.objects.all(),
        "preview": preview, "contacts": contacts}, status=status)


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=120)
    template = forms.ModelChoiceField(queryset=MessageTemplate.objects.none(), empty_label=None)
    tags = forms.CharField(required=False, max_length=400, label="Contacts tagged (any of)",
                           help_text="Separated by commas. Empty with no numbers and no file: every contact.")
    phones = forms.CharField(required=False, label="And these numbers", widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="One per line, with the country code.")
    file = forms.FileField(required=False, label="And the numbers of a CSV",
                           help_text="Imported as contacts (with a tag of this campaign's own) first.")
    sessions = forms.ModelMultipleChoiceField(queryset=WhatsAppSession.objects.none(),
                                              widget=forms.CheckboxSelectMultiple, label="Send from")
    start_at = forms.DateTimeField(required=False, label="Start at (workspace time; empty: when started)",
                                   widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    quiet_start = forms.TimeField(required=False, label="Quiet from", widget=forms.TimeInput(attrs={"type": "time"}))
    quiet_end = forms.TimeField(required=False, label="Quiet until", widget=forms.TimeInput(attrs={"type": "time"}))
    min_gap_seconds = forms.IntegerField(initial=30, min_value=actions.GAP_BOUNDS[0], max_value=actions.GAP_BOUNDS[1],
                                         label="Least gap per number (s)")
    max_gap_seconds = forms.IntegerField(initial=60, min_value=actions.GAP_BOUNDS[0], max_value=actions.GAP_BOUNDS[1],
                                         label="Most gap per number (s)")
    daily_cap = forms.IntegerField(initial=200, min_value=1, max_value=actions.CAP_BOUNDS[1],
                                   label="Messages per number per day")
    cold_daily_cap = forms.IntegerField(initial=50, min_value=0, max_value=actions.CAP_BOUNDS[1],
                                        label="Of those, to contacts who never wrote first")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = MessageTemplate.objects.all()
        self.fields["sessions"].queryset = WhatsAppSession.objects.order_by("name")


@never_cache
@billing_access_required
@permission_required(Perm.CAMPAIGNS_READ, POST=Perm.CAMPAIGNS_MANAGE)
def campaigns_page(request):
    form, status = CampaignForm(), 200
    if request.method == "POST":
        if not can_manage(request):
            raise PermissionDenied("Only an owner or admin can create campaigns.")
        form = CampaignForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            tz = planning.timezone_of(request.tenant)
            try:
                tags = _split_tags(data["tags"])
                if data["file"] is not None:
                    own_tag = f"campaign-{secrets.token_hex(3)}"
                    actions.import_contacts(request.tenant, acting_user=request.user, data=data["file"].read(),
                                            add_tags=[own_tag])
                    tags.append(own_tag)
                phones = [p.strip() for p in data["phones"].splitlines() if p.strip()]
                start_at = data["start_at"]
                if start_at is not None:
                    start_at = start_at.replace(tzinfo=tz) if start_at.tzinfo is None else start_at
                campaign = actions.create_campaign(
                    request.tenant, acting_user=request.user, name=data["name"], template=data["template"].pk,
                    audience={"tags": tags, "phones": phones, "all": not tags and not phones},
                    sessions=[s.name for s in data["sessions"]], start_at=start_at, quiet_start=data["quiet_start"],
                    quiet_end=data["quiet_end"], min_gap_seconds=data["min_gap_seconds"],
                    max_gap_seconds=data["max_gap_seconds"], daily_cap=data["daily_cap"],
                    cold_daily_cap=data["cold_daily_cap"])
                messages.success(request, "Campaign saved as a draft: check the dry run, then start it.")
                return redirect("campaign_detail", campaign_id=campaign.pk)
            except DomainError as exc:
                form.add_error(None, exc.message)
                status = exc.status
        else:
            status = 400
    tenant = request.tenant
    campaigns = [(c, progress.progress(c, tenant)) for c in Campaign.objects.select_related("template")[:50]]
    return render(request, "whatsapp/campaigns/list.html", {
        "can_manage": can_manage(request), "form": form, "campaigns": campaigns,
        "has_templates": MessageTemplate.objects.exists()}, status=status)


DONE = {"start": "Campaign started.", "pause": "Campaign paused.", "resume": "Campaign resumed.",
        "cancel": "Campaign cancelled."}
VERBS = {"start": actions.start_campaign, "pause": actions.pause_campaign, "resume": actions.resume_campaign,
         "cancel": actions.cancel_campaign}


@never_cache
@billing_access_required
@permission_required(Perm.CAMPAIGNS_READ, POST=Perm.CAMPAIGNS_MANAGE)
def campaign_detail(request, campaign_id):
    campaign = get_object_or_404(Campaign.objects.select_related("template"), pk=campaign_id)
    if request.method == "POST":
        if not can_manage(request):
            raise PermissionDenied("Only an owner or admin can change campaigns.")
        verb = VERBS.get(request.POST.get("action", ""))
        if verb is None:
            messages.error(request, "Unknown action.")
        else:
            try:
                verb(request.tenant, campaign, acting_user=request.user)
                messages.success(request, DONE[request.POST["action"]])
            except DomainError as exc:
                messages.error(request, exc.message)
        return redirect("campaign_detail", campaign_id=campaign.pk)
    wanted = request.GET.get("status", "")
    if wanted not in FILTERS:
        wanted = ""
    rows = recipients_of(campaign, wanted or None)
    figures = progress.progress(campaign, request.tenant)
    return render(request, "whatsapp/campaigns/detail.html", {
        "can_manage": can_manage(request), "campaign": campaign, "figures": figures,
        "dry_run": planning.dry_run(campaign, request.tenant, timezone.now()) if campaign.status == "draft" else None,
        "recipients": [recipient_payload(r) for r in rows[:SHOWN]], "recipient_count": rows.count(),
        "filters": FILTERS, "wanted": wanted, "counts_order": progress.KEYS})


@never_cache
@billing_access_required
@permission_required(Perm.CAMPAIGNS_READ)
def campaign_recipients_export(request, campaign_id):
    """Every recipient with its state and reason, as CSV."""
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    writer = csv.writer(_Echo())
    schema_name = request.tenant.schema_name
    columns = ["phone", "name", "status", "reason", "session", "text", "queued_at", "sent_at", "delivered_at",
               "read_at", "replied_at", "opted_out_at"]

    def rows():  # streamed after the view returned: in the tenant's schema again
        yield writer.writerow(columns)
        with schema_context(schema_name), transaction.atomic():
            for recipient in recipients_of(campaign).iterator(chunk_size=2000):
                payload = recipient_payload(recipient)
                yield writer.writerow([_safe(payload[c] if payload[c] is not None else "") for c in columns])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-recipients.csv"'
    return response
