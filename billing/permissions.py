"""Who may call an endpoint, as far as billing decides."""
from rest_framework import permissions

from .entitlements import require_write


class CanWrite(permissions.BasePermission):
    """Writes need a tenant in good standing: read-only (unpaid) tenants get 402 payment_required."""

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return True
        require_write(request._request.tenant)
        return True
