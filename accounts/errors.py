"""Error codes of users, memberships, invitations and API keys."""
from core.errors import ErrorCode


class AccountError(ErrorCode):
    NAME_REQUIRED = "name_required", 400
    TENANT_REQUIRED = "tenant_required", 400
    TWO_FACTOR_REQUIRED = "two_factor_required", 403


class MemberError(ErrorCode):
    INVALID_ROLE = "invalid_role", 400
    INVALID_EMAIL = "invalid_email", 400
    ALREADY_MEMBER = "already_member", 409
    ALREADY_INVITED = "already_invited", 409
    INVITATION_EXPIRED = "invitation_expired", 410
    INVITATION_REVOKED = "invitation_revoked", 410
    INVITATION_ACCEPTED = "invitation_accepted", 410
    INVITATION_NOT_PENDING = "invitation_not_pending", 409
    WRONG_EMAIL = "wrong_email", 403
    OWNER_PROTECTED = "owner_protected", 403
    LAST_OWNER = "last_owner", 409
    WRONG_PASSWORD = "wrong_password", 400
    NOT_A_MEMBER = "not_a_member", 404
    INVALID_STATUS = "invalid_status", 400


class ApiKeyError(ErrorCode):
    INVALID_SCOPE = "invalid_scope", 400
    INVALID_EXPIRY = "invalid_expiry", 400
    INVALID_OVERLAP = "invalid_overlap", 400
    API_KEY_NOT_ACTIVE = "api_key_not_active", 409


class WorkspaceError(ErrorCode):
    WRONG_NAME = "wrong_name", 400
