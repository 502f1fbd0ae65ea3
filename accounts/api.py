from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.entitlements import access_for, limits_for, plan_of, subscription_of
from billing.permissions import CanWrite
from core.api import (
    PAGE_PARAMETERS,
    PageLimitPagination,
    StrictModelSerializer,
    StrictSerializer,
    choice_param,
    paginated,
)
from core.errors import CommonError, DomainError
from core.permissions import Perm, Role, Scope, require
from tenants import api as tenants_api
from tenants.models import Tenant
from tenants.permissions import HasActiveTenant
from tenants.serializers import PlanSerializer, TenantCreateSerializer, TenantSerializer

from . import members
from .actions import create_api_key, create_tenant, revoke_api_key, rotate_api_key
from .errors import MemberError
from .models import MAX_ROTATION_OVERLAP_HOURS, ApiKey, Invitation, Membership, two_factor_users


def require_owner_or_admin(request, doing):
    """403 permission_denied unless the principal's role may manage the workspace (core.permissions). Kept for
    callers written before the permission table; new views declare `required_permission` instead."""
    require(getattr(request._request, "membership", None), Perm.SETTINGS_MANAGE)


def _billing_summary(tenant):
    subscription = subscription_of(tenant)
    access = access_for(tenant)
    return {"status": subscription.status if subscription else None, "access": access.level,
            "message": access.message or None}


class MeView(APIView):
    required_permission = Perm.SIGNED_IN

    @extend_schema(responses=inline_serializer("Me", {
        "user": inline_serializer("MeUser", {"id": serializers.IntegerField(), "email": serializers.EmailField(),
                                             "full_name": serializers.CharField(),
                                             "is_platform_admin": serializers.BooleanField()}),
        "tenant": inline_serializer("MeTenant", {"id": serializers.IntegerField(), "name": serializers.CharField(),
                                                 "slug": serializers.CharField(), "status": serializers.CharField()},
                                    allow_null=True),
        "role": serializers.CharField(allow_null=True),
        "plan": PlanSerializer(allow_null=True),
        "limits": serializers.DictField(allow_null=True),
        "billing": serializers.DictField(allow_null=True),
        "trial_ends_at": serializers.DateTimeField(allow_null=True),
        "trial_days_left": serializers.IntegerField(allow_null=True),
    }))
    def get(self, request):
        user = request.user
        tenant = getattr(request._request, "tenant", None)
        if tenant is not None or not user.is_platform_admin:
            HasActiveTenant().has_permission(request, self)
        membership = getattr(request._request, "membership", None)
        return Response({
            "user": {"id": user.pk, "email": user.email, "full_name": user.full_name,
                     "is_platform_admin": user.is_platform_admin},
            "tenant": {"id": tenant.pk, "name": tenant.name, "slug": tenant.slug, "status": tenant.status}
            if tenant else None,
            "role": membership.role if membership else None,
            "plan": PlanSerializer(plan_of(tenant)).data if tenant and plan_of(tenant) else None,
            "limits": limits_for(tenant) if tenant else None,
            "billing": _billing_summary(tenant) if tenant else None,
            "trial_ends_at": tenant.trial_ends_at if tenant else None,
            "trial_days_left": tenant.trial_days_left() if tenant else None,
        })


API_KEY_STATUSES = ["active", "rotated", "expired", "revoked"]


class ApiKeySerializer(StrictModelSerializer):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices))
    status = serializers.ChoiceField(choices=API_KEY_STATUSES, help_text=(
        "rotated: replaced by a newer key (replaced_by) and still working until expires_at, the overlap's end."))

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scopes", "expires_at", "status", "replaced_by", "created_at",
                  "last_used_at", "revoked_at"]


SCOPES_HELP = ("What the key may be used for, within its user's role: messages:send (send, reply, record events), "
               "read (every read), manage (change settings, sessions, webhooks, keys, members). Default: all.")


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=80)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), min_length=1,
                                   max_length=len(Scope.choices), required=False, help_text=SCOPES_HELP)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text=(
        "When the key stops working (401 api_key_expired); in the future. Null or missing: never."))


class ApiKeyRotateSerializer(StrictSerializer):
    overlap_hours = serializers.IntegerField(min_value=0, max_value=MAX_ROTATION_OVERLAP_HOURS, default=24,
                                             help_text="How long the old key keeps working (0: it stops now).")


NEW_KEY_FIELDS = {
    "id": serializers.IntegerField(), "name": serializers.CharField(), "prefix": serializers.CharField(),
    "scopes": serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices)),
    "expires_at": serializers.DateTimeField(allow_null=True),
    "key": serializers.CharField(help_text="Shown once; only its hash is stored."),
}


def new_key_payload(key, raw):
    return {"id": key.pk, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
            "expires_at": key.expires_at, "key": raw}


class ApiKeyListView(APIView):
    """The caller's own keys in the current tenant."""
    required_permission = Perm.API_KEYS_MANAGE

    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]

    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request):

        keys = ApiKey.objects.filter(user=request.user, tenant=request._request.tenant)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: inline_serializer("NewApiKey", NEW_KEY_FIELDS)})
    def post(self, request):
        """Make a key: shown once in the answer. A key never does more than your role allows, whatever its scopes."""
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = create_api_key(user=request.user, tenant=request._request.tenant, **serializer.validated_data)
        return Response(new_key_payload(key, raw), status=201)


class ApiKeyDetailView(APIView):
    required_permission = Perm.API_KEYS_REVOKE_OWN
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        """Revoke one of your keys (allowed while read-only: taking access away is always possible)."""
        key = get_object_or_404(ApiKey, pk=pk, user=request.user, tenant=request._request.tenant)
        revoke_api_key(key, acting_user=request.user)
        return Response(status=204)


class ApiKeyRotateView(APIView):
    required_permission = Perm.API_KEYS_MANAGE
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]

    @extend_schema(request=ApiKeyRotateSerializer, responses={
        201: inline_serializer("RotatedApiKey", {**NEW_KEY_FIELDS, "replaces": inline_serializer("ReplacedApiKey", {
            "id": serializers.IntegerField(), "prefix": serializers.CharField(),
            "expires_at": serializers.DateTimeField(help_text="When the old key stops working.")})}),
        409: OpenApiResponse(description="api_key_not_active: the key is revoked, expired or rotated already")})
    def post(self, request, pk):
        """Rotate one of your keys: a new secret (shown once) with the same name, scopes and expiry; the old key keeps
        working for overlap_hours, then answers 401 api_key_expired."""
        key = get_object_or_404(ApiKey, pk=pk, user=request.user, tenant=request._request.tenant)
        serializer = ApiKeyRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        new_key, raw = rotate_api_key(key, acting_user=request.user, **serializer.validated_data)
        key.refresh_from_db()
        return Response({**new_key_payload(new_key, raw),
                         "replaces": {"id": key.pk, "prefix": key.prefix, "expires_at": key.expires_at}}, status=201)


class TenantListView(tenants_api.TenantListView):
    """GET /api/v1/tenants lists (tenants.api); POST opens a tenant with its owner, whose account is made here."""

    @extend_schema(request=TenantCreateSerializer, responses={201: TenantSerializer})
    def post(self, request):
        serializer = TenantCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant = create_tenant(acting_user=request.user, **serializer.validated_data)
        return Response(TenantSerializer(Tenant.objects.get(pk=tenant.pk)).data, status=201)


# --- the team: members and invitations ------------------------------------------------------------------------------

class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The membership's id (the {id} of /members/{id}).")
    user_id = serializers.IntegerField()
    email = serializers.EmailField()
    full_name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    two_factor = serializers.BooleanField(help_text="Whether the member signs in with a second factor.")
    last_login = serializers.DateTimeField(allow_null=True)
    joined_at = serializers.DateTimeField()


class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    status = serializers.ChoiceField(choices=["pending", "accepted", "revoked", "expired"])
    invited_by = serializers.EmailField(allow_null=True)
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()


INVITABLE = members.INVITABLE_CHOICES


class InviteSerializer(StrictSerializer):
    email = serializers.CharField(max_length=254, help_text="Who to invite; they get an email with a link.")
    role = serializers.ChoiceField(choices=INVITABLE)


class RoleChangeSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=INVITABLE)


def member_payload(membership, with_two_factor):
    user = membership.user
    return {"id": membership.pk, "user_id": user.pk, "email": user.email, "full_name": user.full_name,
            "role": membership.role, "two_factor": user.pk in with_two_factor, "last_login": user.last_login,
            "joined_at": membership.created_at}


def invitation_payload(invitation):
    return {"id": invitation.pk, "email": invitation.email, "role": invitation.role, "status": invitation.status,
            "invited_by": invitation.invited_by.email if invitation.invited_by else None,
            "created_at": invitation.created_at, "sent_at": invitation.sent_at, "expires_at": invitation.expires_at}


def _bad(serializer):
    field, problems = next(iter(serializer.errors.items()))
    raise DomainError(CommonError.VALIDATION_ERROR, f"{field}: {problems[0]}", serializer.errors)


def _invite(request):
    serializer = InviteSerializer(data=request.data)
    if not serializer.is_valid():
        _bad(serializer)
    invitation, _ = members.invite_member(request._request.tenant, acting_user=request.user,
                                          **serializer.validated_data)
    return Response(invitation_payload(invitation), status=201)


INVITE_RESPONSES = {201: InvitationSerializer, 402: OpenApiResponse(
    description="plan_limit_reached: the plan's member limit, pending invitations included (details.billing_url)."),
    409: OpenApiResponse(description="already_member, already_invited")}


class TeamView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]
    required_permissions = {"GET": Perm.MEMBERS_READ, "POST": Perm.MEMBERS_MANAGE, "PATCH": Perm.MEMBERS_MANAGE,
                            "DELETE": Perm.MEMBERS_MANAGE}


class MemberListView(TeamView):
    @extend_schema(tags=["members"], parameters=PAGE_PARAMETERS, responses=MemberSerializer(many=True))
    def get(self, request):
        """The workspace's members, oldest first."""
        rows = Membership.objects.filter(tenant=request._request.tenant).select_related("user")
        with_two_factor = two_factor_users(rows.values_list("user_id", flat=True))
        return paginated(request, self, rows, lambda row: member_payload(row, with_two_factor))

    @extend_schema(tags=["members"], request=InviteSerializer, responses=INVITE_RESPONSES)
    def post(self, request):
        """Add a member: they are invited by email with the role (the same as POST /invitations)."""
        return _invite(request)


class MemberDetailView(TeamView):
    def _membership(self, request, pk):
        return get_object_or_404(Membership.objects.select_related("user"), pk=pk, tenant=request._request.tenant)

    @extend_schema(tags=["members"], request=RoleChangeSerializer, responses={
        200: MemberSerializer, 403: OpenApiResponse(description="permission_denied, owner_protected")})
    def patch(self, request, pk):
        """Change a member's role (admin, agent or viewer; the owner's changes by transferring ownership)."""
        membership = self._membership(request, pk)
        serializer = RoleChangeSerializer(data=request.data)
        if not serializer.is_valid():
            _bad(serializer)
        membership = members.change_role(membership, acting_user=request.user, **serializer.validated_data)
        return Response(member_payload(membership, two_factor_users([membership.user_id])))

    @extend_schema(tags=["members"], responses={204: None, 403: OpenApiResponse(
        description="permission_denied, owner_protected"), 409: OpenApiResponse(description="last_owner")})
    def delete(self, request, pk):
        """Remove a member: their API keys for this workspace are revoked and their open pages closed at once."""
        members.remove_member(self._membership(request, pk), acting_user=request.user)
        return Response(status=204)


class InvitationListView(TeamView):
    @extend_schema(tags=["members"], parameters=[*PAGE_PARAMETERS, OpenApiParameter(
        "status", {"type": "string", "enum": ["pending", "accepted", "revoked", "expired"]})],
        responses=InvitationSerializer(many=True))
    def get(self, request):
        """The workspace's invitations, newest first; `status` filters."""
        rows = Invitation.objects.filter(tenant=request._request.tenant).select_related("invited_by")
        wanted = choice_param(request, "status", ["pending", "accepted", "revoked", "expired"],
                              MemberError.INVALID_STATUS)
        now = timezone.now()
        rows = {None: rows, "pending": rows.pending(), "accepted": rows.filter(accepted_at__isnull=False),
                "revoked": rows.filter(revoked_at__isnull=False, accepted_at__isnull=True),
                "expired": rows.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lte=now)}[wanted]
        return paginated(request, self, rows, invitation_payload)

    @extend_schema(tags=["members"], request=InviteSerializer, responses=INVITE_RESPONSES)
    def post(self, request):
        """Invite someone by email with a role; the link is valid 7 days."""
        return _invite(request)


class InvitationDetailView(TeamView):
    @extend_schema(tags=["members"], responses={204: None, 409: OpenApiResponse(
        description="invitation_not_pending: accepted already")})
    def delete(self, request, pk):
        """Revoke an invitation: its link stops working and its seat is free again."""
        invitation = get_object_or_404(Invitation, pk=pk, tenant=request._request.tenant)
        members.revoke_invitation(invitation, acting_user=request.user)
        return Response(status=204)
