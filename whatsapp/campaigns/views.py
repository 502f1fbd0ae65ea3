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
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django_tenants.utils import schema_context

from billing.decorators import billing_access_required
from core.errors import DomainError
from core.permissions import Perm, can, permission_required

from . import actions, csvimport
from .errors import CampaignError
from .models import AudienceContact, OptOut

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
                row = OptOut.objects.filter(pk=_int(request.POST.get("id"))).first()
                if row is None:
                    raise Http404("No such opt-out")
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
                contact = AudienceContact.objects.filter(pk=_int(request.POST.get("id"))).first()
                if contact is None:
                    raise Http404("No such contact")
                actions.delete_contact(request.tenant, contact, acting_user=request.user)
                messages.success(request, f"{contact.phone} deleted.")
                return redirect("campaign_contacts")
            else:
                messages.error(request, "Unknown action.")
                return redirect("campaign_contacts")
            status = 400
        except DomainError as exc:
            form = {"preview": import_form, "opt_out": opt_out_form, "words": words_form}.get(action, import_form)
            if form.is_bound:
                form.add_error(None, exc.message)
            else:
                messages.error(request, exc.message)
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


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
