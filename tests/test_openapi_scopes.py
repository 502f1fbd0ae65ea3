"""Every operation an API key may call states, in /api/schema/, the scope the key needs (x-required-scope, with the
permission in x-required-permission and a sentence in the description), and it is the scope the server enforces:
this walks the published schema and compares each operation with the permission table (core.permissions: the view's
declared permission → SCOPES, what accounts.authentication asks of every keyed request)."""
import re

import pytest
from django.urls import resolve

from core.permissions import SCOPES, Perm, declared_permission

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(db, client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _view_class(path):
    match = resolve(re.sub(r"\{[^}]+\}", "1", path))
    return getattr(match.func, "cls", None) or match.func.view_class


def test_every_keyed_operation_states_the_scope_the_server_enforces(schema):
    checked = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            if not any("ApiKey" in requirement for requirement in operation.get("security", [])):
                continue
            perm = declared_permission(_view_class(path), method.upper())
            assert perm is not None, f"{method.upper()} {path} declares no permission"
            scope = SCOPES[Perm(perm)]
            where = f"{method.upper()} {path}"
            assert operation.get("x-required-permission") == str(perm), where
            assert operation.get("x-required-scope") == (str(scope) if scope is not None else None), where
            sentence = (f"API keys need the `{scope}` scope" if scope is not None else "Any API key may call this")
            assert sentence in operation.get("description", ""), where
            checked += 1
    assert checked > 100  # the whole API, not a corner of it


@pytest.mark.parametrize("method, path, scope", [
    ("post", "/api/v1/messages", "messages:send"),
    ("get", "/api/v1/messages", "read"),
    ("post", "/api/v1/workspace/deletion", "manage"),
    ("delete", "/api/v1/contacts/{id}", "manage"),
    ("get", "/api/v1/me", None),
])
def test_known_operations(schema, method, path, scope):
    assert schema["paths"][path][method]["x-required-scope"] == scope


def test_what_the_schema_says_is_what_a_key_gets(schema, named):
    """One operation per scope, called with a key holding every scope but the stated one: 403 insufficient_scope
    naming that scope."""
    from rest_framework.test import APIClient

    from accounts.actions import create_api_key

    for method, path, body in (("get", "/api/v1/workspace", None), ("patch", "/api/v1/workspace", {"locale": "de"}),
                               ("post", "/api/v1/messages", {"session": "x", "to": "+14155550123", "text": "hi"})):
        stated = schema["paths"][path][method]["x-required-scope"]
        others = [scope for scope in ("messages:send", "read", "manage") if scope != stated]
        _, raw = create_api_key(user=named.alice, tenant=named.acme, name=f"without {stated}", scopes=others)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        response = getattr(api, method)(path, body, format="json")
        assert response.status_code == 403, (path, response.content)
        assert response.json()["error"]["code"] == "insufficient_scope"
        assert response.json()["error"]["details"]["scope"] == stated
