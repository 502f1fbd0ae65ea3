"""Error codes of users, memberships and API keys."""
from core.errors import ErrorCode


class AccountError(ErrorCode):
    NAME_REQUIRED = "name_required", 400
    OWNER_OR_ADMIN_REQUIRED = "owner_or_admin_required", 403
    TENANT_REQUIRED = "tenant_required", 400
