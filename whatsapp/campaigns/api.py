"""Broadcasts over the API (included under /api/v1/ by config/urls.py):

GET|POST audience-contacts, DELETE audience-contacts/{id}, POST contacts/import (preview with dry_run),
GET|POST opt-outs, DELETE opt-outs/{id} (a re-subscribe); templates and campaigns below.

The request runs in the caller's tenant schema: another tenant's ids are 404 like unknown ones. Every member
reads; owners and admins change (403 permission_denied), while the tenant may write (402).
"""
import datetime
import re

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import require_owner_or_admin
from billing.permissions import CanWrite
from core.api import (
    VISIBLE_CHAR,
    PAGE_PARAMETERS,
    StrictJSONParser,
    StrictSerializer,
    choice_param,
    field_with_schema,
    paginated,
    whole_number_param,
)
from core.errors import CommonError, DomainError
from core.permissions import Perm
from core.phones import PATTERN as PHONE_PATTERN
from core.schema import PROPERTY_NAMES
from tenants.permissions import HasActiveTenant

from . import actions, csvimport, planning, progress, rendering
from .selectors import FILTERS, recipient_payload, recipients_of
from .errors import CampaignError
from .models import AudienceContact, Campaign, MessageTemplate, OptOut

TAG_SCHEMA = {"type": "string", "minLength": 1, "maxLength": csvimport.MAX_TAG_LENGTH, "pattern": r"^\S(.*\S)?$"}
FIELDS_SCHEMA = {"type": "object", "maxProperties": 50,
                 PROPERTY_NAMES: {"pattern": csvimport.FIELD_NAME.pattern},
                 "additionalProperties": {"type": "string", "maxLength": csvimport.MAX_FIELD_VALUE}}


def _iso(value):
    return value.isoformat() if value else None


def _tenant(request):
    return request._request.tenant


def _bad_body(code, serializer):
    field, problems = next(iter(serializer.errors.items()))
    problem = problems[0] if isinstance(problems, list) else problems
    raise DomainError(CommonError.VALIDATION_ERROR if code is None else code, f"{field}: {problem}",
                      serializer.errors)


class BroadcastView(APIView):
    required_permissions = {"GET": Perm.CAMPAIGNS_READ, "POST": Perm.CAMPAIGNS_MANAGE,
                            "PATCH": Perm.CAMPAIGNS_MANAGE, "PUT": Perm.CAMPAIGNS_MANAGE,
                            "DELETE": Perm.CAMPAIGNS_MANAGE}
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]
    parser_classes = [StrictJSONParser]


# --- contacts -----------------------------------------------------------------------------------------------


def contact_payload(contact):
    return {"id": contact.pk, "phone": contact.phone, "name": contact.name, "tags": contact.tags,
            "fields": contact.fields, "created_at": _iso(contact.created_at), "updated_at": _iso(contact.updated_at)}


class AudienceContactSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField()
    name = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    fields = serializers.DictField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ContactCreateSerializer(StrictSerializer):
    phone = field_with_schema(serializers.CharField, {"type": "string", "pattern": PHONE_PATTERN},
                              help_text="E.164, e.g. +14155550123 (digits with the country code are read as one)")
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    tags = field_with_schema(serializers.ListField, {"type": "array", "maxItems": csvimport.MAX_TAGS,
                                                     "items": TAG_SCHEMA}, required=False, default=list)
    fields = field_with_schema(serializers.DictField, FIELDS_SCHEMA, required=False, default=dict)


class AudienceContactListView(BroadcastView):
    @extend_schema(tags=["broadcasts"], parameters=[
        *PAGE_PARAMETERS, OpenApiParameter("tag", {"type": "string", "maxLength": csvimport.MAX_TAG_LENGTH},
                                           description="Only contacts with this tag")],
        responses=AudienceContactSerializer(many=True))
    def get(self, request):
        """The audience's contacts (those campaigns go to), by name; ?tag= keeps one tag's."""
        contacts = AudienceContact.objects.all()
        tag = request.query_params.get("tag")
        if tag is not None and len(tag) > csvimport.MAX_TAG_LENGTH:
            raise DomainError(CommonError.VALIDATION_ERROR, f"tag: at most {csvimport.MAX_TAG_LENGTH} characters.",
                              {"tag": [f"At most {csvimport.MAX_TAG_LENGTH} characters."]})
        if tag is not None:
            contacts = contacts.filter(tags__contains=[tag.strip().lower()])
        return paginated(request, self, contacts, contact_payload)

    @extend_schema(tags=["broadcasts"], request=ContactCreateSerializer, responses={
        201: AudienceContactSerializer, 409: OpenApiResponse(description="contact_exists")})
    def post(self, request):
        """Add a contact (owner or admin): 400 invalid_phone, invalid_contact; 409 contact_exists."""
        require_owner_or_admin(request, "add contacts")
        serializer = ContactCreateSerializer(data=request.data)
        if not serializer.is_valid():
            _bad_body(CampaignError.INVALID_PHONE if "phone" in serializer.errors else None, serializer)
        contact = actions.create_contact(_tenant(request), acting_user=request.user, **serializer.validated_data)
        return Response(contact_payload(contact), status=status.HTTP_201_CREATED)


class AudienceContactDetailView(BroadcastView):
    @extend_schema(tags=["broadcasts"], responses=AudienceContactSerializer)
    def get(self, request, pk):
        """One contact."""
        contact = AudienceContact.objects.filter(pk=pk).first()
        if contact is None:
            raise exceptions.NotFound("No such contact.")
        return Response(contact_payload(contact))

    @extend_schema(tags=["broadcasts"], responses={204: None})
    def delete(self, request, pk):
        """Delete a contact (owner or admin); campaigns already planned keep their recipient rows."""
        contact = AudienceContact.objects.filter(pk=pk).first()
        if contact is None:
            raise exceptions.NotFound("No such contact.")
        require_owner_or_admin(request, "delete contacts")
        actions.delete_contact(_tenant(request), contact, acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImportSerializer(StrictSerializer):
    csv = field_with_schema(serializers.CharField, {"type": "string", "minLength": 1},
                            trim_whitespace=False,
                            help_text="The CSV's text (UTF-8): a header row with a phone column, then name, tags "
                                      "(separated by ; or |) and any other column as a custom field.")
    default_country = field_with_schema(
        serializers.CharField, {"type": "string", "pattern": "^[A-Za-z]{2}$"}, required=False,
        help_text="ISO 3166 code (ID, US, DE…) for numbers written without their country code")
    tags = field_with_schema(serializers.ListField, {"type": "array", "maxItems": csvimport.MAX_TAGS,
                                                     "items": TAG_SCHEMA}, required=False, default=list,
                             help_text="Tags added to every imported contact")
    dry_run = serializers.BooleanField(required=False, default=False,
                                       help_text="true: the preview (the report, nothing stored)")


ImportReportSerializer = inline_serializer("ContactImportReport", {
    "dry_run": serializers.BooleanField(), "rows": serializers.IntegerField(), "valid": serializers.IntegerField(),
    "new": serializers.IntegerField(), "updated": serializers.IntegerField(),
    "rejected_count": serializers.IntegerField(),
    "rejected": inline_serializer("ContactImportRejected", {
        "row": serializers.IntegerField(), "phone": serializers.CharField(), "reason": serializers.CharField()},
        many=True),
    "preview": inline_serializer("ContactImportRow", {
        "row": serializers.IntegerField(), "phone": serializers.CharField(), "name": serializers.CharField(),
        "tags": serializers.ListField(child=serializers.CharField()),
        "fields": serializers.DictField(child=serializers.CharField())}, many=True)})


class ContactImportView(BroadcastView):
    @extend_schema(tags=["broadcasts"], request=ImportSerializer, responses={
        200: ImportReportSerializer,
        400: OpenApiResponse(description="invalid_encoding, missing_phone_column, invalid_csv"),
        413: OpenApiResponse(description="csv_too_large")})
    def post(self, request):
        """Import contacts from a CSV (owner or admin). Bad or repeated numbers are rejected row by row (the
        report says which and why); a number already known is updated. dry_run=true previews without storing."""
        require_owner_or_admin(request, "import contacts")
        serializer = ImportSerializer(data=request.data)
        if not serializer.is_valid():
            _bad_body(None, serializer)
        data = serializer.validated_data
        report = actions.import_contacts(_tenant(request), acting_user=request.user,
                                         data=data["csv"].encode("utf-8"),
                                         default_country=data.get("default_country"), add_tags=data["tags"],
                                         dry_run=data["dry_run"])
        return Response(report)


# --- opt-outs -----------------------------------------------------------------------------------------------


def opt_out_payload(row):
    return {"id": row.pk, "phone": row.phone, "source": row.source, "keyword": row.keyword,
            "confirmed_at": _iso(row.confirmed_at), "created_at": _iso(row.created_at)}


class OptOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField()
    source = serializers.ChoiceField(choices=OptOut.Source.choices)
    keyword = serializers.CharField()
    confirmed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class OptOutCreateSerializer(StrictSerializer):
    phone = field_with_schema(serializers.CharField, {"type": "string", "pattern": PHONE_PATTERN},
                              help_text="E.164, e.g. +14155550123")


class OptOutListView(BroadcastView):
    @extend_schema(tags=["broadcasts"], parameters=PAGE_PARAMETERS, responses=OptOutSerializer(many=True))
    def get(self, request):
        """The workspace's opt-out list, latest first: numbers no campaign sends to."""
        return paginated(request, self, OptOut.objects.all(), opt_out_payload)

    @extend_schema(tags=["broadcasts"], request=OptOutCreateSerializer, responses={
        201: OptOutSerializer, 409: OpenApiResponse(description="already_opted_out")})
    def post(self, request):
        """Put a number on the opt-out list (owner or admin): 400 invalid_phone, 409 already_opted_out."""
        require_owner_or_admin(request, "change the opt-out list")
        serializer = OptOutCreateSerializer(data=request.data)
        if not serializer.is_valid():
            _bad_body(CampaignError.INVALID_PHONE, serializer)
        row = actions.add_opt_out(_tenant(request), acting_user=request.user,
                                  phone=serializer.validated_data["phone"])
        return Response(opt_out_payload(row), status=status.HTTP_201_CREATED)


class OptOutDetailView(BroadcastView):
    @extend_schema(tags=["broadcasts"], responses={204: None})
    def delete(self, request, pk):
        """Re-subscribe a number: take it off the opt-out list (owner or admin)."""
        row = OptOut.objects.filter(pk=pk).first()
        if row is None:
            raise exceptions.NotFound("No such opt-out.")
        require_owner_or_admin(request, "change the opt-out list")
        actions.resubscribe(_tenant(request), row, acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- templates ----------------------------------------------------------------------------------------------


def template_payload(template):
    return {"id": template.pk, "name": template.name, "body": template.body, "variations": template.variations,
            "defaults": template.defaults, "media_type": template.media_type, "media_url": template.media_url,
            "variables": sorted({v for text in rendering.texts_of(template) for v in rendering.variables_of(text)}),
            "created_at": _iso(template.created_at), "updated_at": _iso(template.updated_at)}


class TemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    body = serializers.CharField()
    variations = serializers.ListField(child=serializers.CharField())
    defaults = serializers.DictField(child=serializers.CharField())
    media_type = serializers.ChoiceField(choices=MessageTemplate.MediaType.choices)
    media_url = serializers.CharField()
    variables = serializers.ListField(child=serializers.CharField(), help_text="The variables the texts use")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


TEXT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": actions.MAX_TEXT, "pattern": VISIBLE_CHAR}


class TemplateWriteSerializer(StrictSerializer):
    name = field_with_schema(serializers.CharField, {"type": "string", "minLength": 1, "maxLength": 100,
                                                     "pattern": VISIBLE_CHAR}, trim_whitespace=False)
    body = field_with_schema(serializers.CharField, TEXT_SCHEMA, trim_whitespace=False,
                             help_text="The text (the caption with media): {{name}}, {{first_name}}, {{phone}}, "
                                       "{{field.<custom field>}}, {{name|default}}")
    variations = field_with_schema(serializers.ListField, {"type": "array", "maxItems": rendering.MAX_VARIATIONS - 1,
                                                           "items": TEXT_SCHEMA}, required=False,
                                   help_text="Other phrasings; each recipient gets one of body and these")
    defaults = field_with_schema(serializers.DictField, {
        "type": "object", "maxProperties": 50,
        "additionalProperties": {"type": "string", "maxLength": rendering.MAX_DEFAULT}}, required=False,
        help_text='Defaults for empty values, e.g. {"name": "friend", "field.city": "your city"}')
    media_type = serializers.ChoiceField(choices=MessageTemplate.MediaType.choices, required=False)
    media_url = field_with_schema(serializers.CharField, {"type": "string", "maxLength": 2000}, required=False,
                                  allow_blank=True, trim_whitespace=False,
                                  help_text="image/video/document: its public http(s) URL")


class TemplatePatchSerializer(TemplateWriteSerializer):
    """PATCH /templates/{id}: any of the fields (what _template_body(partial=True) takes), so the schema says so."""

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            field.required = False
        return fields


def _template_body(request, partial=False):
    if not int(request.META.get("CONTENT_LENGTH") or 0):
        raise DomainError(CommonError.VALIDATION_ERROR, "Send the template's fields as a JSON object.")
    serializer = TemplateWriteSerializer(data=request.data, partial=partial)
    if not serializer.is_valid():
        _bad_body(None, serializer)
    return dict(serializer.validated_data)


def _template(pk):
    template = MessageTemplate.objects.filter(pk=pk).first()
    if template is None:
        raise exceptions.NotFound("No such template.")
    return template


class TemplateListView(BroadcastView):
    @extend_schema(tags=["broadcasts"], parameters=PAGE_PARAMETERS, responses=TemplateSerializer(many=True))
    def get(self, request):
        """Message templates, by name."""
        return paginated(request, self, MessageTemplate.objects.all(), template_payload)

    @extend_schema(tags=["broadcasts"], request=TemplateWriteSerializer, responses={
        201: TemplateSerializer, 409: OpenApiResponse(description="template_exists")})
    def post(self, request):
        """Create a template (owner or admin): 400 invalid_template, unknown_variable; 409 template_exists."""
        require_owner_or_admin(request, "create templates")
        template = actions.create_template(_tenant(request), acting_user=request.user, **_template_body(request))
        return Response(template_payload(template), status=status.HTTP_201_CREATED)


class TemplateDetailView(BroadcastView):
    @extend_schema(tags=["broadcasts"], responses=TemplateSerializer)
    def get(self, request, pk):
        """One template."""
        return Response(template_payload(_template(pk)))

    @extend_schema(tags=["broadcasts"], request=TemplatePatchSerializer, responses={
        200: TemplateSerializer, 409: OpenApiResponse(description="template_exists")})
    def patch(self, request, pk):
        """Change a template (owner or admin); campaigns already planned keep the texts they rendered."""
        template = _template(pk)
        require_owner_or_admin(request, "change templates")
        if not int(request.META.get("CONTENT_LENGTH") or 0):
            return Response(template_payload(template))  # the schema's body is optional: nothing to change
        template = actions.update_template(_tenant(request), template, acting_user=request.user,
                                           changes=_template_body(request, partial=True))
        return Response(template_payload(template))

    @extend_schema(tags=["broadcasts"], responses={204: None, 409: OpenApiResponse(description="template_in_use")})
    def delete(self, request, pk):
        """Delete a template no campaign uses (owner or admin): 409 template_in_use."""
        template = _template(pk)
        require_owner_or_admin(request, "delete templates")
        actions.delete_template(_tenant(request), template, acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplatePreviewSerializer(serializers.Serializer):
    variables = serializers.DictField(child=serializers.CharField())
    chosen = serializers.IntegerField(help_text="The variation this contact gets in a campaign (0 = body)")
    texts = serializers.ListField(child=serializers.CharField(), help_text="body and every variation, rendered")


class TemplatePreviewView(BroadcastView):
    @extend_schema(tags=["broadcasts"], parameters=[
        OpenApiParameter("contact", {"type": "integer", "minimum": 1, "maximum": 2147483647}, required=True,
                         description="The audience contact to render it for")],
        responses=TemplatePreviewSerializer)
    def get(self, request, pk):
        """The template rendered for one of the audience's contacts, every variation (404 for an unknown contact)."""
        template = _template(pk)
        contact_id = whole_number_param(request, "contact", low=1, high=2147483647, default=None)
        if contact_id is None:
            raise DomainError(CommonError.VALIDATION_ERROR, "contact: the id of the contact to preview it for.",
                              {"contact": ["Required."]})
        contact = AudienceContact.objects.filter(pk=contact_id).first()
        if contact is None:
            raise exceptions.NotFound("No such contact.")
        return Response(actions.preview_template(template, contact))


# --- campaigns ----------------------------------------------------------------------------------------------

C = Campaign.Status
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _hhmm(value):
    return value.strftime("%H:%M") if value else None


def campaign_payload(campaign, tenant, figures=None):
    figures = figures or progress.progress(campaign, tenant)
    return {
        "id": campaign.pk, "name": campaign.name, "status": campaign.status, "pause_reason": campaign.pause_reason,
        "template": campaign.template_id, "audience": {"tags": campaign.audience.get("tags", []),
                                                       "phones": campaign.audience.get("phones", []),
                                                       "all": bool(campaign.audience.get("all"))},
        "sessions": sorted(s.name for s in campaign.sessions.all()),
        "start_at": _iso(campaign.start_at), "quiet_start": _hhmm(campaign.quiet_start),
        "quiet_end": _hhmm(campaign.quiet_end), "min_gap_seconds": campaign.min_gap_seconds,
        "max_gap_seconds": campaign.max_gap_seconds, "daily_cap": campaign.daily_cap,
        "cold_daily_cap": campaign.cold_daily_cap, "progress_every": campaign.progress_every,
        "created_at": _iso(campaign.created_at), "started_at": _iso(campaign.started_at),
        "finished_at": _iso(campaign.finished_at),
        "progress": {k: figures[k] for k in ("total", "counts", "estimated_finish", "sessions")},
    }


class CountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    queued = serializers.IntegerField(help_text="In a number's sending queue")
    sent = serializers.IntegerField(help_text="Sent, delivered or read")
    delivered = serializers.IntegerField(help_text="Delivered or read")
    read = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Opted out or blocked after planning")
    cancelled = serializers.IntegerField()
    replied = serializers.IntegerField()
    opted_out = serializers.IntegerField()


class SenderProgressSerializer(serializers.Serializer):
    session = serializers.CharField()
    connected = serializers.BooleanField()
    sent_today = serializers.IntegerField()
    cold_today = serializers.IntegerField()
    next_send_at = serializers.DateTimeField(allow_null=True)
    counts = CountsSerializer()


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Recipients planned")
    counts = CountsSerializer()
    estimated_finish = serializers.DateTimeField(allow_null=True)
    sessions = SenderProgressSerializer(many=True)


class AudienceSerializer(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField())
    phones = serializers.ListField(child=serializers.CharField())
    all = serializers.BooleanField()


class CampaignSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=C.choices)
    pause_reason = serializers.CharField()
    template = serializers.IntegerField()
    audience = AudienceSerializer()
    sessions = serializers.ListField(child=serializers.CharField())
    start_at = serializers.DateTimeField(allow_null=True)
    quiet_start = serializers.CharField(allow_null=True)
    quiet_end = serializers.CharField(allow_null=True)
    min_gap_seconds = serializers.IntegerField()
    max_gap_seconds = serializers.IntegerField()
    daily_cap = serializers.IntegerField()
    cold_daily_cap = serializers.IntegerField()
    progress_every = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    progress = ProgressSerializer()


class AudienceWriteSerializer(StrictSerializer):
    tags = field_with_schema(serializers.ListField, {"type": "array", "maxItems": csvimport.MAX_TAGS,
                                                     "items": TAG_SCHEMA}, required=False,
                             help_text="Contacts with any of these tags")
    phones = field_with_schema(serializers.ListField, {"type": "array", "maxItems": actions.MAX_PHONES,
                                                       "items": {"type": "string", "pattern": PHONE_PATTERN}},
                               required=False, help_text="Numbers, contacts or not (E.164)")
    all = serializers.BooleanField(required=False, help_text="Every contact")


def _int_field(low, high, help_text):
    return serializers.IntegerField(required=False, min_value=low, max_value=high, help_text=help_text)


class CampaignCreateSerializer(StrictSerializer):
    name = field_with_schema(serializers.CharField, {"type": "string", "minLength": 1, "maxLength": 120,
                                                     "pattern": VISIBLE_CHAR}, trim_whitespace=False)
    template = serializers.IntegerField(min_value=1, max_value=2147483647, help_text="The template's id")
    # tags, phones, all: together they are who it goes to, minus the opt-out list and blocked numbers. (No
    # help_text: drf-spectacular would wrap the reference in allOf, which the schema hook does not close.)
    audience = AudienceWriteSerializer()
    sessions = field_with_schema(serializers.ListField, {"type": "array", "minItems": 1, "maxItems": 20,
                                                         "items": {"type": "string", "pattern": r"^[a-zA-Z0-9_-]{1,64}$"}},
                                 help_text="The numbers (session names) it goes from, in rotation")
    start_at = serializers.DateTimeField(required=False, allow_null=True,
                                         help_text="When it starts (started now when empty)")
    quiet_start = field_with_schema(serializers.CharField, {"type": "string", "pattern": TIME_PATTERN},
                                    required=False, allow_null=True,
                                    help_text="HH:MM, the workspace's time zone: nothing is sent from then…")
    quiet_end = field_with_schema(serializers.CharField, {"type": "string", "pattern": TIME_PATTERN},
                                  required=False, allow_null=True, help_text="…until then (HH:MM)")
    min_gap_seconds = _int_field(*actions.GAP_BOUNDS, "Least gap between two messages of one number (default 30)")
    max_gap_seconds = _int_field(*actions.GAP_BOUNDS, "Most gap (default 60); each gap is random in between")
    daily_cap = _int_field(*actions.CAP_BOUNDS, "Messages per number per day (default 200)")
    cold_daily_cap = _int_field(0, actions.CAP_BOUNDS[1], "Of those, to contacts who never wrote first (default 50)")
    progress_every = _int_field(1, 100_000, "A campaign.progress webhook every this many sent (default 100)")
    start = serializers.BooleanField(required=False, default=False,
                                     help_text="true: start it now (or schedule it at start_at); else a draft")


def _time(value):
    if value is None:
        return None
    if not re.match(TIME_PATTERN, value):
        raise DomainError(CampaignError.INVALID_CAMPAIGN, "quiet_start/quiet_end: HH:MM.")
    return datetime.time(int(value[:2]), int(value[3:]))


def _campaign(pk):
    campaign = Campaign.objects.filter(pk=pk).select_related("template").first()
    if campaign is None:
        raise exceptions.NotFound("No such campaign.")
    return campaign


class CampaignListView(BroadcastView):
    @extend_schema(tags=["broadcasts"], parameters=PAGE_PARAMETERS, responses=CampaignSerializer(many=True))
    def get(self, request):
        """Campaigns, latest first, with their figures."""
        tenant = _tenant(request)
        return paginated(request, self, Campaign.objects.select_related("template").prefetch_related("sessions"),
                         lambda c: campaign_payload(c, tenant))

    @extend_schema(tags=["broadcasts"], request=CampaignCreateSerializer, responses={
        201: CampaignSerializer, 402: OpenApiResponse(description="campaign_limit_reached, too_many_recipients"),
        409: OpenApiResponse(description="session_not_connected")})
    def post(self, request):
        """Create a campaign (owner or admin): a draft, or started at once with start=true. Codes: 400
        unknown_template, unknown_session, invalid_audience, invalid_campaign, empty_audience; 402
        campaign_limit_reached, too_many_recipients; 409 session_not_connected."""
        require_owner_or_admin(request, "create campaigns")
        serializer = CampaignCreateSerializer(data=request.data)
        if not serializer.is_valid():
            _bad_body(None, serializer)
        data = dict(serializer.validated_data)
        audience = dict(data.pop("audience"))
        for key in ("quiet_start", "quiet_end"):
            if key in data:
                data[key] = _time(data[key])
        campaign = actions.create_campaign(_tenant(request), acting_user=request.user, audience=audience, **data)
        return Response(campaign_payload(_campaign(campaign.pk), _tenant(request)), status=status.HTTP_201_CREATED)


class CampaignDetailView(BroadcastView):
    @extend_schema(tags=["broadcasts"], responses=CampaignSerializer)
    def get(self, request, pk):
        """One campaign with its figures: per status, per number, and the estimated finish."""
        return Response(campaign_payload(_campaign(pk), _tenant(request)))


def _campaign_verb(verb, act, doing):
    class CampaignVerbView(BroadcastView):
        @extend_schema(tags=["broadcasts"], request=None, operation_id=f"v1_campaigns_{verb}",
                       responses={200: CampaignSerializer,
                                  409: OpenApiResponse(description="campaign_state, campaign_not_startable, "
                                                                   "session_not_connected")})
        def post(self, request, pk):
            campaign = _campaign(pk)
            require_owner_or_admin(request, doing)
            act(_tenant(request), campaign, acting_user=request.user)
            return Response(campaign_payload(_campaign(pk), _tenant(request)))

    CampaignVerbView.post.__doc__ = {
        "start": "Start a draft (owner or admin): its recipients are planned now. 409 campaign_not_startable, "
                 "session_not_connected; 400 empty_audience; 402 too_many_recipients.",
        "pause": "Pause a running or scheduled campaign (owner or admin); what a number already queued still goes.",
        "resume": "Resume a paused campaign (owner or admin).",
        "cancel": "Cancel a campaign for good (owner or admin): recipients not queued yet are cancelled.",
    }[verb]
    CampaignVerbView.__name__ = f"Campaign{verb.title()}View"
    return CampaignVerbView.as_view()


class DryRunSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Recipients, opted-out and blocked numbers taken out")
    cold = serializers.IntegerField(help_text="Of those, contacts who never wrote first")
    over_limit = serializers.BooleanField()
    max_recipients = serializers.IntegerField()
    sessions = serializers.IntegerField()
    sample = inline_serializer("CampaignSampleMessage", {
        "phone": serializers.CharField(), "name": serializers.CharField(), "variation": serializers.IntegerField(),
        "text": serializers.CharField()}, many=True)
    estimated_finish = serializers.DateTimeField(allow_null=True)


class CampaignDryRunView(BroadcastView):
    @extend_schema(tags=["broadcasts"], responses=DryRunSerializer)
    def get(self, request, pk):
        """What starting it would do, nothing written: the count, the first rendered messages and the estimated
        finish (pacing, caps and quiet hours counted)."""
        campaign = _campaign(pk)
        return Response(planning.dry_run(campaign, _tenant(request), timezone.now()))


class RecipientSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=[(s, s) for s in progress.STATUSES])
    reason = serializers.CharField(help_text="Why it was skipped or failed")
    session = serializers.CharField(allow_null=True)
    message_id = serializers.IntegerField(allow_null=True)
    text = serializers.CharField()
    variation = serializers.IntegerField()
    cold = serializers.BooleanField()
    queued_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    replied_at = serializers.DateTimeField(allow_null=True)
    opted_out_at = serializers.DateTimeField(allow_null=True)


class CampaignRecipientsView(BroadcastView):
    @extend_schema(tags=["broadcasts"], parameters=[
        *PAGE_PARAMETERS, OpenApiParameter("status", {"type": "string", "enum": list(FILTERS)},
                                           description="Only these (sent, delivered: cumulative)")],
        responses=RecipientSerializer(many=True))
    def get(self, request, pk):
        """The campaign's recipients with their state and reasons, in planning order."""
        campaign = _campaign(pk)
        wanted = choice_param(request, "status", FILTERS, CommonError.VALIDATION_ERROR)
        return paginated(request, self, recipients_of(campaign, wanted), recipient_payload)


urlpatterns = [
    path("audience-contacts", AudienceContactListView.as_view(), name="api_audience_contacts"),
    path("audience-contacts/<int:pk>", AudienceContactDetailView.as_view(), name="api_audience_contact"),
    path("contacts/import", ContactImportView.as_view(), name="api_contacts_import"),
    path("opt-outs", OptOutListView.as_view(), name="api_opt_outs"),
    path("opt-outs/<int:pk>", OptOutDetailView.as_view(), name="api_opt_out"),
    path("templates", TemplateListView.as_view(), name="api_templates"),
    path("templates/<int:pk>", TemplateDetailView.as_view(), name="api_template"),
    path("templates/<int:pk>/preview", TemplatePreviewView.as_view(), name="api_template_preview"),
    path("campaigns", CampaignListView.as_view(), name="api_campaigns"),
    path("campaigns/<int:pk>", CampaignDetailView.as_view(), name="api_campaign"),
    path("campaigns/<int:pk>/dry-run", CampaignDryRunView.as_view(), name="api_campaign_dry_run"),
    path("campaigns/<int:pk>/recipients", CampaignRecipientsView.as_view(), name="api_campaign_recipients"),
    *[path(f"campaigns/<int:pk>/{verb}", _campaign_verb(verb, act, doing), name=f"api_campaign_{verb}")
      for verb, act, doing in (("start", actions.start_campaign, "start campaigns"),
                               ("pause", actions.pause_campaign, "pause campaigns"),
                               ("resume", actions.resume_campaign, "resume campaigns"),
                               ("cancel", actions.cancel_campaign, "cancel campaigns"))],
]
