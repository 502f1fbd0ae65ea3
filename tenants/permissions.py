"""Who may call an endpoint, as far as tenants decide: platform admins, and principals whose tenant is active."""
from rest_framework import permissions

from core.errors import DomainError
from core.permissions import RoleAllows

from .errors import TenantError
from .models import Tenant

INACTIVE_TENANT_ERRORS = {
    Tenant.Status.PENDING: (TenantError.TENANT_PENDING, "Your business is awaiting approval by the platform team."),
    Tenant.Status.PROVISIONING: (TenantError.TENANT_PROVISIONING,
                                 "Your workspace is being prepared; try again shortly."),
    Tenant.Status.REJECTED: (TenantError.TENANT_REJECTED, "Your application was rejected."),
    Tenant.Status.SUSPENDED: (TenantError.TENANT_SUSPENDED,
                              "Your business is suspended. Contact support to reactivate it."),
}




class IsPlatformAdmin(permissions.BasePermission):
    message = "Only platform admins may manage tenants."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_platform_admin)


class HasActiveTenant(permissions.BasePermission):
    """Tenant-scoped endpoints: the principal's tenant must exist and be active, and the principal's role must have
    what the view declares (core.permissions, the one table)."""

    def has_permission(self, request, view):
        tenant = getattr(request._request, "tenant", None)
        if tenant is None:
            raise DomainError(TenantError.NO_TENANT, "This user does not belong to any business.")
        if tenant.status != Tenant.Status.ACTIVE:
            code, message = INACTIVE_TENANT_ERRORS[tenant.status]
            raise DomainError(code, message, {"status": tenant.status})
        return RoleAllows().has_permission(request, view)
