"""The Content-Security-Policy header (django-csp), with the site's own websocket origin allowed to connect.

CSP Level 3 lets 'self' match ws:/wss: on the page's own host, but browsers that predate it do not: the live
pages' sockets (channels) are named explicitly, for the host the request came to only.
"""
from csp.constants import SELF
from csp.middleware import CSPMiddleware
from django.core.exceptions import DisallowedHost


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only=report_only)
        try:
            host = request.get_host()
        except DisallowedHost:  # the request was refused already (400): no socket to allow
            return parts
        socket_origin = f"{'wss' if request.is_secure() else 'ws'}://{host}"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), SELF, socket_origin]
        parts.update = update
        return parts
