"""Error codes of the session host."""
from core.errors import ErrorCode


class HostError(ErrorCode):
    SESSION_NOT_RUNNING = "session_not_running", 409
