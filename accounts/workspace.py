"""The workspace's own settings: name, time zone, locale, default webhook URL. One page for its owners and admins
(POST -> redirect -> GET) and GET|PATCH /api/v1/workspace; the change is tenants.actions.update_tenant_settings."""
from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.decorators import billing_access_required
from billing.permissions import CanWrite
from core.errors import CommonError, DomainError
from core.permissions import Perm, can, permission_required, refusal
from tenants.actions import SETTINGS_FIELDS, update_tenant_settings
from tenants.models import LOCALES
from tenants.permissions import HasActiveTenant
from tenants.serializers import TIME_ZONES, WorkspaceSerializer, WorkspaceSettingsSerializer


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
        return render(request, "accounts/workspace_settings.html", {"form": form}, status=400)
    form = WorkspaceForm(initial={field: getattr(tenant, field) for field in SETTINGS_FIELDS},
                         may_require_2fa=may_require_2fa)
    return render(request, "accounts/workspace_settings.html", {"form": form})
