"""Pages: Backups for platform admins (/platform/backups/), and a tenant owner's Export my data (/data-export/).
Every change is a POST that redirects back; progress arrives over the page's websocket (static/js/backups.js)."""
import functools

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.errors import DomainError
from core.permissions import Perm, can_export_data, permission_required
from tenants.models import Tenant

from . import actions, crypto, exports, notify, storage, wal
from .api import stats
from .models import Backup, DataExport, Restore


def platform_admin_only(view):
    """Backups are invisible to anyone but platform admins: a 404, like the API."""

    @login_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_platform_admin:
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper


def _done(request, func, success, **kwargs):
    try:
        result = func(**kwargs)
    except DomainError as exc:
        messages.error(request, exc.message)
        return None
    messages.success(request, success(result) if callable(success) else success)
    return result


@platform_admin_only
@permission_required(Perm.PLATFORM)
def backups_page(request):
    backups = Backup.objects.select_related("tenant", "created_by").order_by("-created_at", "-id")
    page = Paginator(backups, 25).get_page(request.GET.get("page"))
    pitr, pitr_why = wal.archive_enabled()
    return render(request, "backups/backups.html", {
        "page": page, "stats": stats(), "alerts": notify.firing_alerts(),
        "tenants": Tenant.objects.filter(status__in=["active", "suspended"]),
        "restores": Restore.objects.select_related("backup", "tenant").order_by("-created_at")[:10],
        "encryption": crypto.mode(), "derived_key": crypto.mode() == crypto.PASSPHRASE
        and not _has_passphrase(), "pitr": pitr, "pitr_why": pitr_why, "storage": storage.store().describe(),
    })


def _has_passphrase():
    return bool(settings.BACKUP_ENCRYPTION_KEY)


@platform_admin_only
@require_POST
@permission_required(Perm.PLATFORM)
def start_backup(request):
    kind = request.POST.get("type", "full")
    tenant_id = request.POST.get("tenant_id") or None
    tenant = get_object_or_404(Tenant, pk=tenant_id) if tenant_id and tenant_id.isdigit() else None
    _done(request, actions.start_backup, lambda b: f"Backup #{b.pk} started.", kind=kind, tenant=tenant,
          acting_user=request.user)
    return redirect("backups_page")


@platform_admin_only
@require_POST
@permission_required(Perm.PLATFORM)
def delete_backup(request, backup_id):
    backup = get_object_or_404(Backup, pk=backup_id)
    _done(request, actions.delete_backup, f"Backup #{backup_id} deleted.", backup=backup, acting_user=request.user)
    return redirect("backups_page")


@platform_admin_only
@require_POST
@permission_required(Perm.PLATFORM)
def restore_backup(request, backup_id):
    backup = get_object_or_404(Backup, pk=backup_id)
    as_new = request.POST.get("mode") == "new_tenant"
    _done(request, actions.request_restore, lambda r: f"Restore #{r.pk} started.", backup=backup,
          acting_user=request.user, as_new_tenant=as_new, identity=request.POST.get("identity", "").strip() or None)
    return redirect("backups_page")


@platform_admin_only
@require_POST
@permission_required(Perm.PLATFORM)
def cleanup(request):
    days = request.POST.get("days", "")
    if not days.isdigit():
        messages.error(request, "Give a whole number of days.")
        return redirect("backups_page")
    _done(request, actions.cleanup_backups,
          lambda r: f"{len(r['deleted'])} backup(s) deleted; {len(r['kept'])} kept (the newest verified ones).",
          days=int(days), acting_user=request.user)
    return redirect("backups_page")


@platform_admin_only
@permission_required(Perm.PLATFORM)
def download_backup(request, backup_id):
    backup = get_object_or_404(Backup, pk=backup_id)
    if not backup.is_restorable:
        raise Http404
    handle = storage.store().storage.open(backup.storage_name, "rb")
    return FileResponse(handle, as_attachment=True, filename=backup.storage_name.rsplit("/", 1)[-1])


# --- Export my data ----------------------------------------------------------------------------------------------

def _owner_membership(request):
    membership = getattr(request, "membership", None)
    if request.tenant is None or membership is None or not can_export_data(membership.role):
        raise Http404
    return membership


@login_required
@permission_required(Perm.DATA_EXPORT, hide=True)
def data_export_page(request):
    _owner_membership(request)
    if request.method == "POST":
        _done(request, actions.request_export, "Your export is being prepared; you will get an email with the "
              "link when it is ready.", tenant=request.tenant, acting_user=request.user)
        return redirect("data_export")
    rows = DataExport.objects.filter(tenant=request.tenant).order_by("-created_at")[:10]
    return render(request, "backups/data_export.html", {"exports": rows, "now": timezone.now()})


@login_required
@permission_required(Perm.DATA_EXPORT, hide=True)
def data_export_download(request, export_id):
    _owner_membership(request)
    export = get_object_or_404(DataExport, pk=export_id, tenant=request.tenant)
    token = request.GET.get("token")
    if token is not None and not exports.check_download_token(export, token):
        raise Http404
    if not export.is_downloadable:
        messages.error(request, "That export has expired; make a new one.")
        return redirect("data_export")
    actions.record_export_download(export, acting_user=request.user)
    handle = storage.store().storage.open(export.storage_name, "rb")
    return FileResponse(handle, as_attachment=True, filename=f"{request.tenant.slug}-export-{export.pk}.zip")


def export_card(request):
    """The dashboard's "Your data" card, for owners (the only ones who may export)."""
    membership = getattr(request, "membership", None)
    if membership is None or not can_export_data(membership.role):
        return None
    return {"last_export": DataExport.objects.filter(tenant=request.tenant).order_by("-created_at").first()}
