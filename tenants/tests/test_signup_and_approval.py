"""Sign-up on the web form, email confirmation, the awaiting page, and the admin's approval panel."""
import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail

from accounts.models import Membership
from audit.models import AuditLog
from conftest import PASSWORD, make_user
from tenants.models import Domain, Tenant

User = get_user_model()


def signup_data(plans, **overrides):
    data = {
        "business_name": "Kopi Kenangan",
        "full_name": "Dewi Owner",
        "email": "dewi@kopi.test",
        "phone": "+6281234567890",
        "plan": plans["basic"].pk,
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    data.update(overrides)
    return data


def confirm_link(message):
    return re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+)", message.body).group(1)


def test_signup_creates_pending_tenant_owner_and_sends_confirmation(client, plans, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/signup/", signup_data(plans))
    assert response.status_code == 302
    user = User.objects.get(email="dewi@kopi.test")
    assert user.full_name == "Dewi Owner" and user.phone == "+6281234567890"
    tenant = Tenant.objects.get(slug="kopi-kenangan")
    assert tenant.status == Tenant.Status.PENDING and tenant.plan == plans["basic"]
    assert tenant.contact_phone == "+6281234567890"
    assert Membership.objects.get(user=user, tenant=tenant).role == "owner"
    assert not EmailAddress.objects.get(user=user).verified
    assert AuditLog.objects.filter(action="tenant.registered", tenant=tenant).exists()
    assert len(mail.outbox) == 1 and "confirm" in mail.outbox[0].subject.lower()

    # Confirming the email logs the owner in and shows the awaiting-approval page.
    link = confirm_link(mail.outbox[0])
    response = client.post(link, follow=True)
    assert EmailAddress.objects.get(user=user).verified
    assert response.redirect_chain[-1][0] == "/awaiting-approval/"
    assert b"awaiting approval" in response.content


@pytest.mark.parametrize(
    "overrides, field, fragment",
    [
        ({"phone": "12345"}, "phone", "international format"),
        ({"phone": "+1 555 000"}, "phone", "not a valid phone number"),
        ({"password1": "password123", "password2": "password123"}, "password1", "too common"),
        ({"password2": "something-else-entirely"}, "password2", "same password"),
        ({"business_name": "!!!"}, "business_name", "letters or digits"),
    ],
)
def test_signup_rejects_bad_input_with_a_clear_message_and_no_rows(client, plans, overrides, field, fragment):
    response = client.post("/accounts/signup/", signup_data(plans, **overrides))
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert fragment in errors
    assert not User.objects.exists() and not Tenant.objects.exists() and not Membership.objects.exists()


def test_signup_rejects_duplicate_email_and_duplicate_business(client, named, plans):
    response = client.post("/accounts/signup/", signup_data(plans, email="alice@acme.test"))
    assert "already registered" in " ".join(response.context["form"].errors["email"])
    response = client.post("/accounts/signup/", signup_data(plans, business_name="ACME"))
    assert "already registered" in " ".join(response.context["form"].errors["business_name"])
    assert Tenant.objects.count() == 2 and User.objects.count() == 4


def test_a_failure_after_the_user_row_leaves_no_partial_rows(client, plans, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("accounts.forms.register_business", boom)
    client.raise_request_exception = False
    response = client.post("/accounts/signup/", signup_data(plans))
    assert response.status_code == 500
    assert not User.objects.exists() and not Tenant.objects.exists()


@pytest.fixture
def pending(plans):
    from accounts.actions import register_business

    owner = make_user("dewi@kopi.test", full_name="Dewi Owner")
    tenant = register_business(user=owner, business_name="Kopi Kenangan", plan=plans["basic"], phone="+6281234567890")
    return tenant, owner


def test_admin_sees_pending_badge_and_signup_details(client, named, pending):
    tenant, owner = pending
    client.force_login(named.admin)
    response = client.get("/platform/")
    html = response.content.decode()
    assert 'data-testid="pending-badge">1<' in html
    # On a phone the menu is folded away: a link to the approvals with the count stays beside it (outside the nav).
    header = html.split('<nav class="nav"', 1)[0]
    assert 'data-testid="pending-alert"' in header and 'data-pending-count>1</span>' in header
    assert "Kopi Kenangan" in html and "dewi@kopi.test" in html and "+6281234567890" in html and "Basic" in html


def test_non_admin_cannot_open_the_approval_panel(client, named, pending):
    client.force_login(named.alice)
    assert client.get("/platform/").status_code == 403
    tenant, _ = pending
    assert client.post(f"/platform/tenants/{tenant.pk}/approve").status_code == 403
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.PENDING


def test_approval_from_the_pool_is_instant_starts_trial_and_emails_owner(
    client, named, pending, pooled_schema, plans, django_capture_on_commit_callbacks, monkeypatch
):
    refills = []
    monkeypatch.setattr("tenants.tasks.refill_tenant_pool.delay", lambda: refills.append(1))
    tenant, owner = pending
    client.force_login(named.admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/platform/tenants/{tenant.pk}/approve", {"plan": plans["pro"].pk}, follow=True)
    assert b"approved" in response.content
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert tenant.schema_name == pooled_schema
    assert tenant.plan == plans["pro"]
    assert tenant.trial_days_left() == 7
    assert not Tenant.objects.filter(status=Tenant.Status.POOLED).exists()
    assert Domain.objects.get(tenant=tenant).domain == "kopi-kenangan.localhost"
    assert refills == [1]
    assert [m.to for m in mail.outbox] == [["dewi@kopi.test"]]
    assert "approved" in mail.outbox[0].subject
    log = AuditLog.objects.get(action="tenant.approved")
    assert log.actor == named.admin and log.before["status"] == "pending" and log.after["status"] == "active"

    # The owner now lands on the dashboard with the trial shown.
    client.force_login(owner)
    response = client.get("/home/", follow=True)
    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert b"7 days</strong> left in your free trial" in response.content


def test_rejection_with_reason_emails_owner_who_sees_it_at_login(
    client, named, pending, django_capture_on_commit_callbacks
):
    tenant, owner = pending
    client.force_login(named.admin)
    response = client.post(f"/platform/tenants/{tenant.pk}/reject", {"reason": ""}, follow=True)
    assert b"Give the applicant a reason" in response.content
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/platform/tenants/{tenant.pk}/reject", {"reason": "We only serve registered companies."})
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.REJECTED
    assert "We only serve registered companies." in mail.outbox[-1].body
    client.logout()
    response = client.post("/accounts/login/", {"login": owner.email, "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/rejected/"
    assert b"We only serve registered companies." in response.content
    assert AuditLog.objects.filter(action="tenant.rejected", actor=named.admin).count() == 1


def test_suspend_and_reactivate_from_the_tenant_list(client, named, django_capture_on_commit_callbacks):
    client.force_login(named.admin)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/platform/tenants/{named.acme.pk}/suspend", {"reason": "Unpaid invoice"})
    named.acme.refresh_from_db()
    assert named.acme.status == Tenant.Status.SUSPENDED
    assert "Unpaid invoice" in mail.outbox[-1].body

    client.force_login(named.alice)
    response = client.get("/dashboard/", follow=True)
    assert response.redirect_chain[-1][0] == "/suspended/"
    assert b"Unpaid invoice" in response.content

    client.force_login(named.admin)
    response = client.post(f"/platform/tenants/{named.acme.pk}/suspend", follow=True)
    assert b"Cannot suspend a tenant that is suspended" in response.content
    client.post(f"/platform/tenants/{named.acme.pk}/reactivate")
    named.acme.refresh_from_db()
    assert named.acme.status == Tenant.Status.ACTIVE
    actions = list(AuditLog.objects.filter(tenant=named.acme).values_list("action", flat=True))
    assert actions == ["tenant.reactivated", "tenant.suspended"]


def test_approving_twice_is_refused_without_side_effects(client, named, pooled_schema):
    client.force_login(named.admin)
    response = client.post(f"/platform/tenants/{named.acme.pk}/approve", follow=True)
    assert b"Cannot approve a tenant that is active" in response.content
    assert Tenant.objects.filter(status=Tenant.Status.POOLED).count() == 1
    assert not AuditLog.objects.filter(action="tenant.approved").exists()


def test_unknown_tenant_in_the_panel_is_404(client, named):
    client.force_login(named.admin)
    assert client.post("/platform/tenants/999999/approve").status_code == 404


def test_panel_actions_never_redirect_off_site(client, named):
    client.force_login(named.admin)
    response = client.post(f"/platform/tenants/{named.acme.pk}/suspend", {"next": "https://evil.example/"})
    assert response["Location"] == "/platform/"
    response = client.post(f"/platform/tenants/{named.acme.pk}/reactivate", {"next": "/platform/tenants/?status=active"})
    assert response["Location"] == "/platform/tenants/?status=active"


def test_the_landing_page_shows_each_plan_with_its_price(client, plans):
    html = client.get("/").content.decode()
    assert "Price on request" not in html
    free = html.split('data-testid="plan-free"', 1)[1].split("</article>", 1)[0]
    assert "<strong>Free</strong>" in free
    basic = html.split('data-testid="plan-basic"', 1)[1].split("</article>", 1)[0]
    assert "<strong>USD 29</strong> / month" in basic and "<strong>USD 290</strong> / year" in basic
    assert 'data-testid="plan-enterprise"' in html


def test_a_sign_up_emails_every_platform_admin(client, named, plans, settings, django_capture_on_commit_callbacks):
    settings.ADMIN_EMAIL = []
    make_user("second-admin@platform.test", staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/signup/", signup_data(plans))
    told = [m for m in mail.outbox if "New sign-up" in m.subject]
    assert sorted(m.to[0] for m in told) == ["admin@platform.test", "second-admin@platform.test"]
    body = told[0].body
    assert "Kopi Kenangan" in told[0].subject and "Kopi Kenangan" in body and "dewi@kopi.test" in body
    assert "Basic" in body and "+6281234567890" in body and "/platform/" in body


def test_admin_email_setting_names_who_hears_of_sign_ups(client, named, plans, settings,
                                                         django_capture_on_commit_callbacks):
    settings.ADMIN_EMAIL = ["ops@switchboard.test"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/signup/", signup_data(plans))
    assert [m.to for m in mail.outbox if "New sign-up" in m.subject] == [["ops@switchboard.test"]]


def test_a_tenant_opened_by_an_admin_tells_no_admin(named, plans, settings, django_capture_on_commit_callbacks,
                                                    pooled_schema):
    from accounts.actions import create_tenant

    settings.ADMIN_EMAIL = []
    with django_capture_on_commit_callbacks(execute=True):
        create_tenant(acting_user=named.admin, name="Initech", plan=plans["basic"], owner_email="bill@initech.test")
    assert not [m for m in mail.outbox if "New sign-up" in m.subject]
