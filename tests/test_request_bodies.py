"""Bodies no view should have to guard against, refused once for every endpoint (core.api.StrictJSONParser,
StrictMultiPartParser, StrictSerializer) with 400 in the envelope, nothing written: NUL characters, nesting a
RecursionError deep, unpaired surrogates, NaN, values of the wrong JSON type, fields the schema does not name."""
import json

import pytest
from django_tenants.utils import tenant_context

from whatsapp.models import Message, WhatsAppSession

MESSAGES = "/api/v1/messages"


@pytest.fixture
def owner(api_as, named):
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", status=WhatsAppSession.Status.CONNECTED,
                                       phone="+14155550100")
    return api_as(named.alice)


def post_raw(client, path, text, content_type="application/json"):
    return client.generic("POST", path, text.encode("utf-8", "surrogatepass"), content_type=content_type)


def refused(response, code="invalid_request"):
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code
    return body["error"]


def nothing_written(named):
    with tenant_context(named.acme):
        return not Message.objects.exists()


def test_a_contact_card_nested_3000_deep_is_400_not_a_recursion_error(owner, named):
    deep = "[" * 3000 + "]" * 3000
    text = '{"session": "front-desk", "to": "+14155550123", "type": "contact", "contact": ' + deep + "}"
    assert "deeper than" in refused(post_raw(owner, MESSAGES, text))["message"]
    assert nothing_written(named)


def test_a_body_nested_past_the_limit_is_400_and_one_at_it_is_read(owner, named):
    nested = {"name": "x"}
    for _ in range(40):
        nested = {"a": nested}
    refused(post_raw(owner, MESSAGES, json.dumps({"session": "front-desk", "to": "+14155550123", "type": "contact",
                                                  "contact": nested})))


@pytest.mark.parametrize("path, text", [
    ("/api/v1/contacts/sync", '{"session": "a\\u0000b"}'),
    (MESSAGES, '{"session": "front-desk", "to": "+14155550123", "text": "hi\\u0000there"}'),
    (MESSAGES, '{"session": "front-desk", "to": "+14155550123", "text": "hi", "\\u0000": 1}'),
    (MESSAGES, '{"session": "front-desk", "to": "+14155550123", "text": "\\ud800"}'),
    (MESSAGES, '{"session": "front-desk", "to": "+14155550123", "latitude": NaN, "type": "location"}'),
])
def test_what_postgres_cannot_store_or_json_does_not_allow_is_400(owner, named, path, text):
    refused(post_raw(owner, path, text))
    assert nothing_written(named)


def test_a_nul_in_a_multipart_field_is_400(owner, named):
    response = owner.post(MESSAGES, {"session": "front-desk", "to": "+14155550123", "text": "a\x00b"},
                          format="multipart")
    refused(response)
    assert nothing_written(named)


@pytest.mark.parametrize("body, field", [
    ({"session": "front-desk", "to": 14155550123, "text": "hi"}, "to"),  # a number where a string goes
    ({"session": "front-desk", "to": "+14155550123", "text": "hi", "bogus": 1}, "bogus"),
    ({"session": "front-desk", "to": "+14155550123", "type": "location", "latitude": True, "longitude": 1},
     "latitude"),
])
def test_values_of_the_wrong_type_and_unknown_fields_are_400(owner, named, body, field):
    error = refused(owner.post(MESSAGES, body, format="json"), "validation_error")
    assert field in error["details"]
    assert nothing_written(named)


def test_sessions_and_webhooks_take_names_and_booleans_only_as_such(owner):
    refused(owner.post("/api/v1/sessions", {"name": 0}, format="json"), "invalid_name")
    refused(owner.post("/api/v1/webhooks", {"url": "https://example.com/h", "events": ["message.sent"],
                                            "enabled": 0}, format="json"), "validation_error")
