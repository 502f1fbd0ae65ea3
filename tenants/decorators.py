import functools

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect


def active_tenant_required(view):
    """Pages of a working tenant: anyone else goes to the page that explains their state."""

    @login_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.tenant is None or not request.tenant.is_active:
            return redirect("home")
        return view(request, *args, **kwargs)

    return wrapper


def platform_admin_required(view):
    @login_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_platform_admin:
            raise PermissionDenied("This page is for the platform's administrators; your account is not one.")
        return view(request, *args, **kwargs)

    return wrapper
