"""Writing the audit log: call record() inside the action's transaction."""
from .models import AuditLog


def record(action, *, actor, target, before=None, after=None, tenant=None):
    """Write one audit row; call inside the action's transaction so it commits or rolls back with it."""
    actor = actor if getattr(actor, "pk", None) else None
    return AuditLog.objects.create(
        actor=actor,
        tenant=tenant,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        before=before or {},
        after=after or {},
    )
