"""The OpenAPI schema says what the server answers: drf-spectacular describes each view's data; this hook (in
SPECTACULAR_SETTINGS' POSTPROCESSING_HOOKS) wraps it in the envelope every response has and adds the error
answers every operation may give, so a client (or a schema fuzzer) reads the contract the server keeps.

  2xx JSON   {"success": true, "data": <the view's schema>}; paginated lists also carry "pagination"
  errors     {"success": false, "error": {"code", "message", "details"}} (the Error component) for
             400 (a bad parameter or body), 401 (no or a wrong key), 402 (writes while unpaid), 403 (not allowed or
             the business is not active), 404 (an id or name that is not there, or another tenant's), 409, 413,
             415 (a body that is not JSON), 429 (throttled), as each operation can answer them.
"""

from django.db import DatabaseError
from drf_spectacular.openapi import AutoSchema

from . import permissions
from .api import PageLimitPagination

# The security scheme of API keys (accounts.authentication.ApiKeyScheme's name).
KEY_SCHEME = "ApiKey"

# A string field whose values live in the database (plan codes): its schema names the list with this key, and the
# hook puts the values that exist when the schema is generated in its enum. Apps fill DYNAMIC_ENUMS in ready().
DYNAMIC_ENUM = "x-enum-from"
DYNAMIC_ENUMS = {}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {
        "success": {"type": "boolean", "enum": [False]},
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Machine-readable, e.g. invalid_recipient."},
                "message": {"type": "string", "description": "For a person: what went wrong and what to do."},
                "details": {"description": "More about the error (which fields, limits, …), or null.",
                            "nullable": True},
            },
        },
    },
}

ERROR_DESCRIPTIONS = {
    "400": "Bad request: a parameter or the body is not valid (validation_error or a more specific code).",
    "401": "Not authenticated: no API key, or one that is wrong, revoked or expired.",
    "402": "Payment required: the business is read-only until it pays (payment_required), or a plan limit "
           "(plan_limit_reached).",
    "403": "Forbidden: the key's user may not do this (permission_denied), the key lacks the scope this needs "
           "(insufficient_scope, details.scope names it), or the business is not active.",
    "404": "Not found: no such id or name here (another business's objects are not found either).",
    "409": "Conflict: the object's state does not allow it now.",
    "413": "Too large: the body or a file is over the limit.",
    "415": "Unsupported media type: send JSON (or what the operation says).",
    "429": "Too many requests: this API key, user or address is over its rate (throttled), or the business over "
           "its sending rate (rate_limited). Wait Retry-After seconds.",
}
# Every operation is throttled per API key, per user and per client IP (core.throttles: code `throttled`); sends
# also per business (`rate_limited`). Each 429 says when to try again.
RETRY_AFTER_HEADER = {"description": "Seconds to wait before trying again.",
                      "schema": {"type": "integer", "minimum": 1}}
WRITE_METHODS = {"post", "put", "patch", "delete"}

# Rules a request can break while matching the schema, each answered 400 with its own code: what a schema cannot
# say (a number that matches the pattern but exists nowhere, a URL whose host resolves to a private address, a
# field that depends on the message's type). Listed in every write's 400 description; the suite's schema fuzz
# (tests/test_api_fuzz.py) accepts a 400 for a schema-valid request only with one of these codes.
RULES_BEYOND_THE_SCHEMA = {
    "invalid_phone": "not a phone number that exists",
    "invalid_email": "an email address that cannot receive mail",
    "invalid_recipient": "not a phone number or WhatsApp address that exists",
    "blocked_recipient": "a number this business or the installation blocked",
    "recipient_not_allowed": "a number outside the installation's allowed pattern",
    "missing_text": "a text message without text",
    "text_too_long": "longer than WhatsApp takes",
    "caption_too_long": "longer than WhatsApp takes",
    "unexpected_media": "media on a type that carries none",
    "unexpected_caption": "a caption on a type that has none",
    "missing_media": "a media type without media_url or a file",
    "media_url_and_file": "both media_url and a file",
    "invalid_media_url": "a media URL that is not http(s)",
    "media_url_forbidden": "a media URL on a private address",
    "empty_media": "an empty file",
    "invalid_location": "a location without both coordinates",
    "invalid_contact": "a contact card without a name or a valid phone, or a broken vCard",
    "missing_reaction": "a reaction without the emoji",
    "invalid_reaction": "a reaction that is not one emoji",
    "missing_reply_to": "a reaction without the message it reacts to",
    "invalid_reply_to": "reply_to that names no message",
    "unknown_reply_to": "reply_to naming no message of this session",
    "invalid_messages": "a batch whose messages break these rules (details.errors)",
    "batch_over_rate_limit": "a batch larger than the business may ever send at once",
    "invalid_name": "a name without a letter or digit",
    "invalid_url": "a URL that is not http(s) with a host",
    "private_target": "a URL whose host resolves to a private address",
    "unresolvable_host": "a URL whose host does not resolve",
    "invalid_pacing": "pacing values that contradict each other",
    "invalid_amount": "an amount of zero, or too large to record",
    "invalid_schedule": "business hours that overlap or end before they start",
    "invalid_time_zone": "a time zone that is not an IANA name",
    "invalid_holidays": "a holiday that is not a calendar date",
    "invalid_pattern": "a regular expression that does not compile",
    "invalid_rule": "a rule's reply without its text or media, or media on a text reply",
    "invalid_bot_url": "the bot switched on without a URL",
    "too_many_rules": "more keyword rules than a workspace may have",
    "invalid_range": "a date range backwards, longer than the operation allows or too far back",
    "tenant_required": "a tenant backup without tenant_id",
    "invalid_expiry": "an API key's expiry in the past",
    "invalid_country": "a country code that is no country",
    "missing_phone_column": "a CSV without a phone column",
    "invalid_csv": "a CSV that cannot be read",
    "unknown_variable": "a template variable that is not a contact's",
    "unknown_template": "a template id that is not this business's",
    "unknown_session": "a session name that is not this business's",
    "invalid_audience": "an audience without anyone, or numbers that exist nowhere",
    "invalid_campaign": "a least gap over the most, a cold cap over the daily cap, one quiet bound without the other",
    "empty_audience": "an audience with nobody left once opted-out and blocked numbers are out",
    "invalid_template": "a template whose variable is not closed, a caption over WhatsApp's length, media without "
                        "its URL",
    "assignee_cannot_reply": "a conversation given to a member whose role does not answer conversations",
    "too_many_canned_replies": "more canned replies than a workspace may have",
    "invalid_auto_assign": "auto-assignment to a fixed member without member_id",
    "invalid_escalation": "an escalation email or Telegram chat id that is none",
    "wrong_password": "a password that is not the caller's (deleting the workspace)",
    "wrong_name": "a name that is not the workspace's, typed to confirm its deletion",
}


def _is_enveloped(schema):
    properties = (schema or {}).get("properties") or {}
    return "success" in properties and ("data" in properties or "error" in properties)


def _wrap(schema, paginated):
    if paginated and schema.get("type") == "array":
        return PageLimitPagination().get_paginated_response_schema(schema)
    return {"type": "object", "required": ["success", "data"],
            "properties": {"success": {"type": "boolean", "enum": [True]}, "data": schema}}


# A text value anywhere in a request (path, query, body) holds no NUL: Postgres stores none, so the server refuses it
# (config.errors.RequestGuardMiddleware, core.api.StrictJSONParser).
NO_NUL = "^[^\\u0000]*$"
# What a map's keys must match. OpenAPI 3.0's Schema Object has no `propertyNames` (JSON Schema's, in OpenAPI 3.1):
# `manage.py spectacular --validate` refuses it, so the rule is stated as this extension (schemathesis applied
# neither to a 3.0 schema: tests/fuzz/hooks.py).
PROPERTY_NAMES = "x-propertyNames"


def _dynamic_enum(name):
    try:
        return list(DYNAMIC_ENUMS[name]())
    except DatabaseError:  # no tables yet (`manage.py check` before migrating generates the schema too)
        return None


def _no_nul(schema):
    if DYNAMIC_ENUM in schema:
        values = _dynamic_enum(schema.pop(DYNAMIC_ENUM))
        if values:  # OpenAPI refuses an empty enum: with no rows yet (a flushed test database) the value is free
            schema["enum"] = values
    if schema.get("type") == "string" and not ({"pattern", "enum", "format"} & set(schema)):
        schema["pattern"] = NO_NUL


def _closed(schema, components, seen):
    """additionalProperties: false on a request body's objects (StrictSerializer refuses unknown fields), and no
    NUL in its text."""
    if not isinstance(schema, dict):
        return
    _no_nul(schema)
    for variant in schema.get("oneOf", []) + schema.get("anyOf", []):
        _closed(variant, components, seen)
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            _closed(components.get(name), components, seen)
        return
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
        for value in schema["properties"].values():
            _closed(value, components, seen)
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        # A map's keys are text too (the strict JSON parser refuses a NUL in a key as in a value).
        schema.setdefault(PROPERTY_NAMES, {"pattern": NO_NUL})
        _closed(schema["additionalProperties"], components, seen)
    if "items" in schema:
        _closed(schema["items"], components, seen)


def envelope_and_errors(result, generator, request, public):
    components = result.setdefault("components", {}).setdefault("schemas", {})
    seen = set()
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for media in ((operation.get("requestBody") or {}).get("content") or {}).values():
                _closed(media.get("schema"), components, seen)
    components["Error"] = ERROR_SCHEMA
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in WRITE_METHODS | {"get"}:
                continue
            responses = operation.setdefault("responses", {})
            for parameter in operation.get("parameters", []):
                _no_nul(parameter.get("schema") or {})
            parameters = {parameter.get("name") for parameter in operation.get("parameters", [])}
            for status, response in responses.items():
                content = (response or {}).get("content", {}).get("application/json")
                if status.startswith("2") and content is not None and not _is_enveloped(content.get("schema")):
                    content["schema"] = _wrap(content.get("schema") or {}, {"page", "limit"} <= parameters)
            wanted = {"400", "404", "429"}
            if operation.get("security") != [{}] and {} not in (operation.get("security") or []):
                wanted |= {"401", "403"}
            if method in WRITE_METHODS:
                wanted |= {"402", "409"}
            if operation.get("requestBody"):
                wanted |= {"413", "415"}
            for status in sorted(wanted | {s for s in responses if s[:1] in "45"}):
                existing = responses.get(status) or {}
                description = existing.get("description") or ERROR_DESCRIPTIONS.get(status, "Error.")
                if status == "400" and method in WRITE_METHODS:
                    description += " Beyond the schema: " + "; ".join(
                        f"{code} ({why})" for code, why in RULES_BEYOND_THE_SCHEMA.items()) + "."
                responses[status] = {"description": description,
                                     "content": {"application/json": {"schema": error_ref}}}
                if status == "429":
                    responses[status]["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
    return result


class ScopedAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, and for every operation an API key may call: the scope the key needs, read from
    the table the server enforces (core.permissions: the view's declared permission → SCOPES, the lookup
    accounts.authentication.ApiKeyAuthentication makes on every keyed request). It is stated as the extensions
    `x-required-permission` and `x-required-scope` (null: any key) and a sentence at the end of the description.
    OpenAPI 3.0 lets only OAuth2 requirements carry scopes, and the key is a bearer token, hence the extension."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None or not any(KEY_SCHEME in requirement for requirement in operation.get("security", [])):
            return operation
        perm = permissions.declared_permission(self.view, method.upper())
        if perm is None:
            return operation
        scope = permissions.scope_needed(perm)
        operation["x-required-permission"] = str(perm)
        operation["x-required-scope"] = str(scope) if scope is not None else None
        sentence = (f"API keys need the `{scope}` scope (permission `{perm}`)." if scope is not None
                    else f"Any API key may call this (permission `{perm}`).")
        operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{sentence}".lstrip()
        return operation
