"""Sign-in from a new device: the user is emailed when a browser (family and OS) on a network (/24) not seen for them
signs in, with the time, address, browser and the link to their sessions; never on an account's very first sign-in
(after sign-up), nor again for a known browser on a known network."""
from accounts.devices import browser_of, network_of
from accounts.models import KnownDevice
from conftest import PASSWORD

FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
          "Safari/537.36")


def sign_in(client, user, *, agent, ip):
    client.logout()
    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD},
                           HTTP_USER_AGENT=agent, REMOTE_ADDR=ip)
    assert response.status_code == 302, response.content[:500]


def told(mailoutbox, user):
    return [mail for mail in mailoutbox if mail.to == [user.email] and "New sign-in to" in mail.subject]


def test_a_new_browser_or_network_is_told_a_known_one_is_not(client, named, mailoutbox,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        sign_in(client, named.alice, agent=FIREFOX, ip="203.0.113.7")  # the account's first: recorded only
        sign_in(client, named.alice, agent=FIREFOX, ip="203.0.113.99")  # the same browser on the same /24
    assert told(mailoutbox, named.alice) == []
    assert KnownDevice.objects.filter(user=named.alice).count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        sign_in(client, named.alice, agent=CHROME, ip="203.0.113.7")  # another browser
    [mail] = told(mailoutbox, named.alice)
    assert mail.subject == "[Switchboard] New sign-in to Switchboard"
    assert "IP address: 203.0.113.7" in mail.body and "Browser: Chrome on Windows" in mail.body
    assert " UTC" in mail.body and mail.body.rstrip().endswith("/accounts/sessions/")

    with django_capture_on_commit_callbacks(execute=True):
        sign_in(client, named.alice, agent=FIREFOX, ip="198.51.100.20")  # a known browser on a new network
        sign_in(client, named.alice, agent=CHROME, ip="203.0.113.50")  # now known
    assert len(told(mailoutbox, named.alice)) == 2
    assert "IP address: 198.51.100.20" in told(mailoutbox, named.alice)[1].body
    # Bob's sign-ins are his own: his first is not news, whatever alice's devices.
    with django_capture_on_commit_callbacks(execute=True):
        sign_in(client, named.bob, agent=CHROME, ip="203.0.113.7")
    assert told(mailoutbox, named.bob) == []


def test_the_first_sign_in_after_sign_up_is_not_told(client, plans, mailoutbox, django_capture_on_commit_callbacks,
                                                     settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/signup/", {
            "email": "newbie@example.test", "full_name": "New Bie", "password1": "a-long-secret-phrase-9",
            "password2": "a-long-secret-phrase-9", "business_name": "Newbie Ltd", "phone": "+14155550111",
            "plan": plans["basic"].pk}, HTTP_USER_AGENT=FIREFOX, REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 302, response.content[:800]
    assert not [mail for mail in mailoutbox if "New sign-in" in mail.subject]
    assert KnownDevice.objects.filter(user__email="newbie@example.test").count() == 1  # signed in, and recorded


def test_browser_and_network_descriptions():
    assert browser_of(FIREFOX) == "Firefox on Ubuntu" and browser_of("") == "An unknown browser"
    assert browser_of("curl/8.0") == "curl"
    assert network_of("203.0.113.7") == "203.0.113.0/24" and network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_of(None) == ""
