"""Security emails to the user (password changed, two-factor added or removed, a new API key) and their session list
with "sign out the other sessions" (allauth's usersessions)."""
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (SECRET_SESSION_KEY, format_hotp_value, hotp_value,
                                             yield_hotp_counters_from_time)
from allauth.usersessions.models import UserSession
from django.test import Client

from accounts.actions import create_api_key
from conftest import PASSWORD


def confirmed(client, user):
    client.force_login(user)
    assert client.post("/accounts/reauthenticate/", {"password": PASSWORD}).status_code == 302
    return client


def subjects_to(mailoutbox, email):
    return [mail.subject for mail in mailoutbox if email in mail.to]


def test_a_password_change_is_told_by_email(client, named, mailoutbox, django_capture_on_commit_callbacks):
    confirmed(client, named.alice)
    with django_capture_on_commit_callbacks(execute=True):  # allauth's emails leave once the change committed
        response = client.post("/accounts/password/change/", {
            "oldpassword": PASSWORD, "password1": "a-new-long-secret-9", "password2": "a-new-long-secret-9"})
    assert response.status_code == 302
    assert any("Password Changed" in subject for subject in subjects_to(mailoutbox, named.alice.email))


def test_adding_and_removing_an_authenticator_app_is_told_by_email(client, named, mailoutbox,
                                                                   django_capture_on_commit_callbacks):
    confirmed(client, named.alice)
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    code = format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/2fa/totp/activate/", {"code": code})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=named.alice, type=Authenticator.Type.TOTP).exists()
    assert any("Authenticator App Activated" in s for s in subjects_to(mailoutbox, named.alice.email))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/2fa/totp/deactivate/")
    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=named.alice, type=Authenticator.Type.TOTP).exists()
    assert any("Authenticator App Deactivated" in s for s in subjects_to(mailoutbox, named.alice.email))


def test_a_new_api_key_is_told_by_email(named, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        key, _ = create_api_key(user=named.alice, tenant=named.acme, name="CI deploys", scopes=["read"])
    mail = next(mail for mail in mailoutbox if mail.to == [named.alice.email])
    assert key.prefix in mail.subject and "CI deploys" in mail.body and "Acme" in mail.body
    assert "/dashboard/api-keys/" in mail.body and "Scopes: read" in mail.body
    assert not [mail for mail in mailoutbox if named.bob.email in mail.to]


def test_the_session_list_signs_out_the_other_sessions(named):
    phone, laptop = Client(HTTP_USER_AGENT="Phone"), Client(HTTP_USER_AGENT="Laptop")
    for client in (phone, laptop):
        assert client.post("/accounts/login/", {"login": named.alice.email, "password": PASSWORD}).status_code == 302
    assert UserSession.objects.filter(user=named.alice).count() == 2
    html = laptop.get("/accounts/sessions/").content.decode()
    assert "Phone" in html and "Laptop" in html
    # The account pages link to it.
    assert 'href="/accounts/sessions/"' in laptop.get("/accounts/email/").content.decode()
    response = laptop.post("/accounts/sessions/", {})
    assert response.status_code == 302
    assert laptop.get("/dashboard/").status_code == 200
    assert phone.get("/dashboard/").status_code == 302  # signed out: sent to the login page
    assert UserSession.objects.filter(user=named.alice).count() == 1
