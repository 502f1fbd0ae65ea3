"""Broadcasts over the API (included under /api/v1/ by config/urls.py):

GET|POST audience-contacts, DELETE audience-contacts/{id}, POST contacts/import (preview with dry_run),
GET|POST opt-outs, DELETE opt-outs/{id} (a re-subscribe); templates and campaigns below.

The request runs in the caller's tenant schema: another tenant's ids are 404 like unknown ones. Every member
reads; owners and admins change (403 permission_denied), while the tenant may write (402).
"""
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import require_owner_or_admin
from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, StrictJSONParser, StrictSerializer, field_with_schema, paginated
from core.errors import CommonError, DomainError
from core.permissions import Perm
from core.phones import PATTERN as PHONE_PATTERN
from tenants.permissions import HasActiveTenant

from . import actions, csvimport
from .errors import CampaignError
from .models import AudienceContact, OptOut

TAG_SCHEMA = {"type": "string", "minLength": 1, "maxLength": csvimport.MAX_TAG_LENGTH, "pattern": r"^\S(.*\S)?$"}
FIELDS_SCHEMA = {"type": "object", "maxProperties": 50,
                 "propertyNames": {"pattern": csvimport.FIELD_NAME.pattern},
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


urlpatterns = [
    path("audience-contacts", AudienceContactListView.as_view(), name="api_audience_contacts"),
    path("audience-contacts/<int:pk>", AudienceContactDetailView.as_view(), name="api_audience_contact"),
    path("contacts/import", ContactImportView.as_view(), name="api_contacts_import"),
    path("opt-outs", OptOutListView.as_view(), name="api_opt_outs"),
    path("opt-outs/<int:pk>", OptOutDetailView.as_view(), name="api_opt_out"),
]
