"""The account pages (allauth's, with templates/account overrides): only the actions that apply to an address."""
from allauth.account.models import EmailAddress


def email_page(client):
    response = client.get("/accounts/email/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_only_verified_address_offers_no_pointless_actions(client, named):
    client.force_login(named.alice)
    html = email_page(client)
    assert "alice@acme.test" in html and 'data-testid="email-primary"' in html
    assert 'type="radio"' not in html
    assert "Make primary" not in html and "Remove" not in html and "action_remove" not in html
    assert 'name="action_add"' in html  # adding another stays possible


def test_each_other_address_offers_what_applies_to_it(client, named):
    EmailAddress.objects.create(user=named.alice, email="alice@home.test", verified=True, primary=False)
    EmailAddress.objects.create(user=named.alice, email="alice@new.test", verified=False, primary=False)
    client.force_login(named.alice)
    html = email_page(client)
    rows = html.split('data-testid="email-row"')[1:]
    by_address = {address: next(row for row in rows if address in row.split("</strong>")[0])
                  for address in ("alice@acme.test", "alice@home.test", "alice@new.test")}
    assert "<button" not in by_address["alice@acme.test"].split("</li>")[0]
    assert "Make primary" in by_address["alice@home.test"] and "action_remove" in by_address["alice@home.test"]
    assert "action_send" not in by_address["alice@home.test"].split("</li>")[0]
    new = by_address["alice@new.test"].split("</li>")[0]
    assert "action_send" in new and "action_remove" in new and "Make primary" not in new

    response = client.post("/accounts/email/", {"email": "alice@home.test", "action_primary": ""})
    assert response.status_code == 302
    assert EmailAddress.objects.get(user=named.alice, primary=True).email == "alice@home.test"
    response = client.post("/accounts/email/", {"email": "alice@new.test", "action_remove": ""})
    assert not EmailAddress.objects.filter(email="alice@new.test").exists()
