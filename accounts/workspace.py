"""The workspace's own settings: name, time zone, locale, default webhook URL. One page for its owners and admins
(POST -> redirect -> GET) and GET|PATCH /api/v1/workspace; the change is tenants.actions.update_tenant_settings.
Deleting the workspace (owners): GET|POST|DELETE /api/v1/workspace/deletion and the Settings page's last section;
the actions are accounts.deletion's."""
from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.decorators import billing_access_required
from billing.permissions import CanWrite
from core.api import StrictSerializer
from core.errors import CommonError, DomainError
from core.permissions import Perm, can, permission_required, refusal
from tenants.actions import SETTINGS_FIELDS, update_tenant_settings
from tenants.decorators import active_tenant_required
from tenants.models import LOCALES
from tenants.permissions import HasActiveTenant
from tenants.serializers import TIME_ZONES, WorkspaceSerializer, WorkspaceSettingsSerializer

from .deletion import cancel_workspace_deletion, deletion_state, schedule_workspace_deletion


def workspace_payload(tenant):
    return {"id": tenant.pk, "name": tenant.name, "slug": tenant.slug, "timezone": tenant.timezone,
            "locale": tenant.locale, "webhook_url": tenant.webhook_url, "require_2fa": tenant.require_2fa}


class WorkspaceView(APIView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "PATCH": Perm.SETTINGS_MANAGE}
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]

    @extend_schema(tags=["workspace"], responses=WorkspaceSerializer)
    def get(self, request):
        """The workspace's settings."""
        return Response(workspace_payload(request._request.tenant))

    @extend_schema(tags=["workspace"], request=WorkspaceSettingsSerializer, responses={
        200: WorkspaceSerializer,
        403: OpenApiResponse(description="permission_denied: owners and admins only (require_2fa: owners only)"),
        409: OpenApiResponse(description="two_factor_not_set_up: the owner requires 2FA without having it")})
    def patch(self, request):
        """Change any of the settings (audited as tenant.settings_updated with what changed)."""
        serializer = WorkspaceSettingsSerializer(data=request.data)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            raise DomainError(CommonError.VALIDATION_ERROR, f"{field}: {problems[0]}", serializer.errors)
        if "require_2fa" in serializer.validated_data and not can(request._request.membership,
                                                                  Perm.WORKSPACE_SECURITY):
            raise refusal(Perm.WORKSPACE_SECURITY)
        tenant = update_tenant_settings(request._request.tenant, acting_user=request.user,
                                        **serializer.validated_data)
        return Response(workspace_payload(tenant))


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=120, label="Business name")
    timezone = forms.ChoiceField(choices=[(zone, zone) for zone in TIME_ZONES], label="Time zone",
                                 help_text="Analytics' days and the automation's business hours follow it.")
    locale = forms.ChoiceField(choices=LOCALES, label="Language",
                               help_text="The language the workspace's pages are shown in.")
    webhook_url = forms.CharField(max_length=500, required=False, label="Default webhook URL",
                                  help_text="New webhook endpoints start with this address; empty for none.",
                                  widget=forms.TextInput(attrs={"type": "url", "inputmode": "url",
                                                                "autocapitalize": "none", "spellcheck": "false",
                                                                "placeholder": "https://example.com/whatsapp/events"}))
    require_2fa = forms.BooleanField(required=False, label="Require two-factor authentication of every member",
                                     help_text="Members without it are sent to its setup page before they see this "
                                               "workspace. API keys keep working. Owners only.")

    def __init__(self, *args, may_require_2fa, **kwargs):
        super().__init__(*args, **kwargs)
        if not may_require_2fa:
            del self.fields["require_2fa"]


@never_cache
@billing_access_required
@permission_required(Perm.SETTINGS_MANAGE)
def workspace_settings(request):
    tenant = request.tenant
    may_require_2fa = can(request.membership, Perm.WORKSPACE_SECURITY)
    if request.method == "POST":
        form = WorkspaceForm(request.POST, may_require_2fa=may_require_2fa)
        if form.is_valid():
            try:
                update_tenant_settings(tenant, acting_user=request.user,
                                       **{field: form.cleaned_data[field] for field in SETTINGS_FIELDS
                                          if field in form.fields})
            except DomainError as exc:
                field = {"invalid_url": "webhook_url", "private_target": "webhook_url",
                         "two_factor_not_set_up": "require_2fa"}.get(exc.code.value)
                form.add_error(field, exc.message)
            else:
                messages.success(request, "Workspace settings saved.")
                return redirect("workspace_settings")
        return _settings_page(request, form, status=400)
    form = WorkspaceForm(initial={field: getattr(tenant, field) for field in SETTINGS_FIELDS},
                         may_require_2fa=may_require_2fa)
    return _settings_page(request, form)


def _settings_page(request, form, deletion_form=None, status=200):
    may_delete = can(request.membership, Perm.WORKSPACE_DELETE)
    if may_delete and deletion_form is None:
        deletion_form = DeletionForm()
    return render(request, "accounts/workspace_settings.html", {
        "form": form, "deletion_form": deletion_form if may_delete else None, "may_delete": may_delete,
        "deletion": deletion_state(request.tenant), "grace_days": settings.WORKSPACE_DELETE_GRACE_DAYS},
        status=status)


# --- deleting the workspace ------------------------------------------------------------------------------------

class WorkspaceDeletionRequestSerializer(StrictSerializer):
    password = serializers.CharField(max_length=4096, trim_whitespace=False, help_text="The owner's own password.")
    name = serializers.CharField(max_length=120, help_text="The workspace's name, typed out exactly, to confirm.")


class WorkspaceDeletionSerializer(serializers.Serializer):
    scheduled = serializers.BooleanField()
    requested_at = serializers.DateTimeField(allow_null=True)
    deletes_at = serializers.DateTimeField(allow_null=True, help_text=(
        "When the workspace, its schema and its public rows are deleted for good; until then it is read-only "
        "(changes answer 409 workspace_deletion_scheduled) and an owner may cancel."))


class WorkspaceDeletionView(APIView):
    # No CanWrite: a read-only (unpaid, or already scheduled) workspace may still be deleted, or its deletion cancelled.
    required_permissions = {"GET": Perm.SETTINGS_READ, "POST": Perm.WORKSPACE_DELETE, "DELETE": Perm.WORKSPACE_DELETE}
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(tags=["workspace"], responses=WorkspaceDeletionSerializer)
    def get(self, request):
        """Whether the workspace's deletion is scheduled, and for when."""
        return Response(deletion_state(request._request.tenant))

    @extend_schema(tags=["workspace"], request=WorkspaceDeletionRequestSerializer, responses={
        202: WorkspaceDeletionSerializer,
        400: OpenApiResponse(description="wrong_password, wrong_name, validation_error; nothing changed"),
        403: OpenApiResponse(description="permission_denied: owners only"),
        409: OpenApiResponse(description="workspace_deletion_scheduled: already scheduled")})
    def post(self, request):
        """Schedule the workspace's deletion (owners; their password and the workspace's name confirm it). At once:
        the WhatsApp sessions are stopped and unlinked and the workspace turns read-only. After
        WORKSPACE_DELETE_GRACE_DAYS (7 by default) its schema, data, media, members, API keys and domains are
        deleted and a Stripe subscription canceled; the owners are emailed now and then. Take a data export first."""
        serializer = WorkspaceDeletionRequestSerializer(data=request.data)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            raise DomainError(CommonError.VALIDATION_ERROR, f"{field}: {problems[0]}", serializer.errors)
        tenant = schedule_workspace_deletion(request._request.tenant, acting_user=request.user,
                                             **serializer.validated_data)
        return Response(deletion_state(tenant), status=202)

    @extend_schema(tags=["workspace"], responses={
        200: WorkspaceDeletionSerializer, 403: OpenApiResponse(description="permission_denied: owners only"),
        409: OpenApiResponse(description="workspace_deletion_not_scheduled")})
    def delete(self, request):
        """Cancel the scheduled deletion: the workspace is writable again (its sessions stay unlinked)."""
        tenant = cancel_workspace_deletion(request._request.tenant, acting_user=request.user)
        return Response(deletion_state(tenant))


class DeletionForm(forms.Form):
    password = forms.CharField(label="Your password", strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    name = forms.CharField(max_length=120, label="The workspace's name, to confirm",
                           widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))


@never_cache
@require_POST
@active_tenant_required
@permission_required(Perm.WORKSPACE_DELETE)
def schedule_deletion(request):
    form = DeletionForm(request.POST)
    if form.is_valid():
        try:
            tenant = schedule_workspace_deletion(request.tenant, acting_user=request.user, **form.cleaned_data)
        except DomainError as exc:
            form.add_error({"wrong_password": "password", "wrong_name": "name"}.get(exc.code.value), exc.message)
        else:
            messages.success(request, f"{tenant.name} will be deleted on {tenant.deletion_due_at:%d %b %Y %H:%M} UTC. "
                                      "Its sessions were stopped and unlinked; it is read-only until then.")
            return redirect("workspace_settings")
    settings_form = WorkspaceForm(initial={field: getattr(request.tenant, field) for field in SETTINGS_FIELDS},
                                  may_require_2fa=can(request.membership, Perm.WORKSPACE_SECURITY))
    return _settings_page(request, settings_form, form, status=400)


@never_cache
@require_POST
@active_tenant_required
@permission_required(Perm.WORKSPACE_DELETE)
def cancel_deletion(request):
    try:
        cancel_workspace_deletion(request.tenant, acting_user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The deletion is cancelled: the workspace is yours again. Link its WhatsApp "
                                  "numbers again on the Sessions page.")
    return redirect("workspace_settings")
