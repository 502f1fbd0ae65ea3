"""Roles of a workspace's members and the one table of what each may do. The API (HasActiveTenant → RoleAllows),
the pages (permission_required, can) and the websockets (socket_can) all ask this module; nothing else compares
role names.

An API key acts with its user's role narrowed by its scopes (SCOPES maps each permission to the scope a key needs
for it): role ∩ scopes, never more than the role.

An API view declares what it needs with `required_permission = Perm.X` (every method) or
`required_permissions = {"GET": Perm.X, "POST": Perm.Y}`; a page with `@permission_required(Perm.X)`. A view that
declares nothing is refused (fail closed), and tests/test_permission_matrix.py fails for it.
"""
import enum
import functools

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404
from rest_framework import permissions as drf_permissions

from .errors import CommonError, DomainError


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    AGENT = "agent", "Agent"
    VIEWER = "viewer", "Viewer"


class Perm(str, enum.Enum):
    # Markers outside the role table: who may call no matter the role.
    PUBLIC = "public"  # anyone, signed in or not
    SIGNED_IN = "signed_in"  # any signed-in principal, with or without a workspace
    PLATFORM = "platform"  # platform admins only: no workspace role grants it

    WORKSPACE_READ = "workspace.read"  # the dashboard, the workspace's own pages
    MESSAGES_READ = "messages.read"
    MESSAGES_SEND = "messages.send"
    CONVERSATIONS_READ = "conversations.read"  # conversations, contacts, groups
    CONVERSATIONS_REPLY = "conversations.reply"  # answer and assign conversations, leave internal notes
    CANNED_REPLIES_MANAGE = "canned_replies.manage"  # the inbox's saved answers (every member reads and uses them)
    CONTACTS_MANAGE = "contacts.manage"  # sync, delete contacts
    SESSIONS_READ = "sessions.read"
    SESSIONS_MANAGE = "sessions.manage"  # create, start, link, unlink, delete
    WEBHOOKS_READ = "webhooks.read"
    WEBHOOKS_MANAGE = "webhooks.manage"  # endpoints and replays
    SETTINGS_READ = "settings.read"  # pacing, blocked numbers, workspace settings
    SETTINGS_MANAGE = "settings.manage"
    API_KEYS_MANAGE = "api_keys.manage"  # one's own keys in the workspace
    API_KEYS_REVOKE_OWN = "api_keys.revoke_own"  # taking access away is always possible
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"  # invite, change roles, remove
    OWNERSHIP_TRANSFER = "ownership.transfer"
    WORKSPACE_SECURITY = "workspace.security"  # require two-factor authentication of every member
    AUDIT_READ = "audit.read"
    ANALYTICS_READ = "analytics.read"  # analytics figures, usage
    ALERTS_READ = "alerts.read"  # the workspace's alert history and alert settings
    ALERTS_MANAGE = "alerts.manage"  # which alerts the workspace is told about, and where
    ANALYTICS_EVENTS = "analytics.events"  # record custom analytics events
    CAMPAIGNS_READ = "campaigns.read"  # broadcasts: audiences, opt-outs, campaigns
    CAMPAIGNS_MANAGE = "campaigns.manage"
    BILLING_READ = "billing.read"
    BILLING_MANAGE = "billing.manage"
    DATA_EXPORT = "data.export"
    WORKSPACE_DELETE = "workspace.delete"

    def __str__(self):
        return self.value


O, A, G, V = Role.OWNER, Role.ADMIN, Role.AGENT, Role.VIEWER
EVERYONE = frozenset({O, A, G, V})
MANAGERS = frozenset({O, A})

# The table: permission → the roles that have it. README.md shows it (tests/test_permission_matrix.py checks).
PERMISSIONS = {
    Perm.PUBLIC: EVERYONE,
    Perm.SIGNED_IN: EVERYONE,
    Perm.PLATFORM: frozenset(),
    Perm.WORKSPACE_READ: EVERYONE,
    Perm.MESSAGES_READ: EVERYONE,
    Perm.MESSAGES_SEND: frozenset({O, A, G}),
    Perm.CONVERSATIONS_READ: EVERYONE,
    Perm.CONVERSATIONS_REPLY: frozenset({O, A, G}),
    Perm.CANNED_REPLIES_MANAGE: MANAGERS,
    Perm.CONTACTS_MANAGE: frozenset({O, A, G}),
    Perm.SESSIONS_READ: EVERYONE,
    Perm.SESSIONS_MANAGE: MANAGERS,
    Perm.WEBHOOKS_READ: EVERYONE,
    Perm.WEBHOOKS_MANAGE: MANAGERS,
    Perm.SETTINGS_READ: EVERYONE,
    Perm.SETTINGS_MANAGE: MANAGERS,
    Perm.API_KEYS_MANAGE: MANAGERS,
    Perm.API_KEYS_REVOKE_OWN: EVERYONE,
    Perm.MEMBERS_READ: EVERYONE,
    Perm.MEMBERS_MANAGE: MANAGERS,
    Perm.OWNERSHIP_TRANSFER: frozenset({O}),
    Perm.WORKSPACE_SECURITY: frozenset({O}),
    Perm.AUDIT_READ: MANAGERS,
    Perm.ANALYTICS_READ: EVERYONE,
    Perm.ALERTS_READ: EVERYONE,
    Perm.ALERTS_MANAGE: MANAGERS,
    Perm.ANALYTICS_EVENTS: frozenset({O, A, G}),
    Perm.CAMPAIGNS_READ: EVERYONE,
    Perm.CAMPAIGNS_MANAGE: MANAGERS,
    Perm.BILLING_READ: EVERYONE,
    Perm.BILLING_MANAGE: frozenset({O}),
    Perm.DATA_EXPORT: frozenset({O}),
    Perm.WORKSPACE_DELETE: frozenset({O}),
}


class Scope(models.TextChoices):
    """What an API key may be used for, on top of what its user's role allows."""
    MESSAGES_SEND = "messages:send", "Send messages"
    READ = "read", "Read"
    MANAGE = "manage", "Manage"


# The scope a key needs for each permission (None: any key). Like PERMISSIONS, one entry per permission.
SCOPES = {
    Perm.PUBLIC: None,
    Perm.SIGNED_IN: None,
    Perm.PLATFORM: Scope.MANAGE,  # a platform admin's key acts on every tenant: only a key made to manage
    Perm.WORKSPACE_READ: Scope.READ,
    Perm.MESSAGES_READ: Scope.READ,
    Perm.MESSAGES_SEND: Scope.MESSAGES_SEND,
    Perm.CONVERSATIONS_READ: Scope.READ,
    Perm.CONVERSATIONS_REPLY: Scope.MESSAGES_SEND,  # answering and assigning is the work of sending
    Perm.CANNED_REPLIES_MANAGE: Scope.MANAGE,
    Perm.CONTACTS_MANAGE: Scope.MANAGE,
    Perm.SESSIONS_READ: Scope.READ,
    Perm.SESSIONS_MANAGE: Scope.MANAGE,
    Perm.WEBHOOKS_READ: Scope.READ,
    Perm.WEBHOOKS_MANAGE: Scope.MANAGE,
    Perm.SETTINGS_READ: Scope.READ,
    Perm.SETTINGS_MANAGE: Scope.MANAGE,
    Perm.API_KEYS_MANAGE: Scope.MANAGE,
    Perm.API_KEYS_REVOKE_OWN: Scope.MANAGE,  # a leaked read-only key must not cut its user's other keys
    Perm.MEMBERS_READ: Scope.READ,
    Perm.MEMBERS_MANAGE: Scope.MANAGE,
    Perm.OWNERSHIP_TRANSFER: Scope.MANAGE,
    Perm.WORKSPACE_SECURITY: Scope.MANAGE,
    Perm.AUDIT_READ: Scope.READ,
    Perm.ANALYTICS_READ: Scope.READ,
    Perm.ALERTS_READ: Scope.READ,
    Perm.ALERTS_MANAGE: Scope.MANAGE,
    Perm.ANALYTICS_EVENTS: Scope.MESSAGES_SEND,  # an integration records its traffic's events as it sends
    Perm.CAMPAIGNS_READ: Scope.READ,
    Perm.CAMPAIGNS_MANAGE: Scope.MANAGE,
    Perm.BILLING_READ: Scope.READ,
    Perm.BILLING_MANAGE: Scope.MANAGE,
    Perm.DATA_EXPORT: Scope.MANAGE,
    Perm.WORKSPACE_DELETE: Scope.MANAGE,
}
ALL_SCOPES = tuple(scope.value for scope in Scope)

# Markers a principal without a workspace role may pass (PLATFORM is the platform admin's, checked by its own class).
WITHOUT_ROLE = frozenset({Perm.PUBLIC, Perm.SIGNED_IN, Perm.PLATFORM})


def allows(role, perm):
    """Whether a member with `role` has `perm`."""
    return role in PERMISSIONS[Perm(perm)]


def roles_with(perm):
    return [role for role in Role if allows(role, perm)]


def can(membership, perm):
    """Whether the principal acting through `membership` (None: no workspace) has `perm`."""
    if perm in WITHOUT_ROLE and perm != Perm.PLATFORM:
        return True
    return membership is not None and allows(membership.role, perm)


def refusal(perm):
    return DomainError(CommonError.PERMISSION_DENIED,
                       f"Your role does not allow this ({perm}). Ask an owner or admin of the workspace.",
                       {"permission": str(perm)})


def scope_needed(perm):
    return SCOPES[Perm(perm)]


def key_allows(scopes, perm):
    """Whether an API key with `scopes` may be used for `perm` (its user's role is asked separately)."""
    needed = scope_needed(perm)
    return needed is None or needed in scopes


def require_scope(scopes, perm):
    """Raise DomainError insufficient_scope (403), naming the scope needed, unless `scopes` cover `perm`."""
    if not key_allows(scopes, perm):
        needed = scope_needed(perm)
        raise DomainError(CommonError.INSUFFICIENT_SCOPE,
                          f"This API key lacks the '{needed}' scope this needs ({perm}). Use a key with it, or "
                          f"make one on the API keys page.", {"scope": str(needed), "permission": str(perm)})


def require(membership, perm):
    """Raise DomainError permission_denied (403) unless the membership has `perm`."""
    if not can(membership, perm):
        raise refusal(perm)


def can_manage(role):
    """Owners and admins change the workspace's settings, sessions, keys and webhooks."""
    return allows(role, Perm.SETTINGS_MANAGE)


def can_export_data(role):
    """Only owners take a copy of all the workspace's data (GDPR export)."""
    return allows(role, Perm.DATA_EXPORT)


# --- the API -----------------------------------------------------------------------------------------------------

def declared_permission(view, method):
    """The permission a view declares for `method` (HEAD and OPTIONS read as GET), or None."""
    method = "GET" if method in ("HEAD", "OPTIONS") else method
    by_method = getattr(view, "required_permissions", None)
    if by_method is not None:
        return by_method.get(method)
    return getattr(view, "required_permission", None)


class RoleAllows(drf_permissions.BasePermission):
    """The caller's role must have what the view declares for the method (403 permission_denied otherwise). Runs
    after the tenant is known (tenants.permissions.HasActiveTenant calls it)."""

    def has_permission(self, request, view):
        perm = declared_permission(view, request.method)
        if perm is None:
            raise refusal("undeclared")
        require(getattr(request._request, "membership", None), perm)
        return True


# --- pages ---------------------------------------------------------------------------------------------------------

def page_allows(request, perm):
    """Whether the page's visitor has `perm`: PLATFORM for platform admins, the rest by their membership."""
    if perm == Perm.PLATFORM:
        user = getattr(request, "user", None)
        return bool(user and user.is_authenticated and user.is_platform_admin)
    return can(getattr(request, "membership", None), perm)


def permission_required(perm, *, hide=False, **by_method):
    """A page's permission: `perm` for reading it, and `POST=Perm.X` for a method that needs more. Refused: the
    403 page (a 404 with hide=True, for pages whose existence is not for everyone). Put it under the decorators
    that settle the tenant (active_tenant_required, billing_access_required), so a visitor without a workspace is
    sent where they belong first."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            wanted = by_method.get(request.method, perm)
            if not page_allows(request, wanted):
                if hide:
                    raise Http404
                raise PermissionDenied(f"Your role does not allow this ({wanted}).")
            return view(request, *args, **kwargs)

        wrapper.required_permission = perm
        wrapper.required_permissions = {"GET": perm, **by_method}
        return wrapper

    return decorate


def page_permission(view):
    """What a page view (possibly wrapped by other decorators) declares for GET, or None."""
    while view is not None:
        declared = getattr(view, "required_permissions", None)
        if declared is not None:
            return declared.get("GET")
        view = getattr(view, "__wrapped__", None)
    return None


# --- websockets ----------------------------------------------------------------------------------------------------

def socket_can(scope, perm):
    """Whether the socket's principal (scope["membership"], set by tenants.channels) has `perm`."""
    return can(scope.get("membership"), perm)
