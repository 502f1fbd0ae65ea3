"""The audit log a workspace reads (owners and admins: core.permissions audit.read): the page /audit/ with filters
and a CSV export, and GET /api/v1/audit-log. Rows are the workspace's own (AuditLog.tenant); another workspace's
are never listed. Read-only: the application only ever appends to the log (audit.actions.record)."""
import csv
from datetime import datetime, time

from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.views import APIView

from audit.enums import AuditAction
from audit.models import AuditLog
from core.api import PAGE_PARAMETERS, paginated
from core.errors import CommonError, DomainError
from core.permissions import Perm, permission_required
from tenants.decorators import active_tenant_required
from tenants.permissions import HasActiveTenant

PAGE_ROWS = 50
EXPORT_MAX_ROWS = 100_000


def _date(value, name, *, end=False, strict=False):
    if value is None or (not value and not strict):  # a page's empty field is no filter; the API's is an error
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise DomainError(CommonError.VALIDATION_ERROR, f"{name}: write the date as YYYY-MM-DD.", {name: value})
    return timezone.make_aware(datetime.combine(day, time.max if end else time.min))


def filtered(tenant, params, *, strict=False):
    """The workspace's rows, newest first, narrowed by action (a prefix: "member." for every member change),
    actor (email), since and until (dates, inclusive). strict (the API): what the schema forbids is a 400."""
    rows = AuditLog.objects.filter(tenant=tenant).select_related("actor")
    action, actor = params.get("action") or "", params.get("actor") or ""
    for name, value, longest in (("action", action, 60), ("actor", actor, 254)):
        if strict and len(value) > longest:
            raise DomainError(CommonError.VALIDATION_ERROR, f"{name}: at most {longest} characters.", {name: value})
    action, actor = action.strip()[:60], actor.strip()[:254]
    if action:
        rows = rows.filter(action__startswith=action)
    if actor:
        rows = rows.filter(actor_key=actor) if actor.startswith("sb_") else rows.filter(actor__email__iexact=actor)
    since = _date(params.get("since"), "since", strict=strict)
    until = _date(params.get("until"), "until", end=True, strict=strict)
    if since:
        rows = rows.filter(created_at__gte=since)
    if until:
        rows = rows.filter(created_at__lte=until)
    return rows


def row_payload(row):
    return {"id": row.pk, "action": row.action, "actor": row.actor.email if row.actor else None,
            "actor_key": row.actor_key or None, "ip": row.ip,
            "target_type": row.target_type, "target_id": row.target_id, "before": row.before, "after": row.after,
            "created_at": row.created_at}


class AuditRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.ChoiceField(choices=AuditAction.choices)
    actor = serializers.CharField(allow_null=True, help_text="The email of the person; null for the system.")
    actor_key = serializers.CharField(allow_null=True, help_text="The prefix of the API key the person acted "
                                                                 "through; null on a page or for the system.")
    ip = serializers.IPAddressField(allow_null=True, help_text="The client's address; null outside a request.")
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    before = serializers.DictField()
    after = serializers.DictField()
    created_at = serializers.DateTimeField()


FILTERS = [
    OpenApiParameter("action", {"type": "string", "maxLength": 60},
                     description="Actions starting with this, e.g. member. or webhook.endpoint_created."),
    OpenApiParameter("actor", {"type": "string", "maxLength": 254}, description="The acting person's email, or an API key's prefix (sb_…)."),
    OpenApiParameter("since", {"type": "string", "format": "date"}, description="From this day (YYYY-MM-DD)."),
    OpenApiParameter("until", {"type": "string", "format": "date"}, description="Up to this day, inclusive."),
]


class AuditLogView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]
    required_permission = Perm.AUDIT_READ

    @extend_schema(tags=["audit"], parameters=[*PAGE_PARAMETERS, *FILTERS], responses=AuditRowSerializer(many=True))
    def get(self, request):
        """Every change made in this workspace by a person or key, newest first (owners and admins)."""
        return paginated(request, self, filtered(request._request.tenant, request.query_params, strict=True),
                         row_payload)


@never_cache
@active_tenant_required
@permission_required(Perm.AUDIT_READ)
def audit_page(request):
    try:
        rows = filtered(request.tenant, request.GET)
    except DomainError as exc:
        rows, problem = AuditLog.objects.none(), exc.message
    else:
        problem = None
    page = Paginator(rows, PAGE_ROWS).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "accounts/audit_log.html", {
        "page": page, "problem": problem, "filters": request.GET, "query": query.urlencode(),
        "actions": sorted(set(AuditLog.objects.filter(tenant=request.tenant).values_list("action", flat=True))),
    })


class _Echo:
    def write(self, value):
        return value


def _safe(value):
    """A cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@never_cache
@active_tenant_required
@permission_required(Perm.AUDIT_READ)
def audit_export(request):
    """The filtered log as CSV (at most EXPORT_MAX_ROWS rows)."""
    rows = filtered(request.tenant, request.GET)[:EXPORT_MAX_ROWS]
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(["created_at", "action", "actor", "actor_key", "ip", "target_type", "target_id",
                               "before", "after"])
        for row in rows.iterator(chunk_size=1000):
            yield writer.writerow([row.created_at.isoformat(), row.action, _safe(row.actor.email if row.actor else ""),
                                   row.actor_key, row.ip or "",
                                   row.target_type, row.target_id, _safe(row.before), _safe(row.after)])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{request.tenant.slug}-audit-log.csv"'
    return response
