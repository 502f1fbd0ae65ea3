from django.conf import settings

from .models import Tenant


def navigation(request):
    user = getattr(request, "user", None)
    context = {"current_tenant": getattr(request, "tenant", None), "site_url": settings.SITE_URL}
    if user is not None and user.is_authenticated and user.is_platform_admin:

        context["pending_count"] = Tenant.objects.filter(status=Tenant.Status.PENDING).count()
    return context
