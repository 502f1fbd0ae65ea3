"""Error codes of backups, restores and data exports (the API's `error.code`)."""
from core.errors import ErrorCode


class BackupError(ErrorCode):
    INVALID_TYPE = "invalid_backup_type", 400
    INVALID_FILTER = "invalid_filter", 400
    TENANT_REQUIRED = "tenant_required", 400
    TENANT_HAS_NO_SCHEMA = "tenant_has_no_schema", 409
    ALREADY_RUNNING = "backup_already_running", 409
    NOT_RESTORABLE = "backup_not_restorable", 409
    FULL_RESTORE_OFFLINE = "full_restore_needs_maintenance", 409
    CHECKSUM_MISMATCH = "backup_checksum_mismatch", 422
    WRONG_KEY = "backup_wrong_key", 422
    CORRUPTED = "backup_corrupted", 422
    NO_KEY = "backup_key_missing", 422
    MANIFEST_MISMATCH = "backup_manifest_mismatch", 422
    NEWER_THAN_CODE = "backup_newer_than_code", 409
    ENCRYPTION_NOT_CONFIGURED = "backup_encryption_not_configured", 500
    DUMP_FAILED = "backup_dump_failed", 500
    STORAGE_FAILED = "backup_storage_failed", 503
    EXPORT_LIMIT = "export_limit_reached", 429
    EXPORT_EXPIRED = "export_expired", 410
    PITR_UNAVAILABLE = "pitr_unavailable", 409
