"""What allauth's emails say: the site's name and domain (never "Hello from !"), and a note when a password
changes."""
import pytest
from django.core import mail

from conftest import PASSWORD
from tenants.tests.test_signup_and_approval import signup_data


@pytest.fixture
def site(settings):
    settings.SITE_NAME = "Switchboard"
    settings.SITE_URL = "https://switchboard.example.com"


def test_the_confirmation_email_names_the_site_and_its_domain(client, plans, site, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/signup/", signup_data(plans))
    assert response.status_code == 302, response.content.decode()[:3000]
    [confirmation] = [m for m in mail.outbox if m.to == ["dewi@kopi.test"]]
    assert "Hello from Switchboard!" in confirmation.body
    assert "register an account on switchboard.example.com" in confirmation.body
    assert "Hello from !" not in confirmation.body and " on ." not in confirmation.body
    assert confirmation.subject.startswith("[Switchboard] ")


def test_the_password_reset_email_names_the_site(client, named, site, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/password/reset/", {"email": "alice@acme.test"})
    [reset] = mail.outbox
    assert "Hello from Switchboard!" in reset.body and "switchboard.example.com" in reset.body


def test_changing_the_password_emails_the_user(client, named, site, django_capture_on_commit_callbacks):
    client.force_login(named.alice)
    new = "another-horse-battery-staple"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/password/change/", {"oldpassword": PASSWORD, "password1": new,
                                                              "password2": new})
    assert response.status_code == 302
    [notice] = mail.outbox
    assert notice.to == ["alice@acme.test"] and "password" in notice.subject.lower()
    assert "Your password has been changed." in notice.body and "Hello from Switchboard!" in notice.body
