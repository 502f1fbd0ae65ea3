from django.urls import path

from . import views, webhooks

urlpatterns = [
    path("", views.billing, name="billing"),
    path("checkout", views.checkout, name="billing_checkout"),
    path("portal", views.portal, name="billing_portal"),
    path("switch-plan", views.switch_plan, name="billing_switch_plan"),
    path("return/", views.checkout_return, name="billing_return"),
    path("status.json", views.status_json, name="billing_status"),
    path("suspended/", views.suspended, name="billing_suspended"),
    path("notifications/read", views.notifications_read, name="notifications_read"),
    path("stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
]
