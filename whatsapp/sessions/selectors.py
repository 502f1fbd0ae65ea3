"""Finding sessions from what a request names."""
from rest_framework import exceptions

from core.errors import CommonError, DomainError

from .actions import NAME_RE
from .models import WhatsAppSession


def named(name):
    """The session called `name` in the current schema: 404 when there is none (another tenant's is not here)."""
    session = WhatsAppSession.objects.filter(name=str(name)).first()
    if session is None:
        raise exceptions.NotFound(f"No session named '{name}'.")
    return session


def from_filter(request):
    """The `session` query filter of a list: None when absent, else the session it names (400 for a name no session
    can have, 404 for one that is not here)."""
    name = request.query_params.get("session")
    if name is None:
        return None
    if not NAME_RE.match(name):
        raise DomainError(CommonError.VALIDATION_ERROR, "session: a session's name (1–64 letters, digits, '-' or '_').",
                          {"session": ["Not a session name."]})
    return named(name)
