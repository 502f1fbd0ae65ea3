"""The billing pages: the tenant's Billing page (offline and Stripe modes), banners on every tenant page,
suspension for non-payment, notifications, the return from Checkout, and the platform admin's panel.

Stripe is never called here: the view tests replace billing.stripe_gateway's functions (the gateway's own
tests run it against a local fake)."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from audit.models import AuditLog
from billing import actions, stripe_gateway
from billing.errors import BillingError
from billing.models import Customer, Interval, Payment, Price, Subscription
from core.errors import DomainError
from tenants.models import Notification, Tenant

S = Subscription.Status


@pytest.fixture
def offline(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.BILLING_CURRENCY = "idr"
    settings.MONTHLY_PRICE = 150000
    settings.YEARLY_PRICE = 1500000
    settings.BILLING_OFFLINE_INSTRUCTIONS = "Transfer to BCA 123-456-7890 (PT Switchboard) and email the receipt."
    return settings


@pytest.fixture
def stripe_mode(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_not_used_here"
    return settings


def sub_of(tenant):
    return Subscription.objects.select_related("plan").get(tenant=tenant)


def page(client, url, **kwargs):
    response = client.get(url, **kwargs)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def make_read_only(tenant):
    """The tenant's trial ran out a minute ago and the billing clock noticed (other trials go on)."""
    now = sub_of(tenant).trial_ends_at + timedelta(minutes=1)
    Subscription.objects.exclude(tenant=tenant).update(trial_ends_at=now + timedelta(days=30))
    actions.run_billing_clock(now=now)
    assert sub_of(tenant).status == S.READ_ONLY


def make_suspended(tenant, settings):
    make_read_only(tenant)
    sub = sub_of(tenant)
    actions.run_billing_clock(now=sub.read_only_since + timedelta(days=settings.BILLING_GRACE_DAYS, minutes=1))
    assert sub_of(tenant).status == S.SUSPENDED


# --- the Billing page --------------------------------------------------------------------------------

def test_offline_page_shows_plan_status_instructions_and_prices(client, named, offline):
    Price.objects.all().delete()  # the seeded defaults: this is about a plan without its own price
    Price.objects.create(plan=named.acme.plan, interval=Interval.MONTHLY, amount=Decimal("49.90"), currency="usd")
    client.force_login(named.alice)
    html = page(client, "/billing/")
    assert 'data-testid="billing-plan">Basic<' in html
    assert "Free trial" in html and "7 days" in html and "left" in html
    assert "Transfer to BCA 123-456-7890" in html
    assert "Quote your workspace <code>acme</code>" in html
    # A Price row wins over the offline settings; every other plan and interval shows the settings' amount.
    assert "USD 49.90" in html
    assert "IDR 1,500,000" in html and "IDR 150,000" in html
    assert "Subscribe" not in html and "Manage billing" not in html
    assert 'data-testid="no-payments"' in html


def plan_card(html, code):
    return html.split(f'data-testid="plan-{code}"', 1)[1].split("</article>", 1)[0]


def test_every_plan_has_a_default_price_and_free_says_free(client, named, settings):
    settings.STRIPE_SECRET_KEY = ""
    client.force_login(named.alice)
    html = page(client, "/billing/")
    assert "Price on request" not in html
    free = plan_card(html, "free")
    assert 'data-testid="price-free"' in free and "<strong>Free</strong>" in free and "USD" not in free
    assert "<strong>USD 29</strong> / month" in plan_card(html, "basic")
    assert "<strong>USD 290</strong> / year" in plan_card(html, "basic")
    assert "<strong>USD 99</strong> / month" in plan_card(html, "pro")
    assert "<strong>USD 299</strong> / month" in plan_card(html, "enterprise")


def test_prices_edited_by_a_platform_admin_are_what_the_pages_show(client, named, settings):
    client.force_login(named.admin)
    price = Price.objects.get(plan__code="pro", interval=Interval.MONTHLY)
    response = client.post("/admin/billing/price/", {
        "form-TOTAL_FORMS": 1, "form-INITIAL_FORMS": 1, "form-0-id": price.pk, "form-0-amount": "119.00",
        "form-0-currency": "usd", "form-0-stripe_price_id": "", "_save": "Save"})
    assert response.status_code == 302
    assert "<strong>USD 119</strong> / month" in plan_card(page(client, "/"), "pro")
    client.force_login(named.alice)
    assert "<strong>USD 119</strong> / month" in plan_card(page(client, "/billing/"), "pro")


def test_a_free_plan_offers_no_stripe_checkout(client, named, stripe_mode):
    client.force_login(named.alice)
    html = page(client, "/billing/")
    assert "subscribe-free-monthly" not in html and 'data-testid="subscribe-basic-monthly"' in html


def test_stripe_page_shows_subscribe_and_manage_buttons(client, named, stripe_mode):
    Customer.objects.filter(tenant=named.acme).update(stripe_customer_id="cus_acme")
    client.force_login(named.alice)
    html = page(client, "/billing/")
    assert 'data-testid="subscribe-pro-monthly"' in html and 'data-testid="subscribe-pro-yearly"' in html
    assert 'action="/billing/checkout"' in html
    assert 'data-testid="manage-billing"' in html and 'action="/billing/portal"' in html
    assert "Transfer to BCA" not in html


def test_stripe_subscriber_manages_in_the_portal_instead_of_subscribing_again(client, named, stripe_mode):
    Customer.objects.filter(tenant=named.acme).update(stripe_customer_id="cus_acme")
    Subscription.objects.filter(tenant=named.acme).update(status=S.ACTIVE, stripe_subscription_id="sub_1",
                                                          current_period_end=timezone.now() + timedelta(days=30))
    client.force_login(named.alice)
    html = page(client, "/billing/")
    assert "subscribe-pro-monthly" not in html
    assert 'data-testid="manage-billing"' in html and "renews on" in html


def test_checkout_redirects_to_stripe(client, named, stripe_mode, monkeypatch):
    calls = []

    def fake_checkout(tenant, *, user, plan, interval):
        calls.append((tenant.pk, user.pk, plan.code, interval))
        return "https://checkout.stripe.com/c/pay/cs_test_123"

    monkeypatch.setattr(stripe_gateway, "start_checkout", fake_checkout)
    client.force_login(named.alice)
    response = client.post("/billing/checkout", {"plan": "pro", "interval": "yearly"})
    assert response.status_code == 302
    assert response["Location"] == "https://checkout.stripe.com/c/pay/cs_test_123"
    assert calls == [(named.acme.pk, named.alice.pk, "pro", "yearly")]


def test_checkout_and_portal_errors_are_page_messages(client, named, stripe_mode, monkeypatch):
    def refuse(*args, **kwargs):
        raise DomainError(BillingError.NO_PRICE, "The Pro plan has no yearly price yet.")

    monkeypatch.setattr(stripe_gateway, "start_checkout", refuse)
    monkeypatch.setattr(stripe_gateway, "open_portal", refuse)
    client.force_login(named.alice)
    for url, data in (("/billing/checkout", {"plan": "pro", "interval": "yearly"}), ("/billing/portal", {})):
        response = client.post(url, data, follow=True)
        assert response.redirect_chain == [("/billing/", 302)]
        assert "The Pro plan has no yearly price yet." in response.content.decode()
    # Bad input never reaches the gateway.
    response = client.post("/billing/checkout", {"plan": "platinum", "interval": "weekly"}, follow=True)
    assert "Choose one of the plans offered." in response.content.decode()


def test_portal_redirects_to_stripe(client, named, stripe_mode, monkeypatch):
    monkeypatch.setattr(stripe_gateway, "open_portal", lambda tenant, *, user: "https://billing.stripe.com/p/s_1")
    client.force_login(named.alice)
    response = client.post("/billing/portal")
    assert response.status_code == 302 and response["Location"] == "https://billing.stripe.com/p/s_1"


def test_offline_mode_has_no_checkout(client, named, offline, monkeypatch):
    monkeypatch.setattr(stripe_gateway, "start_checkout", lambda *a, **k: pytest.fail("Stripe called offline"))
    client.force_login(named.alice)
    response = client.post("/billing/checkout", {"plan": "pro", "interval": "monthly"}, follow=True)
    assert "Online payment is not available" in response.content.decode()


def test_member_sees_billing_read_only_and_cannot_change_it(client, named, stripe_mode, monkeypatch):
    monkeypatch.setattr(stripe_gateway, "start_checkout", lambda *a, **k: pytest.fail("a member reached Stripe"))
    monkeypatch.setattr(stripe_gateway, "open_portal", lambda *a, **k: pytest.fail("a member reached Stripe"))
    Customer.objects.filter(tenant=named.acme).update(stripe_customer_id="cus_acme")
    client.force_login(named.bob)
    html = page(client, "/billing/")
    assert 'data-testid="member-note"' in html and "alice@acme.test" in html
    assert "subscribe-pro-monthly" not in html and "manage-billing" not in html and "switch-pro" not in html
    for url in ("/billing/checkout", "/billing/portal", "/billing/switch-plan"):
        assert client.post(url, {"plan": "pro", "interval": "monthly"}).status_code == 403
    assert sub_of(named.acme).plan.code == "basic"


def test_owner_switches_plan_during_trial_and_a_downgrade_below_usage_is_refused(client, named, offline):
    client.force_login(named.alice)
    response = client.post("/billing/switch-plan", {"plan": "pro", "interval": "monthly"}, follow=True)
    assert "Your trial is now on the Pro plan." in response.content.decode()
    assert sub_of(named.acme).plan.code == "pro"
    assert Tenant.objects.get(pk=named.acme.pk).plan.code == "pro"

    # Acme has two members; Free allows one.
    response = client.post("/billing/switch-plan", {"plan": "free", "interval": "monthly"}, follow=True)
    html = response.content.decode()
    assert "Cannot move to Free: you have 2 team members and Free allows 1: remove 1 first." in html
    assert sub_of(named.acme).plan.code == "pro"


def test_payment_history_lists_every_payment(client, named, offline):
    actions.record_manual_payment(named.acme, acting_user=named.admin, amount="150000", interval="monthly",
                                  currency="idr", reference="BCA-7781")
    Payment.objects.create(tenant=named.acme, source=Payment.Source.STRIPE, status=Payment.Status.FAILED,
                           amount=Decimal("49.90"), currency="usd", stripe_invoice_id="in_1",
                           receipt_url="https://pay.stripe.com/receipts/in_1")
    Payment.objects.create(tenant=named.globex, source=Payment.Source.MANUAL, status=Payment.Status.PAID,
                           amount=Decimal("999"), currency="usd", reference="GLOBEX-ONLY")
    client.force_login(named.alice)
    html = page(client, "/billing/")
    assert html.count('data-testid="payment-row"') == 2
    assert "IDR 150,000" in html and "BCA-7781" in html and "Manual" in html
    assert "USD 49.90" in html and "Failed" in html and "Stripe" in html
    assert 'href="https://pay.stripe.com/receipts/in_1"' in html
    assert "GLOBEX-ONLY" not in html


# --- banners and enforcement on tenant pages -----------------------------------------------------------

def test_trial_banner_shows_days_left_on_tenant_pages(client, named):
    client.force_login(named.alice)
    for url in ("/dashboard/", "/dashboard/api-keys/", "/accounts/email/"):
        html = page(client, url)
        assert 'data-testid="trial-banner"' in html, url
        assert "<strong>7 days</strong> left in your free trial" in html and "choose a plan" in html
    Subscription.objects.filter(tenant=named.acme).update(trial_ends_at=timezone.now() + timedelta(hours=30))
    assert "<strong>2 days</strong> left in your free trial" in page(client, "/dashboard/")
    # The Billing page explains the state itself: no banner on top of it.
    assert 'data-testid="trial-banner"' not in page(client, "/billing/")


def test_comped_and_paid_tenants_see_no_trial_banner(client, named):
    actions.comp_plan(named.acme, acting_user=named.admin, plan=named.acme.plan)
    client.force_login(named.alice)
    html = page(client, "/dashboard/")
    assert 'data-testid="trial-banner"' not in html and "complimentary" in html


def test_read_only_banner_explains_why_and_refuses_new_api_keys(client, named):
    ApiKey.objects.all().delete()
    client.force_login(named.alice)
    client.post("/dashboard/api-keys/", {"name": "before"})
    make_read_only(named.acme)

    html = page(client, "/dashboard/")
    assert 'data-testid="read-only-banner"' in html and 'data-testid="trial-banner"' not in html
    assert "The trial has ended: this business is read-only until" in html
    assert 'href="/billing/">Pay now</a>' in html

    # Keys are listed, but a new one is refused with the reason.
    html = page(client, "/dashboard/api-keys/")
    assert "before" in html and 'data-testid="read-only-banner"' in html
    response = client.post("/dashboard/api-keys/", {"name": "after"}, follow=True)
    assert response.redirect_chain == [("/dashboard/api-keys/", 302)]
    assert "The trial has ended" in response.content.decode()
    assert list(ApiKey.objects.filter(tenant=named.acme).values_list("name", flat=True)) == ["before"]

    # The Billing page shows the reason and the remedy.
    html = page(client, "/billing/")
    assert 'data-testid="billing-problem"' in html and "Acme is read-only." in html
    assert "Transfer" in html or "bank transfer" in html
    # Globex is not affected.
    client.force_login(named.carol)
    assert 'data-testid="trial-banner"' in page(client, "/dashboard/")


def test_suspended_tenant_is_sent_to_the_explanation_but_can_still_pay(client, named, settings):
    make_suspended(named.acme, settings)
    client.force_login(named.alice)
    for url in ("/dashboard/", "/dashboard/api-keys/", "/home/"):
        response = client.get(url, follow=True)
        assert response.redirect_chain[-1] == ("/billing/suspended/", 302), url
    html = page(client, "/billing/suspended/")
    assert "Acme is suspended for non-payment" in html and 'href="/billing/"' in html and "Pay now" in html
    # Billing and the account pages stay reachable.
    html = page(client, "/billing/")
    assert 'data-testid="billing-problem"' in html and "suspended for non-payment" in html
    html = page(client, "/accounts/email/")
    assert 'data-testid="suspended-banner"' in html
    # Paying restores it at once.
    actions.record_manual_payment(named.acme, acting_user=named.admin, amount="150000", interval="monthly")
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/billing/suspended/")["Location"] == "/dashboard/"


# --- notifications -----------------------------------------------------------------------------------

def test_dashboard_lists_unread_notifications_and_marks_them_read(client, named):
    actions.extend_trial(named.acme, acting_user=named.admin, days=5)
    Notification.objects.create(tenant=named.acme, kind="trial_ending", message="Your trial ends in 3 days.")
    Notification.objects.create(tenant=named.globex, kind="trial_ending", message="Globex only notice.")
    client.force_login(named.bob)  # notifications are for every member, not only owners
    html = page(client, "/dashboard/")
    assert html.count('data-testid="notification"') == 2
    assert "Your trial ends in 3 days." in html and "Your trial was extended to" in html
    assert "Globex only notice." not in html

    response = client.post("/billing/notifications/read", follow=True)
    assert response.redirect_chain == [("/dashboard/", 302)]
    assert 'data-testid="notification"' not in response.content.decode()
    assert not Notification.objects.filter(tenant=named.acme, read_at__isnull=True).exists()
    assert Notification.objects.filter(tenant=named.globex, read_at__isnull=True).count() == 1


# --- back from Checkout ------------------------------------------------------------------------------

def test_return_page_waits_for_activation_through_the_status_endpoint(client, named):
    client.force_login(named.alice)
    html = page(client, "/billing/return/?session_id=cs_test_1")
    assert "Payment received — activating…" in html and 'data-status-url="/billing/status.json"' in html
    status = client.get("/billing/status.json").json()
    assert status == {"status": "trialing", "label": "Trial", "plan": "Basic", "active": False, "access": "full"}

    actions.record_manual_payment(named.acme, acting_user=named.admin, amount="49", interval="monthly")
    assert client.get("/billing/status.json").json()["active"] is True
    assert "Your subscription is active" in page(client, "/billing/return/")


# --- the platform admin's panel ------------------------------------------------------------------------

def panel(tenant):
    return f"/platform/tenants/{tenant.pk}/billing"


def test_tenants_list_links_to_the_billing_panel(client, named):
    client.force_login(named.admin)
    assert f'href="{panel(named.acme)}"' in page(client, "/platform/tenants/")
    html = page(client, panel(named.acme))
    assert "Billing of Acme" in html and "Free trial" in html


def test_manual_payment_activates_then_extends(client, named, offline):
    make_read_only(named.acme)
    client.force_login(named.admin)
    data = {"action": "manual_payment", "manual_payment-amount": "150000", "manual_payment-currency": "IDR",
            "manual_payment-interval": "monthly", "manual_payment-plan": "", "manual_payment-reference": "BCA-1"}
    response = client.post(panel(named.acme), data, follow=True)
    assert response.redirect_chain == [(panel(named.acme), 302)]
    html = response.content.decode()
    assert "Payment of IDR 150,000 recorded" in html
    sub = sub_of(named.acme)
    assert sub.status == S.ACTIVE and sub.read_only_since is None
    first_end = sub.current_period_end

    data.update({"manual_payment-interval": "yearly", "manual_payment-reference": "BCA-2"})
    html = client.post(panel(named.acme), data, follow=True).content.decode()
    sub = sub_of(named.acme)
    assert sub.current_period_start == first_end and sub.current_period_end.year == first_end.year + 1
    assert html.count('data-testid="payment-row"') == 2 and "BCA-1" in html and "BCA-2" in html
    payments = Payment.objects.filter(tenant=named.acme)
    assert {p.recorded_by_id for p in payments} == {named.admin.pk}
    assert {p.currency for p in payments} == {"idr"}
    assert AuditLog.objects.filter(tenant=named.acme, action="billing.manual_payment").count() == 2


@pytest.mark.parametrize("amount, message", [
    ("0", "The amount must be more than zero."),
    ("-5", "The amount must be more than zero."),
    ("abc", "Enter the amount as a number"),
    ("NaN", "Enter the amount as a number"),
    ("1e20", "Enter the amount as a number"),
    ("99999999999", "That amount is too large."),
    ("", "This field is required."),
])
def test_bad_manual_payment_is_a_message_and_writes_nothing(client, named, amount, message):
    client.force_login(named.admin)
    before = sub_of(named.acme)
    response = client.post(panel(named.acme), {
        "action": "manual_payment", "manual_payment-amount": amount, "manual_payment-currency": "usd",
        "manual_payment-interval": "monthly",
    })
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Payment.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="billing.").exists()
    assert sub_of(named.acme).status == before.status == S.TRIALING


def test_bad_panel_input_is_a_message(client, named):
    client.force_login(named.admin)
    cases = [
        ({"action": "manual_payment", "manual_payment-amount": "10", "manual_payment-currency": "rupiah",
          "manual_payment-interval": "monthly"}, "Ensure this value has at most 3 characters"),
        ({"action": "manual_payment", "manual_payment-amount": "10", "manual_payment-currency": "usd",
          "manual_payment-interval": "weekly"}, "Select a valid choice"),
        ({"action": "extend_trial", "extend_trial-days": "0"}, "Extend the trial by 1 to 365 days."),
        ({"action": "extend_trial", "extend_trial-days": "many"}, "Enter a whole number of days."),
        ({"action": "comp", "comp-plan": "999999"}, "Select a valid choice"),
        ({"action": "launch_rockets"}, "Unknown billing action."),
    ]
    for data, message in cases:
        response = client.post(panel(named.acme), data)
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
    assert not AuditLog.objects.filter(action__startswith="billing.").exists()
    assert not Notification.objects.exists()


def test_non_admins_cannot_open_or_use_the_panel(client, named):
    for user in (named.alice, named.bob, named.carol):
        client.force_login(user)
        assert client.get(panel(named.acme)).status_code == 403
        assert client.post(panel(named.acme), {"action": "cancel"}).status_code == 403
    assert sub_of(named.acme).status == S.TRIALING
    client.logout()
    assert client.get(panel(named.acme))["Location"].startswith("/accounts/login/")


def test_unknown_or_pooled_tenant_is_404(client, named, pooled_schema):
    client.force_login(named.admin)
    assert client.get("/platform/tenants/999999/billing").status_code == 404
    pooled = Tenant.objects.get(status=Tenant.Status.POOLED)
    assert client.get(panel(pooled)).status_code == 404


@pytest.mark.parametrize("data, audit_action, notification_kind, status", [
    ({"action": "extend_trial", "extend_trial-days": "14"}, "billing.trial_extended", "trial_extended",
     S.TRIALING),
    ({"action": "comp", "comp-plan": "pro"}, "billing.comped", "comped", S.ACTIVE),
    ({"action": "cancel"}, "billing.canceled", "canceled", S.CANCELED),
])
def test_admin_operations_write_an_audit_row_and_notify_the_tenant(client, named, plans, data, audit_action,
                                                                    notification_kind, status):
    if "comp-plan" in data:
        data = {**data, "comp-plan": plans["pro"].pk}
    client.force_login(named.admin)
    response = client.post(panel(named.acme), data, follow=True)
    assert response.redirect_chain == [(panel(named.acme), 302)]
    assert 'class="msg success"' in response.content.decode()
    assert sub_of(named.acme).status == status
    row = AuditLog.objects.get(action=audit_action)
    assert row.tenant_id == named.acme.pk and row.actor_id == named.admin.pk
    assert Notification.objects.filter(tenant=named.acme, kind=notification_kind).count() == 1
    assert not Notification.objects.filter(tenant=named.globex).exists()


def test_extend_trial_moves_the_end(client, named):
    end = sub_of(named.acme).trial_ends_at
    client.force_login(named.admin)
    client.post(panel(named.acme), {"action": "extend_trial", "extend_trial-days": "14"})
    assert sub_of(named.acme).trial_ends_at == end + timedelta(days=14)


def test_action_refusals_are_messages_not_errors(client, named, plans):
    client.force_login(named.admin)
    client.post(panel(named.acme), {"action": "cancel"})
    response = client.post(panel(named.acme), {"action": "cancel"})
    assert response.status_code == 409
    assert "This subscription is already canceled." in response.content.decode()

    response = client.post(panel(named.acme), {"action": "change_plan", "change_plan-plan": plans["free"].pk,
                                               "change_plan-interval": ""})
    assert response.status_code == 409
    assert "Cannot move to Free: you have 2 team members" in response.content.decode()
    assert sub_of(named.acme).plan.code == "basic"

    response = client.post(panel(named.acme), {"action": "change_plan", "change_plan-plan": plans["pro"].pk,
                                               "change_plan-interval": "yearly"}, follow=True)
    assert "Acme is now on Pro." in response.content.decode()
    sub = sub_of(named.acme)
    assert sub.plan.code == "pro" and sub.interval == "yearly"
    assert AuditLog.objects.filter(action="billing.plan_changed", actor=named.admin).count() == 1


def test_a_checkout_with_trial_counts_as_done_and_its_plan_is_changed_in_stripe_only(client, named, plans):
    from billing.models import Subscription

    Subscription.objects.filter(tenant=named.acme).update(stripe_subscription_id="sub_trial_1")
    client.force_login(named.alice)
    assert client.get("/billing/status.json").json()["active"] is True
    response = client.post("/billing/switch-plan", {"plan": "pro", "interval": "monthly"}, follow=True)
    assert "managed in Stripe" in response.content.decode()
    assert Subscription.objects.get(tenant=named.acme).plan == plans["basic"]
