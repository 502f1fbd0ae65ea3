"""The subscription state machine, driven by a controllable clock: trial → reminders → read-only →
suspended → paid → active; plan changes; the admin's offline operations."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail

from accounts.models import Membership
from audit.models import AuditLog
from billing import actions
from billing.entitlements import access_for
from billing.models import Payment, Subscription
from billing.tasks import run_billing_clock as run_billing_clock_task
from tenants.models import Notification, Tenant

S = Subscription.Status


def subscription(tenant):
    return Subscription.objects.get(tenant=tenant)


def fresh(tenant):
    return Tenant.objects.select_related("subscription").get(pk=tenant.pk)


def tick(now, capture):
    with capture(execute=True):
        return actions.run_billing_clock(now=now)


def write(api):
    return api.post("/api/v1/api-keys", {"name": "ci"}, format="json")


def test_trial_reminders_read_only_suspension_and_payment(named, api_as, settings, django_capture_on_commit_callbacks):
    settings.BILLING_GRACE_DAYS = 7
    api = api_as(named.alice)
    trial_end = subscription(named.acme).trial_ends_at
    Subscription.objects.filter(tenant=named.globex).update(trial_ends_at=trial_end + timedelta(days=60))

    assert tick(trial_end - timedelta(days=4), django_capture_on_commit_callbacks)["reminders"] == 0

    three_days = trial_end - timedelta(days=3) + timedelta(minutes=1)
    assert tick(three_days, django_capture_on_commit_callbacks)["reminders"] == 1
    assert tick(three_days + timedelta(hours=1), django_capture_on_commit_callbacks)["reminders"] == 0
    one_day = trial_end - timedelta(hours=23)
    assert tick(one_day, django_capture_on_commit_callbacks)["reminders"] == 1
    assert tick(one_day, django_capture_on_commit_callbacks)["reminders"] == 0
    subjects = [m.subject for m in mail.outbox]
    assert subjects == ["[Switchboard] Your trial ends in 3 days", "[Switchboard] Your trial ends tomorrow"]
    assert all(m.to == ["alice@acme.test"] for m in mail.outbox)  # owners only, not bob
    assert Notification.objects.filter(tenant=named.acme, kind="trial_ending").count() == 2
    assert write(api).status_code == 201  # still on trial: everything works

    expired = trial_end + timedelta(minutes=1)
    assert tick(expired, django_capture_on_commit_callbacks)["read_only"] == 1
    assert tick(expired, django_capture_on_commit_callbacks)["read_only"] == 0
    sub = subscription(named.acme)
    assert sub.status == S.READ_ONLY and sub.read_only_since == expired
    access = access_for(fresh(named.acme))
    assert access.level == "read_only" and "trial has ended" in access.message
    response = write(api)
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "payment_required" and error["details"]["billing_url"] == "/billing/"
    assert api.get("/api/v1/me").status_code == 200  # reading still works
    assert api.get("/api/v1/me").json()["data"]["billing"]["access"] == "read_only"

    assert tick(expired + timedelta(days=7) - timedelta(minutes=1), django_capture_on_commit_callbacks)["suspended"] == 0
    suspended_at = expired + timedelta(days=7, minutes=1)
    assert tick(suspended_at, django_capture_on_commit_callbacks)["suspended"] == 1
    assert tick(suspended_at, django_capture_on_commit_callbacks)["suspended"] == 0
    assert subscription(named.acme).status == S.SUSPENDED
    assert access_for(fresh(named.acme)).level == "suspended"
    assert write(api).status_code == 402
    assert Tenant.objects.get(pk=named.acme.pk).status == "active"  # billing suspension is not an admin suspension

    paid_at = suspended_at + timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        actions.record_manual_payment(fresh(named.acme), acting_user=named.admin, amount="150000", currency="idr",
                                      interval="monthly", reference="BCA 123", now=paid_at)
    sub = subscription(named.acme)
    assert sub.status == S.ACTIVE and sub.read_only_since is None and sub.suspended_at is None
    assert sub.current_period_start == paid_at and sub.current_period_end.month == (paid_at.month % 12) + 1
    assert access_for(fresh(named.acme)).can_write
    assert write(api).status_code == 201
    payment = Payment.objects.get(tenant=named.acme)
    assert payment.amount == Decimal("150000.00") and payment.currency == "idr" and payment.source == "manual"
    actions_logged = list(AuditLog.objects.filter(tenant=named.acme, action__startswith="billing.")
                          .order_by("id").values_list("action", flat=True))
    assert actions_logged == ["billing.read_only.trial_expired", "billing.suspended", "billing.manual_payment"]

    # An active, paid subscription is left alone by the clock.
    assert tick(paid_at + timedelta(days=3), django_capture_on_commit_callbacks) == {
        "reminders": 0, "read_only": 0, "suspended": 0}


def test_the_beat_task_runs_the_clock(named):
    Subscription.objects.filter(tenant=named.acme).update(trial_ends_at=named.acme.trial_ends_at.replace(year=2000))
    result = run_billing_clock_task.delay().get()
    assert result["read_only"] == 1
    assert subscription(named.acme).status == S.READ_ONLY and subscription(named.globex).status == S.TRIALING


def test_paying_twice_extends_from_the_end_of_the_paid_period(named):
    first = actions.record_manual_payment(named.acme, acting_user=named.admin, amount="10", interval="monthly")
    second = actions.record_manual_payment(named.acme, acting_user=named.admin, amount="100", interval="yearly")
    assert second.period_start == first.period_end
    assert subscription(named.acme).current_period_end == second.period_end
    assert subscription(named.acme).interval == "yearly"


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "", "NaN", "Infinity", "1e20"])
def test_manual_payment_rejects_bad_amounts_without_rows(named, amount):
    from core.errors import DomainError

    with pytest.raises(DomainError) as error:
        actions.record_manual_payment(named.acme, acting_user=named.admin, amount=amount, interval="monthly")
    assert error.value.code == "invalid_amount"
    assert not Payment.objects.exists() and subscription(named.acme).status == S.TRIALING


def test_upgrade_applies_at_once_and_downgrade_below_usage_is_refused(named, api_as, plans):
    api = api_as(named.alice)
    actions.change_plan(named.acme, acting_user=named.admin, plan=plans["pro"])
    me = api.get("/api/v1/me").json()["data"]
    assert me["plan"]["code"] == "pro" and me["limits"]["max_sessions"] == 20
    assert Tenant.objects.get(pk=named.acme.pk).plan == plans["pro"]

    from core.errors import DomainError

    with pytest.raises(DomainError) as error:
        actions.change_plan(named.acme, acting_user=named.admin, plan=plans["free"])
    assert error.value.code == "downgrade_blocked"
    assert "you have 2 team members and Free allows 1: remove 1 first" in error.value.message
    assert subscription(named.acme).plan == plans["pro"]

    Membership.objects.filter(user=named.bob, tenant=named.acme).delete()
    actions.change_plan(named.acme, acting_user=named.admin, plan=plans["free"])
    assert api.get("/api/v1/me").json()["data"]["limits"]["max_users"] == 1


def test_extend_comp_and_cancel(named, api_as, plans, django_capture_on_commit_callbacks):
    api = api_as(named.alice)
    trial_end = subscription(named.acme).trial_ends_at
    Subscription.objects.filter(tenant=named.globex).update(trial_ends_at=trial_end + timedelta(days=60))
    tick(trial_end + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert write(api).status_code == 402

    actions.extend_trial(fresh(named.acme), acting_user=named.admin, days=5)
    sub = subscription(named.acme)
    assert sub.status == S.TRIALING and sub.read_only_since is None
    assert write(api).status_code == 201

    actions.comp_plan(fresh(named.acme), acting_user=named.admin, plan=plans["enterprise"])
    sub = subscription(named.acme)
    assert sub.status == S.ACTIVE and sub.comped and sub.plan == plans["enterprise"]
    assert tick(sub.trial_ends_at + timedelta(days=30), django_capture_on_commit_callbacks)["read_only"] == 0

    actions.cancel_subscription(fresh(named.acme), acting_user=named.admin)
    assert subscription(named.acme).status == S.CANCELED
    response = write(api)
    assert response.status_code == 402 and "canceled" in response.json()["error"]["message"]
    kinds = set(Notification.objects.filter(tenant=named.acme).values_list("kind", flat=True))
    assert {"read_only", "trial_extended", "comped", "canceled"} <= kinds
    audited = set(AuditLog.objects.filter(tenant=named.acme).values_list("action", flat=True))
    assert {"billing.trial_extended", "billing.comped", "billing.canceled"} <= audited


def test_admin_billing_api(named, api_as, plans):
    admin = api_as(named.admin)
    url = f"/api/v1/tenants/{named.acme.pk}"
    response = admin.post(f"{url}/payments", {"amount": "49.90", "interval": "monthly", "reference": "INV-7"},
                          format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["subscription"]["status"] == "active" and data["payments"][0]["amount"] == "49.90"
    response = admin.post(f"{url}/payments", {"amount": "-1", "interval": "monthly"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_amount"
    response = admin.post(f"{url}/payments", {"amount": "10", "interval": "weekly"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    assert Payment.objects.count() == 1
    assert admin.post("/api/v1/tenants/999999/payments", {"amount": "1", "interval": "monthly"},
                      format="json").status_code == 404
    response = admin.post(f"{url}/extend-trial", {"days": 3}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_on_trial"
    response = admin.patch(f"{url}/billing", {"plan": "free"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "downgrade_blocked"
    response = admin.post(f"{url}/comp", {"plan": "pro"}, format="json")
    assert response.json()["data"]["subscription"]["comped"] is True
    response = admin.post(f"{url}/cancel-subscription", format="json")
    assert response.json()["data"]["access"]["level"] == "read_only"

    for user in (named.alice, named.bob, named.carol):
        client = api_as(user)
        assert client.post(f"{url}/payments", {"amount": "1", "interval": "monthly"},
                           format="json").status_code == 403
        assert client.get(f"{url}/billing").status_code == 403


def test_members_read_their_own_billing_only(named, api_as):
    data = api_as(named.bob).get("/api/v1/billing").json()["data"]
    assert data["tenant_id"] == named.acme.pk and data["subscription"]["status"] == "trialing"
    assert data["usage"] == {"max_users": 2, "max_sessions": 0} and data["limits"]["max_users"] == 3
    assert api_as(named.carol).get("/api/v1/billing").json()["data"]["tenant_id"] == named.globex.pk


def test_a_trial_managed_by_stripe_is_left_to_stripe(named, django_capture_on_commit_callbacks):
    Subscription.objects.filter(tenant=named.acme).update(stripe_subscription_id="sub_123")
    trial_end = subscription(named.acme).trial_ends_at
    Subscription.objects.filter(tenant=named.globex).update(trial_ends_at=trial_end + timedelta(days=60))
    assert tick(trial_end + timedelta(days=1), django_capture_on_commit_callbacks) == {
        "reminders": 0, "read_only": 0, "suspended": 0}
    assert subscription(named.acme).status == S.TRIALING
