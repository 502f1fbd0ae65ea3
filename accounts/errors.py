"""Error codes of users, memberships and API keys."""
from core.errors import ErrorCode


class AccountError(ErrorCode):
    NAME_REQUIRED = "name_required", 400
    TENANT_REQUIRED = "tenant_required", 400
