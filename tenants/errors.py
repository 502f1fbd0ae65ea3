"""Error codes of tenants (businesses) and their lifecycle."""
from core.errors import ErrorCode


class TenantError(ErrorCode):
    NO_TENANT = "no_tenant", 403
    TENANT_PENDING = "tenant_pending", 403
    TENANT_PROVISIONING = "tenant_provisioning", 403
    TENANT_REJECTED = "tenant_rejected", 403
    TENANT_SUSPENDED = "tenant_suspended", 403
    TENANT_POOLED = "tenant_pooled", 403
    INVALID_TENANT_STATE = "invalid_tenant_state", 409
    INVALID_NAME = "invalid_name", 400
    INVALID_TIME_ZONE = "invalid_time_zone", 400
    INVALID_LOCALE = "invalid_locale", 400
    TWO_FACTOR_NOT_SET_UP = "two_factor_not_set_up", 409
    INVALID_STATUS = "invalid_status", 400
    REASON_REQUIRED = "reason_required", 400
    RESERVED_SLUG = "reserved_slug", 400
    SLUG_TAKEN = "slug_taken", 409
    DELETION_SCHEDULED = "workspace_deletion_scheduled", 409
    DELETION_NOT_SCHEDULED = "workspace_deletion_not_scheduled", 409
