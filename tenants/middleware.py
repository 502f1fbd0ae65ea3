from django.db import connection
from django.http import Http404
from django.utils import translation

from .resolution import SESSION_KEY, TenantNotSelectable, select_membership, selector_from_headers


class TenantFromPrincipalMiddleware:
    """Sets request.tenant / request.membership from the logged-in user and switches the schema.

    Every request starts in the public schema. API-key requests are resolved later, by
    accounts.authentication.ApiKeyAuthentication, because DRF authenticates inside the view.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        connection.set_schema_to_public()
        request.tenant = None
        request.membership = None
        try:
            if request.user.is_authenticated:
                tenant_id, slug = selector_from_headers(request.headers, request.get_host())
                try:
                    membership = select_membership(
                        request.user, tenant_id=tenant_id, slug=slug, remembered_id=request.session.get(SESSION_KEY)
                    )
                except TenantNotSelectable:
                    raise Http404("No such tenant")
                if membership is not None:
                    request.membership = membership
                    request.tenant = membership.tenant
                    if membership.tenant.has_schema:
                        connection.set_tenant(membership.tenant)
                    if not request.path.startswith("/api/"):  # the pages speak the workspace's language
                        translation.activate(membership.tenant.locale)
            return self.get_response(request)
        finally:
            translation.deactivate()
            connection.set_schema_to_public()
