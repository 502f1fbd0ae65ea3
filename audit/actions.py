"""Writing the audit log: call record() inside the action's transaction."""
from . import context
from .enums import AuditAction
from .models import AuditLog


def record(action, *, actor, target, before=None, after=None, tenant=None):
    """Write one audit row; call inside the action's transaction so it commits or rolls back with it. `action` is
    an AuditAction (ValueError otherwise: the list is the one place actions are named). The row also gets the
    request's IP and, for an API call, the key's prefix (audit.context)."""
    action = AuditAction(action)
    actor = actor if getattr(actor, "pk", None) else None
    facts = context.current()
    return AuditLog.objects.create(
        actor=actor,
        actor_key=facts["api_key"] or "",
        ip=facts["ip"],
        tenant=tenant,
        action=action.value,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        before=before or {},
        after=after or {},
    )
