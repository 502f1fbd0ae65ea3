"""Audience contacts and the opt-out list: the CSV import (preview, per-row validation, de-duplication, the
rejected rows' report, limits and unreadable files), the API's contract and who may do what (alice owner, bob
member, carol of another tenant: 404), the export, and inbound opt-out words on the simulator host (confirmed once,
audited, re-subscribe)."""
import pytest
from django_tenants.utils import tenant_context

from audit.models import AuditLog
from whatsapp.models import AudienceContact, Message, OptOut
from whatsapp.tests.support import error, link_session, ok, settle

V1 = "/api/v1"

CSV = """Phone,Name,Tags,Order ID,City
+1 415 555 0101,Ann,vip;west,A-1,SF
14155550102,Ben,,A-2,
not a number,Bad,,,
+14155550101,Ann again,,,
+1 415 555 0103,,east,,NYC
"""


def contacts(tenant):
    with tenant_context(tenant):
        return {c.phone: c for c in AudienceContact.objects.all()}


def test_preview_then_import_a_csv(named, clients):
    alice = clients["alice"]
    report = ok(alice.post(f"{V1}/contacts/import", {"csv": CSV, "dry_run": True}, format="json"))
    assert report["rows"] == 5 and report["valid"] == 3 and report["new"] == 3 and report["rejected_count"] == 2
    assert [r["row"] for r in report["rejected"]] == [4, 5]
    assert "same number as row 2" in report["rejected"][1]["reason"]
    assert report["preview"][0] == {"row": 2, "phone": "+14155550101", "name": "Ann", "tags": ["vip", "west"],
                                    "fields": {"order_id": "A-1", "city": "SF"}}
    assert contacts(named.acme) == {}  # a preview stores nothing

    report = ok(alice.post(f"{V1}/contacts/import", {"csv": CSV, "tags": ["Spring"]}, format="json"))
    assert report["new"] == 3 and report["dry_run"] is False
    stored = contacts(named.acme)
    assert stored["+14155550101"].tags == ["vip", "west", "spring"]
    assert stored["+14155550102"].fields == {"order_id": "A-2"}
    assert AuditLog.objects.filter(action="campaigns.contacts_imported", tenant=named.acme).count() == 1

    # Again with a change: known numbers are updated, not duplicated.
    again = ok(alice.post(f"{V1}/contacts/import", {"csv": "phone,name,tags\n+14155550103,Cy,vip\n"}, format="json"))
    assert again["new"] == 0 and again["updated"] == 1
    assert contacts(named.acme)["+14155550103"].name == "Cy"
    assert contacts(named.acme)["+14155550103"].tags == ["east", "spring", "vip"]
    listed = alice.get(f"{V1}/audience-contacts?tag=vip").json()
    assert listed["pagination"]["total"] == 2
    assert contacts(named.globex) == {}
    assert ok(clients["carol"].get(f"{V1}/audience-contacts")) == []


def test_local_numbers_with_a_default_country(named, clients):
    report = ok(clients["alice"].post(f"{V1}/contacts/import", {
        "csv": "mobile;name\n0812-3456-7890;Budi\n", "default_country": "id"}, format="json"))
    assert report["preview"][0]["phone"] == "+6281234567890"
    error(clients["alice"].post(f"{V1}/contacts/import", {"csv": "phone\n1\n", "default_country": "ZZ"},
                                format="json"), 400, "invalid_country")


@pytest.mark.parametrize("csv_text,status,code", [
    ("name,city\nAnn,SF\n", 400, "missing_phone_column"),
    ("", 400, "validation_error"),
    ("   \n", 400, "missing_phone_column"),
    ('phone,name\n"+14155550101,Ann\n', 400, "invalid_csv"),
])
def test_unreadable_files_import_nothing(named, clients, csv_text, status, code):
    error(clients["alice"].post(f"{V1}/contacts/import", {"csv": csv_text}, format="json"), status, code)
    assert contacts(named.acme) == {}


def test_wrong_encoding_and_limits(named, settings, as_user):
    from whatsapp.campaigns import actions
    from core.errors import DomainError

    with tenant_context(named.acme):
        with pytest.raises(DomainError) as caught:
            actions.import_contacts(named.acme, acting_user=named.alice, data="phone,name\n+14155550101,Jos\xe9\n"
                                    .encode("latin-1"))
        assert caught.value.code == "invalid_encoding"
        settings.CAMPAIGN_IMPORT_MAX_ROWS = 3
        rows = "phone\n" + "".join(f"+1415555{n:04d}\n" for n in range(101, 105))
        with pytest.raises(DomainError) as caught:
            actions.import_contacts(named.acme, acting_user=named.alice, data=rows.encode())
        assert caught.value.code == "csv_too_large" and caught.value.status == 413
        assert not AudienceContact.objects.exists()
    # The page's upload says the same, and keeps nothing.
    page = as_user(named.alice)
    from django.core.files.uploadedfile import SimpleUploadedFile
    response = page.post("/broadcasts/contacts/", {"action": "preview", "file": SimpleUploadedFile(
        "c.csv", rows.encode(), content_type="text/csv")})
    assert response.status_code == 413 and b"more than 3 contacts" in response.content


def test_the_page_previews_imports_and_exports(named, as_user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    page = as_user(named.alice)
    response = page.post("/broadcasts/contacts/", {"action": "preview", "tags": "fair, 2026",
                                                   "file": SimpleUploadedFile("list.csv", CSV.encode())})
    assert response.status_code == 302 and "preview=" in response["Location"]
    shown = page.get(response["Location"])
    assert b"Import 3 contacts" in shown.content and b"The same number as row 2" in shown.content
    assert contacts(named.acme) == {}
    token = shown.context["preview"]["token"]
    assert page.post("/broadcasts/contacts/", {"action": "import", "token": token}).status_code == 302
    assert set(contacts(named.acme)) == {"+14155550101", "+14155550102", "+14155550103"}
    exported = b"".join(page.get("/broadcasts/contacts/export.csv").streaming_content).decode()
    lines = exported.splitlines()
    assert lines[0] == "phone,name,tags,city,order_id"
    assert "+14155550101,Ann,vip;west;fair;2026,SF,A-1" in lines
    # bob, a member, sees but does not change.
    bob = as_user(named.bob)
    assert bob.get("/broadcasts/contacts/").status_code == 200
    assert bob.post("/broadcasts/contacts/", {"action": "opt_out", "phone": "+14155550101"}).status_code == 403


def test_contacts_over_the_api(named, clients):
    alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
    made = ok(alice.post(f"{V1}/audience-contacts", {"phone": "+14155550101", "name": "Ann", "tags": ["VIP"],
                                                     "fields": {"order_id": "A-1"}}, format="json"), 201)
    assert made["tags"] == ["vip"] and made["fields"] == {"order_id": "A-1"}
    error(alice.post(f"{V1}/audience-contacts", {"phone": "14155550101"}, format="json"), 409, "contact_exists")
    error(alice.post(f"{V1}/audience-contacts", {"phone": "+1234567"}, format="json"), 400, "invalid_phone")
    error(alice.post(f"{V1}/audience-contacts", {"phone": "+14155550102", "fields": {"Bad Key": "x"}},
                     format="json"), 400, "invalid_contact")
    error(alice.post(f"{V1}/audience-contacts", {"phone": "+14155550102", "tags": [" x"]}, format="json"),
          400, "invalid_contact")
    error(bob.post(f"{V1}/audience-contacts", {"phone": "+14155550102"}, format="json"), 403,
          "permission_denied")
    assert ok(bob.get(f"{V1}/audience-contacts/{made['id']}"))["phone"] == "+14155550101"
    error(carol.get(f"{V1}/audience-contacts/{made['id']}"), 404, "not_found")
    error(carol.delete(f"{V1}/audience-contacts/{made['id']}"), 404, "not_found")
    assert alice.delete(f"{V1}/audience-contacts/{made['id']}").status_code == 204
    assert contacts(named.acme) == {}


def test_opt_outs_over_the_api(named, clients):
    alice = clients["alice"]
    row = ok(alice.post(f"{V1}/opt-outs", {"phone": "+14155550101"}, format="json"), 201)
    assert row["source"] == "api"
    error(alice.post(f"{V1}/opt-outs", {"phone": "14155550101"}, format="json"), 409, "already_opted_out")
    assert [r["phone"] for r in ok(clients["bob"].get(f"{V1}/opt-outs"))] == ["+14155550101"]
    error(clients["bob"].delete(f"{V1}/opt-outs/{row['id']}"), 403, "permission_denied")
    error(clients["carol"].delete(f"{V1}/opt-outs/{row['id']}"), 404, "not_found")
    assert alice.delete(f"{V1}/opt-outs/{row['id']}").status_code == 204
    actions = list(AuditLog.objects.filter(tenant=named.acme, action__startswith="campaigns.")
                   .values_list("action", flat=True).order_by("pk"))
    assert actions == ["campaigns.opted_out", "campaigns.resubscribed"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text,opted", [("STOP", True), ("  Arrêt ! ", True), ("berhenti", True), ("停止", True),
                                        ("please stop sending", False), ("stopping by later", False)])
def test_an_inbound_opt_out_word(named, clients, host, clock, text, opted):
    provider = link_session(clients["alice"], host, clock)
    provider.simulate_inbound("+6281234567890", text)
    settle(host, clock)
    with tenant_context(named.acme):
        assert OptOut.objects.filter(phone="+6281234567890").exists() is opted
        confirmations = Message.objects.filter(direction="out", to_phone="+6281234567890")
        assert confirmations.count() == (1 if opted else 0)
    if opted:
        # A second STOP is not confirmed again.
        provider.simulate_inbound("+6281234567890", "stop")
        settle(host, clock)
        with tenant_context(named.acme):
            assert Message.objects.filter(direction="out", to_phone="+6281234567890").count() == 1
            assert OptOut.objects.get().confirmed_at is not None
        assert AuditLog.objects.filter(action="campaigns.opted_out", tenant=named.acme).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_workspace_sets_its_own_words(named, clients, host, clock, as_user):
    page = as_user(named.alice)
    assert page.post("/broadcasts/contacts/", {"action": "words", "words": "basta\nno more",
                                               "confirmation": "Done, bye."}).status_code == 302
    provider = link_session(clients["alice"], host, clock)
    provider.simulate_inbound("+6281234567890", "stop")
    provider.simulate_inbound("+6281234567891", "No more!")
    settle(host, clock)
    with tenant_context(named.acme):
        assert list(OptOut.objects.values_list("phone", flat=True)) == ["+6281234567891"]
        assert Message.objects.get(direction="out").text == "Done, bye."
