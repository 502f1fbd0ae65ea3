"""Platform admin API of backups: /api/v1/backups… Anyone else gets 404 (401 without credentials). Long work answers
202 with the row's id; follow it with GET /api/v1/backups/{id} (or /backups/restores/{id}) or the page's socket."""
from django.db.models import Count, Max, Q, Sum
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import PAGE_PARAMETERS, StrictSerializer, choice_param, paginated, whole_number_param
from core.errors import DomainError
from core.permissions import Perm
from tenants.models import Tenant

from . import actions, storage
from .errors import BackupError
from .models import Backup, Restore, Status
from .progress import payload


class IsPlatformAdminElse404(permissions.BasePermission):
    """Backups are invisible to everyone but platform admins: another principal gets 404, not 403."""

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not user.is_platform_admin:
            raise Http404
        return True


class AdminView(APIView):
    required_permission = Perm.PLATFORM
    permission_classes = [IsPlatformAdminElse404]


def backup_payload(backup):
    return {**payload(backup), "scope": backup.scope, "tenant_schema": backup.tenant_schema,
            "compress": backup.compress, "storage_name": backup.storage_name,
            "created_by": backup.created_by.email if backup.created_by_id else None,
            "manifest": {key: backup.manifest.get(key) for key in ("kind", "created_at", "versions", "files",
                                                                     "public_rows", "base")
                         if key in backup.manifest}}


def restore_payload(restore):
    return {**payload(restore), "backup_id": restore.backup_id, "details": restore.details,
            "created_by": restore.created_by.email if restore.created_by_id else None}


class CreateBackupSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=[Backup.Kind.FULL, Backup.Kind.TENANT, Backup.Kind.BASE],
                                   default=Backup.Kind.FULL, help_text="Default: tenant with tenant_id, else full")
    tenant_id = serializers.IntegerField(required=False, allow_null=True)
    compress = serializers.BooleanField(default=True)


class RestoreSerializer(StrictSerializer):
    as_new_tenant = serializers.BooleanField(default=False)
    identity = serializers.CharField(required=False, allow_blank=True, trim_whitespace=True, max_length=20000,
                                     help_text="The age identity (AGE-SECRET-KEY-1…) when backups are encrypted to "
                                               "BACKUP_AGE_RECIPIENTS; used once, never stored.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    slug = serializers.SlugField(required=False, allow_blank=True, max_length=63)


class ExportSerializer(StrictSerializer):
    tenant_id = serializers.IntegerField()


def _validated(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _tenant(tenant_id):
    return get_object_or_404(Tenant.objects.exclude(status=Tenant.Status.POOLED), pk=tenant_id)


class BackupListView(AdminView):
    @extend_schema(parameters=[OpenApiParameter("tenant_id", {"type": "integer", "minimum": 1,
                                                                "maximum": 2**31 - 1}),
                               OpenApiParameter("status", str, enum=Status.values),
                               OpenApiParameter("type", str, enum=Backup.Kind.values), *PAGE_PARAMETERS],
                   responses={200: OpenApiResponse(response={"type": "array", "items": {"type": "object"}},
                                                    description="Backups, newest first")},
                   operation_id="backups_list")
    def get(self, request):
        backups = Backup.objects.select_related("created_by").order_by("-created_at", "-id")
        tenant_id = whole_number_param(request, "tenant_id", low=1, high=2**31 - 1, default=None,
                                       code=BackupError.INVALID_FILTER)
        if tenant_id is not None:
            backups = backups.filter(tenant_id=tenant_id)
        wanted = choice_param(request, "status", Status.values, BackupError.INVALID_FILTER)
        if wanted is not None:
            backups = backups.filter(status=wanted)
        kind = choice_param(request, "type", Backup.Kind.values, BackupError.INVALID_FILTER)
        if kind is not None:
            backups = backups.filter(kind=kind)
        return paginated(request, self, backups, backup_payload)

    @extend_schema(request=CreateBackupSerializer, responses={202: dict}, operation_id="backups_create")
    def post(self, request):
        data = _validated(CreateBackupSerializer, request.data)
        tenant = _tenant(data["tenant_id"]) if data.get("tenant_id") else None
        if tenant is not None and "type" not in request.data:
            data["type"] = Backup.Kind.TENANT  # {"tenant_id": …} alone backs that tenant up
        backup = actions.start_backup(kind=data["type"], tenant=tenant, compress=data["compress"],
                                      acting_user=request.user)
        backup.refresh_from_db()
        return Response(backup_payload(backup), status=status.HTTP_202_ACCEPTED)


def stats():
    totals = Backup.objects.aggregate(
        count=Count("id"), total_size=Sum("size", filter=Q(status=Status.SUCCEEDED)),
        failures=Count("id", filter=Q(status=Status.FAILED)),
        verification_failures=Count("id", filter=~Q(verification_error="")),
        last_backup_at=Max("finished_at", filter=Q(status=Status.SUCCEEDED)),
        last_verified_at=Max("verified_at"))
    last_failed = Backup.objects.filter(status=Status.FAILED).order_by("-created_at").first()
    return {**totals, "total_size": totals["total_size"] or 0,
            "last_failure": {"id": last_failed.pk, "error": last_failed.error,
                             "at": last_failed.finished_at} if last_failed else None,
            "running": Backup.objects.filter(status__in=[Status.QUEUED, Status.RUNNING]).count(),
            "storage": storage.store().describe()}


class BackupStatsView(AdminView):
    @extend_schema(responses=dict, operation_id="backups_stats")
    def get(self, request):
        return Response(stats())


class BackupDetailView(AdminView):
    @extend_schema(responses=dict, operation_id="backups_retrieve")
    def get(self, request, pk):
        return Response(backup_payload(get_object_or_404(Backup, pk=pk)))

    @extend_schema(responses={204: None}, operation_id="backups_destroy")
    def delete(self, request, pk):
        actions.delete_backup(get_object_or_404(Backup, pk=pk), acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BackupDownloadView(AdminView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The encrypted file"),
                              409: OpenApiResponse(description="backup_not_restorable: the backup has no stored file "
                                                               "(queued, running, failed or cleaned up).")},
                   operation_id="backups_download")
    def get(self, request, pk):
        backup = get_object_or_404(Backup, pk=pk)
        if not backup.is_restorable:
            raise DomainError(BackupError.NOT_RESTORABLE, "That backup has no stored file.")
        store = storage.store()
        handle = store.storage.open(backup.storage_name, "rb")
        return FileResponse(handle, as_attachment=True, filename=backup.storage_name.rsplit("/", 1)[-1],
                            content_type="application/octet-stream")


class BackupRestoreView(AdminView):
    @extend_schema(request=RestoreSerializer, responses={202: dict}, operation_id="backups_restore")
    def post(self, request, pk):
        backup = get_object_or_404(Backup, pk=pk)
        data = _validated(RestoreSerializer, request.data)
        restore = actions.request_restore(backup, acting_user=request.user, as_new_tenant=data["as_new_tenant"],
                                          identity=data.get("identity") or None, name=data.get("name", ""),
                                          slug=data.get("slug", ""))
        restore.refresh_from_db()
        return Response(restore_payload(restore), status=status.HTTP_202_ACCEPTED)


class RestoreDetailView(AdminView):
    @extend_schema(responses=dict, operation_id="backups_restores_retrieve")
    def get(self, request, pk):
        return Response(restore_payload(get_object_or_404(Restore, pk=pk)))


class ExportTenantView(AdminView):
    @extend_schema(request=ExportSerializer, responses={202: dict}, operation_id="backups_export_tenant")
    def post(self, request):
        data = _validated(ExportSerializer, request.data)
        export = actions.request_export(_tenant(data["tenant_id"]), acting_user=request.user)
        export.refresh_from_db()
        return Response(payload(export), status=status.HTTP_202_ACCEPTED)


class CleanupView(AdminView):
    @extend_schema(parameters=[OpenApiParameter("days", {"type": "integer", "minimum": 0, "maximum": 36500},
                                                description="Default BACKUP_RETENTION_DAYS")],
                   responses=dict, operation_id="backups_cleanup")
    def delete(self, request):
        days = whole_number_param(request, "days", low=0, high=36500, default=None, code=BackupError.INVALID_FILTER)
        return Response(actions.cleanup_backups(days=days, acting_user=request.user))


urlpatterns = [
    path("backups", BackupListView.as_view(), name="api_backups"),
    path("backups/stats", BackupStatsView.as_view(), name="api_backup_stats"),
    path("backups/cleanup", CleanupView.as_view(), name="api_backup_cleanup"),
    path("backups/export-tenant", ExportTenantView.as_view(), name="api_backup_export_tenant"),
    path("backups/restores/<int:pk>", RestoreDetailView.as_view(), name="api_restore"),
    path("backups/<int:pk>", BackupDetailView.as_view(), name="api_backup"),
    path("backups/<int:pk>/download", BackupDownloadView.as_view(), name="api_backup_download"),
    path("backups/<int:pk>/restore", BackupRestoreView.as_view(), name="api_backup_restore"),
]
