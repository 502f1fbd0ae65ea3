"""Message templates: variables ({{name}}, {{field.order_id}}, defaults), text or media with caption, variations
picked per recipient, the preview with a real contact; the API's contract, roles and another tenant's ids."""
from django_tenants.utils import tenant_context

from audit.models import AuditLog
from whatsapp.campaigns import rendering
from whatsapp.models import AudienceContact, MessageTemplate
from whatsapp.tests.support import error, ok

V1 = "/api/v1"


def test_rendering_fills_variables_and_defaults():
    values = rendering.values_for({"phone": "+14155550101", "name": "Ann Lee", "fields": {"order_id": "A-7"}})
    text = "Hi {{ first_name }}, order {{field.order_id}} for {{name}} ({{phone}}) in {{field.city|town}}."
    assert rendering.render(text, values) == "Hi Ann, order A-7 for Ann Lee (+14155550101) in town."
    assert rendering.render("Hi {{name}}!", {"name": ""}, {"name": "friend"}) == "Hi friend!"
    assert rendering.render("Hi {{name}} there", {"name": ""}) == "Hi there"
    assert rendering.variables_of("{{name}} {{field.x_1}} {{name}}") == ["name", "field.x_1"]


def test_variations_spread_over_recipients_and_stay_put():
    picks = [rendering.pick(3, 42, f"+1415555{n:04d}") for n in range(300)]
    assert {picks.count(i) for i in range(3)} and min(picks.count(i) for i in range(3)) > 70
    assert picks == [rendering.pick(3, 42, f"+1415555{n:04d}") for n in range(300)]


def test_create_preview_and_delete_a_template(named, clients):
    alice = clients["alice"]
    made = ok(alice.post(f"{V1}/templates", {
        "name": "Order ready", "body": "Hi {{name|there}}, order {{field.order_id}} is ready.",
        "variations": ["{{first_name}}, your order {{field.order_id}} is ready!"],
        "defaults": {"field.order_id": "(no number)"}}, format="json"), 201)
    assert made["variables"] == ["field.order_id", "first_name", "name"] and made["media_type"] == ""
    with tenant_context(named.acme):
        contact = AudienceContact.objects.create(phone="+14155550101", name="Ann Lee", fields={"order_id": "A-7"})
        bare = AudienceContact.objects.create(phone="+14155550102")
    shown = ok(alice.get(f"{V1}/templates/{made['id']}/preview?contact={contact.pk}"))
    assert shown["texts"] == ["Hi Ann Lee, order A-7 is ready.", "Ann, your order A-7 is ready!"]
    assert shown["chosen"] in (0, 1)
    shown = ok(alice.get(f"{V1}/templates/{made['id']}/preview?contact={bare.pk}"))
    assert shown["texts"][0] == "Hi there, order (no number) is ready."
    error(alice.get(f"{V1}/templates/{made['id']}/preview?contact=999999"), 404, "not_found")
    error(alice.get(f"{V1}/templates/{made['id']}/preview"), 400, "validation_error")
    error(clients["carol"].get(f"{V1}/templates/{made['id']}"), 404, "not_found")
    assert ok(clients["bob"].get(f"{V1}/templates"))[0]["name"] == "Order ready"
    error(clients["bob"].post(f"{V1}/templates", {"name": "x", "body": "y"}, format="json"), 403,
          "permission_denied")
    changed = ok(alice.patch(f"{V1}/templates/{made['id']}", {"body": "Ready: {{field.order_id}}"}, format="json"))
    assert changed["body"] == "Ready: {{field.order_id}}" and changed["name"] == "Order ready"
    # A PATCH without a body (the schema's body is optional) changes nothing and is not audited (found by the fuzz).
    assert ok(alice.patch(f"{V1}/templates/{made['id']}"))["body"] == "Ready: {{field.order_id}}"
    assert alice.delete(f"{V1}/templates/{made['id']}").status_code == 204
    assert [a for a in AuditLog.objects.filter(tenant=named.acme).order_by("pk").values_list("action", flat=True)
            if a.startswith("campaigns.template")] == ["campaigns.template_created", "campaigns.template_updated",
                                                       "campaigns.template_deleted"]


def test_bad_templates_are_refused(named, clients):
    alice = clients["alice"]
    cases = [
        ({"name": "a", "body": "Hi {{surname}}"}, "unknown_variable"),
        ({"name": "a", "body": "Hi {{name}"}, "invalid_template"),
        ({"name": "a", "body": "Hi", "defaults": {"nickname": "x"}}, "unknown_variable"),
        ({"name": "a", "body": "Hi", "media_type": "image"}, "invalid_template"),
        ({"name": "a", "body": "x" * 1025, "media_type": "image", "media_url": "https://e.example/a.jpg"},
         "invalid_template"),
        ({"name": "a", "body": "Hi", "variations": ["ok", "{{field.Bad}}"]}, "unknown_variable"),
        ({"name": "a", "body": "Hi", "unknown": 1}, "validation_error"),
    ]
    for body, code in cases:
        error(alice.post(f"{V1}/templates", body, format="json"), 400, code)
    with tenant_context(named.acme):
        assert not MessageTemplate.objects.exists()
    ok(alice.post(f"{V1}/templates", {"name": "Photo", "body": "New in: {{name}}", "media_type": "image",
                                      "media_url": "https://e.example/a.jpg"}, format="json"), 201)
    error(alice.post(f"{V1}/templates", {"name": "Photo", "body": "x"}, format="json"), 409, "template_exists")


def test_the_templates_page(named, as_user):
    with tenant_context(named.acme):
        AudienceContact.objects.create(phone="+14155550101", name="Ann", fields={"order_id": "A-7"})
    page = as_user(named.alice)
    response = page.post("/broadcasts/templates/", {
        "action": "create", "name": "Ready", "body": "Hi {{name}}, {{field.order_id}} is ready.",
        "variations": "Hello {{name}}!\n---\nHey {{name}}, ready.", "media_type": ""})
    assert response.status_code == 302
    shown = page.get(response["Location"])
    assert b"Hi Ann, A-7 is ready." in shown.content and b"Hey Ann, ready." in shown.content
    bad = page.post("/broadcasts/templates/", {"action": "create", "name": "Bad", "body": "Hi {{nick}}"})
    assert bad.status_code == 400 and b"Unknown variable" in bad.content
    assert as_user(named.bob).post("/broadcasts/templates/", {"action": "create", "name": "x", "body": "y"}
                                   ).status_code == 403
