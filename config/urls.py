"""One URL map for everything. The tenant is not taken from the URL or host but from the principal
(tenants.middleware / accounts.authentication), so public and tenant pages share this map."""
from allauth.account.decorators import secure_admin_login
from allauth.account.views import SignupView
from django.contrib import admin
from django.db import transaction
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import api as accounts_api
from accounts import audit_log
from accounts import views as accounts_views
from accounts import workspace as accounts_workspace
from alerts import views as alert_views
from analytics.metrics import metrics_view
from backups import urls as backup_urls
from billing import api as billing_api
from billing import views as billing_views
from config import platform_metrics
from config.health import DetailedHealthView, liveness
from tenants import api as tenants_api
from tenants import views as tenants_views

# The admin signs in through allauth's login (its lockout after failed attempts, 2FA), not Django's own form, which
# would let anyone guess a staff password without limit (allauth's documented way).
admin.site.login = secure_admin_login(admin.site.login)

api_v1 = [
    # Messages first: the busiest routes are matched first (whatsapp/messages_api.py).
    path("", include("whatsapp.messaging.api")),
    path("me", accounts_api.MeView.as_view(), name="api_me"),
    path("workspace", accounts_workspace.WorkspaceView.as_view(), name="api_workspace"),
    path("workspace/deletion", accounts_workspace.WorkspaceDeletionView.as_view(), name="api_workspace_deletion"),
    path("api-keys", accounts_api.ApiKeyListView.as_view(), name="api_api_keys"),
    path("api-keys/<int:pk>", accounts_api.ApiKeyDetailView.as_view(), name="api_api_key"),
    path("api-keys/<int:pk>/rotate", accounts_api.ApiKeyRotateView.as_view(), name="api_api_key_rotate"),
    path("members", accounts_api.MemberListView.as_view(), name="api_members"),
    path("members/<int:pk>", accounts_api.MemberDetailView.as_view(), name="api_member"),
    path("invitations", accounts_api.InvitationListView.as_view(), name="api_invitations"),
    path("invitations/<int:pk>", accounts_api.InvitationDetailView.as_view(), name="api_invitation"),
    path("audit-log", audit_log.AuditLogView.as_view(), name="api_audit_log"),
    path("health/detailed", DetailedHealthView.as_view(), name="api_health_detailed"),
    # The platform's metrics: platform admins only (config/platform_metrics.py).
    path("", include(platform_metrics.api_urlpatterns)),
    path("tenants", accounts_api.TenantListView.as_view(), name="api_tenants"),
    path("tenants/<int:pk>", tenants_api.TenantDetailView.as_view(), name="api_tenant"),
    path("tenants/<int:pk>/stats", tenants_api.TenantStatsView.as_view(), name="api_tenant_stats"),
    path("tenants/<int:pk>/settings", tenants_api.TenantSettingsView.as_view(), name="api_tenant_settings"),
    path("tenants/<int:pk>/approve", tenants_api.ApproveView.as_view(), name="api_tenant_approve"),
    path("tenants/<int:pk>/reject", tenants_api.RejectView.as_view(), name="api_tenant_reject"),
    path("tenants/<int:pk>/suspend", tenants_api.SuspendView.as_view(), name="api_tenant_suspend"),
    path("tenants/<int:pk>/reactivate", tenants_api.ReactivateView.as_view(), name="api_tenant_reactivate"),
    path("billing", billing_api.OwnBillingView.as_view(), name="api_billing"),
    path("tenants/<int:pk>/billing", billing_api.AdminBillingView.as_view(), name="api_tenant_billing"),
    path("tenants/<int:pk>/payments", billing_api.admin_action("payments", billing_api.ManualPaymentSerializer),
         name="api_tenant_payments"),
    path("tenants/<int:pk>/extend-trial", billing_api.admin_action("extend-trial", billing_api.ExtendTrialSerializer),
         name="api_tenant_extend_trial"),
    path("tenants/<int:pk>/comp", billing_api.admin_action("comp", billing_api.PlanSerializer), name="api_tenant_comp"),
    path("tenants/<int:pk>/cancel-subscription", billing_api.admin_action("cancel-subscription", None),
         name="api_tenant_cancel_subscription"),
    # WhatsApp sessions and the simulator's test helpers (whatsapp/api.py holds their routes).
    path("", include("whatsapp.sessions.api")),
    # Webhook endpoints and deliveries (whatsapp/webhooks/api.py).
    path("", include("whatsapp.webhooks.api")),
    # Contacts, groups and conversations (whatsapp/directory_api.py).
    path("", include("whatsapp.conversations.api")),
    path("", include("whatsapp.inbox.api")),
    # The receptionist: business hours, automatic answers, keyword rules, handoff (whatsapp/automation/api.py).
    path("", include("whatsapp.automation.api")),
    # Broadcasts: audience contacts, opt-outs, templates, campaigns (whatsapp/campaigns/api.py).
    path("", include("whatsapp.campaigns.api")),
    # Blocked numbers and the pacing policy (whatsapp/sending_api.py).
    path("", include("whatsapp.messaging.policy_api")),
    # Analytics: figures, trends, custom events (analytics/api.py).
    path("", include("analytics.api")),
    # A workspace's alert history and alert settings (alerts/api.py).
    path("", include("alerts.api")),
    # Backups, restores and tenant exports: platform admins only (backups/api.py).
    path("", include("backups.api")),
]

urlpatterns = [
    # The API first: its routes are the busiest, and a resolver tries the patterns in order.
    path("api/v1/", include(api_v1)),
    path("", accounts_views.landing, name="landing"),
    path("health", liveness, name="health"),
    path("metrics", metrics_view, name="metrics"),
    # Sign-up creates a user, a pending tenant and a membership: all or nothing.
    path("accounts/signup/", transaction.atomic(SignupView.as_view()), name="account_signup"),
    path("accounts/", include("allauth.urls")),
    path("home/", tenants_views.home, name="home"),
    path("awaiting-approval/", tenants_views.awaiting_approval, name="awaiting_approval"),
    path("provisioning/", tenants_views.provisioning, name="provisioning"),
    path("rejected/", tenants_views.rejected, name="rejected"),
    path("suspended/", tenants_views.suspended, name="suspended"),
    path("status.json", tenants_views.tenant_status_json, name="tenant_status_json"),
    path("dashboard/", accounts_views.dashboard_page, name="dashboard"),
    path("dashboard/api-keys/", accounts_views.api_keys, name="api_keys"),
    path("dashboard/settings/", accounts_workspace.workspace_settings, name="workspace_settings"),
    path("dashboard/settings/delete", accounts_workspace.schedule_deletion, name="workspace_delete"),
    path("dashboard/settings/delete/cancel", accounts_workspace.cancel_deletion, name="workspace_delete_cancel"),
    path("dashboard/api-keys/<int:key_id>/revoke", accounts_views.revoke_api_key, name="revoke_api_key"),
    path("dashboard/api-keys/<int:key_id>/rotate", accounts_views.rotate_api_key, name="rotate_api_key"),
    path("members/", accounts_views.members_page, name="members"),
    path("audit/", audit_log.audit_page, name="audit_log"),
    path("audit/export.csv", audit_log.audit_export, name="audit_export"),
    path("invitations/<str:token>/", accounts_views.accept_invitation, name="accept_invitation"),
    path("billing/", include("billing.urls")),
    path("sessions/", include("whatsapp.sessions.urls")),
    path("conversations/", include("whatsapp.inbox.urls")),
    path("webhooks/", include("whatsapp.webhooks.urls")),
    path("automation/", include("whatsapp.automation.urls")),
    path("sending/", include("whatsapp.messaging.urls")),
    path("analytics/", include("analytics.urls")),
    path("alerts/", include("alerts.urls")),
    path("broadcasts/", include("whatsapp.campaigns.urls")),
    path("data-export/", include(backup_urls.export_urlpatterns)),
    path("platform/backups/", include("backups.urls")),
    path("switch/<int:tenant_id>", tenants_views.switch_tenant, name="switch_tenant"),
    path("platform/", tenants_views.platform_approvals, name="platform_approvals"),
    path("platform/tenants/", tenants_views.platform_tenants, name="platform_tenants"),
    path("platform/alerts/", alert_views.alert_history, name="platform_alerts"),
    path("platform/metrics/", platform_metrics.metrics_page, name="platform_metrics"),
    # Before the <verb> route, which would take "billing" for a verb.
    path("platform/tenants/<int:tenant_id>/billing", billing_views.platform_tenant_billing,
         name="platform_tenant_billing"),
    path("platform/tenants/<int:tenant_id>/<str:verb>", tenants_views.platform_tenant_action,
         name="platform_tenant_action"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # The split view serves its start-up script from a URL, not inline: the Content-Security-Policy allows none.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
]

# Errors outside the views' own handling: JSON under /api/, branded pages elsewhere (config.errors).
handler400 = "config.errors.bad_request"
handler403 = "config.errors.forbidden"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
