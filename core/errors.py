"""Errors of the domain. Actions and domain modules raise DomainError with a code from their feature's enum (an
ErrorCode subclass in <feature>/errors.py); they never raise HTTP exceptions. The API's one exception handler
(core.api) answers a DomainError with its code's HTTP status and the envelope; pages show its message.

    class SendingError(ErrorCode):
        INVALID_RECIPIENT = "invalid_recipient", 400

    raise DomainError(SendingError.INVALID_RECIPIENT, "Write the number with its country code.", {"to": to})

A code's string is the public `error.code` of the API: renaming a member's value breaks clients.
"""
import enum


class ErrorCode(str, enum.Enum):
    """A machine-readable error code (the member's value) and the HTTP status the API answers it with."""

    def __new__(cls, code, status=400):
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        return member

    def __str__(self):
        return self.value


class DomainError(Exception):
    """What went wrong, for a person (message) and a program (code, details)."""

    # Seconds after which trying again may succeed (the API answers it as Retry-After).
    wait = None

    def __init__(self, code, message, details=None, *, status=None):
        """`status` overrides the code's own, for a code that wraps others (a batch answers with the status its
        messages' errors share)."""
        if not isinstance(code, ErrorCode):
            raise TypeError(f"DomainError needs an ErrorCode member, not {code!r}")
        super().__init__(message)
        self.code = code
        self.message = str(message)
        self.details = details
        self._status = status

    @property
    def status(self):
        return self._status or self.code.status

    def __repr__(self):
        return f"DomainError({self.code.value!r}, {self.message!r})"


class CommonError(ErrorCode):
    """Codes every feature may raise."""

    INVALID_REQUEST = "invalid_request", 400
    VALIDATION_ERROR = "validation_error", 400
    NOT_AUTHENTICATED = "not_authenticated", 401
    PAYMENT_REQUIRED = "payment_required", 402
    PERMISSION_DENIED = "permission_denied", 403
    INSUFFICIENT_SCOPE = "insufficient_scope", 403
    NOT_FOUND = "not_found", 404
    CONFLICT = "conflict", 409
    RATE_LIMITED = "rate_limited", 429  # a business over its sending rate
    THROTTLED = "throttled", 429  # an API key, user or address over its request rate (core.throttles)
    UNAVAILABLE = "unavailable", 503


class EncryptionError(ErrorCode):
    """Encryption at rest (core.crypto)."""

    # A stored value was encrypted with a key no longer in WHATSAPP_ENCRYPTION_KEY: the server's configuration,
    # not the request, is at fault, and putting the key back fixes it.
    KEY_UNAVAILABLE = "encryption_key_unavailable", 503
    # Message bodies are encrypted (WHATSAPP_ENCRYPT_MESSAGES): the database cannot search them.
    SEARCH_UNAVAILABLE = "search_unavailable_encrypted", 400
