import functools

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

from core.permissions import Perm, can
from tenants.decorators import active_tenant_required

from . import entitlements

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def billing_access_required(view):
    """Pages of a tenant in good standing. Suspended for non-payment: the page that explains it (Billing and
    the account pages stay reachable, so the owner can pay). Read-only: the page shows, but changes are
    refused with the reason."""

    @active_tenant_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        access = entitlements.access_for(request.tenant)
        if access.level == entitlements.SUSPENDED:
            return redirect("billing_suspended")
        if request.method not in SAFE_METHODS and not access.can_write:
            messages.error(request, access.message)
            return redirect(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def billing_owner_required(view):
    """Changing billing is for the tenant's owners; members see the pages read-only."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not can(request.membership, Perm.BILLING_MANAGE):
            raise PermissionDenied("Only an owner can change billing.")
        return view(request, *args, **kwargs)

    return active_tenant_required(wrapper)
