"""Who is behind the changes a request makes, for its audit rows: the client's IP address (set by
audit.middleware.AuditContextMiddleware) and, for an API call, the key's prefix (set when the key authenticates).
Outside a request (tasks, commands) there is none, and the rows say so with nulls."""
import contextvars

_current = contextvars.ContextVar("audit_request", default=None)


def begin(ip):
    """Start a request's facts; returns the token for end()."""
    return _current.set({"ip": ip, "api_key": None})


def end(token):
    _current.reset(token)


def acting_key(prefix):
    """The request acts through the API key with this prefix."""
    facts = _current.get()
    if facts is not None:
        facts["api_key"] = prefix


def current():
    return _current.get() or {"ip": None, "api_key": None}
