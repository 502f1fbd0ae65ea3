"""Progress of long work, for the pages (a channel-layer group) and the API (the row): `Reporter(row)(pct, stage)`.

The row's heartbeat is renewed with each report; a running row whose heartbeat went stale belongs to a worker that
died (backups.actions.fail_stale_work). Reports are throttled: at most one write a second unless the stage changes.
"""
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

log = logging.getLogger(__name__)

PLATFORM_GROUP = "platform.backups"
MIN_INTERVAL_S = 1.0


def export_group(schema_name):
    return f"t.{schema_name}.data_export"


def payload(row):
    """What pages and sockets show of a Backup, Restore or DataExport."""
    data = {
        "id": row.pk,
        "object": type(row).__name__.lower(),
        "status": row.status,
        "progress": row.progress,
        "stage": row.stage,
        "error": row.error,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "duration_seconds": row.duration_seconds,
    }
    for name in ("kind", "trigger", "size", "sha256", "encryption", "tenant_id", "tenant_name", "mode",
                 "previous_schema", "verification_error"):
        if hasattr(row, name):
            data[name] = getattr(row, name)
    for name in ("verified_at", "expires_at"):
        if hasattr(row, name):
            value = getattr(row, name)
            data[name] = value.isoformat() if value else None
    return data


def group_of(row):
    if type(row).__name__ == "DataExport":
        return export_group(row.tenant.schema_name)
    return PLATFORM_GROUP


def publish(row):
    """Tell open pages; a live update must never fail the work."""
    try:
        async_to_sync(get_channel_layer().group_send)(group_of(row), {"type": "work.update", "data": payload(row)})
    except Exception:
        log.warning("live update of %s failed", row, exc_info=True)


class Reporter:
    def __init__(self, row):
        self.row = row
        self._last_at = 0.0

    def __call__(self, progress=None, stage=None, *, force=False):
        now = time.monotonic()
        changed = stage is not None and stage != self.row.stage
        if progress is not None:
            progress = max(0, min(100, int(progress)))
        if not (force or changed or now - self._last_at >= MIN_INTERVAL_S):
            return
        self._last_at = now
        fields = {"heartbeat_at": timezone.now()}
        if progress is not None:
            fields["progress"] = progress
        if stage is not None:
            fields["stage"] = stage[:200]
        type(self.row).objects.filter(pk=self.row.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.row, name, value)
        publish(self.row)

    def span(self, start, end):
        """A reporter for a part of the work that maps its own 0..100 onto start..end."""
        return lambda pct=None, stage=None: self(None if pct is None else start + (end - start) * pct / 100, stage)
