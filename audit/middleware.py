import ipaddress

from . import context


def client_ip(request):
    """The address the request came from: REMOTE_ADDR, which the web process (daphne) sets from the proxy's
    X-Forwarded-For when started behind one with `scripts/web.py -- --proxy-headers`. None when it is not an
    IP address."""
    address = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class AuditContextMiddleware:
    """Every audit row written while handling a request carries the request's IP (and key, audit.context)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = context.begin(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            context.end(token)
