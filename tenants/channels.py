"""Websocket counterpart of TenantFromPrincipalMiddleware: scope["tenant"] from the session user.

Consumers must run every database call under tenant_context(scope["tenant"]) and use group names that carry
the schema (t.<schema>.…). A connection naming a tenant the user does not belong to gets no tenant and is
closed by the consumer.
"""
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.http.request import HttpHeaders

from .resolution import SESSION_KEY, TenantNotSelectable, select_membership, selector_from_headers


@database_sync_to_async
def _resolve(user, headers, host, query, remembered_id):
    if not user.is_authenticated:
        return None
    tenant_id, slug = selector_from_headers(headers, host)
    # Browsers cannot set headers on websockets, so the page may pass the selection in the query string.
    tenant_id = tenant_id or (query.get("tenant_id") or [None])[0]
    slug = slug or (query.get("tenant") or [None])[0]
    try:
        return select_membership(user, tenant_id=tenant_id, slug=slug, remembered_id=remembered_id)
    except TenantNotSelectable:
        return None


class TenantPrincipalMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        raw = {k.decode("latin1"): v.decode("latin1") for k, v in scope.get("headers", [])}
        headers = HttpHeaders({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in raw.items()})
        query = parse_qs(scope.get("query_string", b"").decode())
        session = scope.get("session")
        remembered = session.get(SESSION_KEY) if session is not None else None
        membership = await _resolve(scope["user"], headers, raw.get("host", ""), query, remembered)
        scope = dict(scope, membership=membership, tenant=membership.tenant if membership else None)
        return await super().__call__(scope, receive, send)


def TenantPrincipalMiddlewareStack(inner):
    return AuthMiddlewareStack(TenantPrincipalMiddleware(inner))
