import uuid

from conftest import PASSWORD, make_user


def test_login_lands_each_kind_of_user_where_they_belong(client, named):
    response = client.post("/accounts/login/", {"login": "alice@acme.test", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/dashboard/"
    client.logout()
    response = client.post("/accounts/login/", {"login": "admin@platform.test", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/platform/"


def test_wrong_password_says_so(client, named):
    response = client.post("/accounts/login/", {"login": "alice@acme.test", "password": "nope-nope-nope"})
    assert response.status_code == 200
    assert b"not correct" in response.content


def test_repeated_failed_logins_are_rate_limited(client, db):
    # A fresh address per run: allauth keeps its counters in the shared Redis cache for five minutes.
    email = f"victim-{uuid.uuid4().hex[:8]}@example.test"
    make_user(email)
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": email, "password": "wrong-password-1"})
        assert b"Too many failed login attempts" not in response.content
    response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_plans_are_editable_by_platform_admins_only(client, named, plans):
    client.force_login(named.admin)
    assert client.get(f"/admin/tenants/plan/{plans['basic'].pk}/change/").status_code == 200
    client.force_login(named.alice)
    response = client.get(f"/admin/tenants/plan/{plans['basic'].pk}/change/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_admin_login_goes_through_allauths_and_its_lockout(client, db):
    email = f"staff-{uuid.uuid4().hex[:8]}@example.test"
    make_user(email, staff=True)
    for _ in range(20):  # guessing at Django's admin form: it no longer checks passwords at all
        response = client.post("/admin/login/", {"username": email, "password": "wrong-password-1"})
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
        assert "_auth_user_id" not in client.session
    assert client.get("/admin/login/?next=/admin/")["Location"].startswith("/accounts/login/")
    for _ in range(5):
        client.post("/accounts/login/", {"login": email, "password": "wrong-password-1"})
    response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert b"Too many failed login attempts" in response.content and "_auth_user_id" not in client.session
