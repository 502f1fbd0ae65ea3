"""Every endpoint × every role, generated from the one permission table (core.permissions.PERMISSIONS).

The API's endpoints come from drf-spectacular's enumerator (what /api/schema/ lists), the pages from the URL
resolver, the sockets from config.routing: an endpoint, page or socket that declares no permission fails here, and
each declared one is called by a member of every role, who must be refused (403 permission_denied; a 404 for what
is hidden) exactly when the table says so.
"""
import re
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import EndpointEnumerator
from rest_framework.test import APIClient

from accounts.actions import create_api_key
from accounts.models import Membership
from conftest import make_user
from core.permissions import PERMISSIONS, WITHOUT_ROLE, Perm, Role, allows, declared_permission, page_permission

MARKERS = {Perm.PUBLIC, Perm.SIGNED_IN, Perm.PLATFORM}
NOT_PAGES = ("api/", "accounts/", "admin/")  # the API (above), allauth's and Django admin's own pages
STAND_INS = {"pk": "999999", "id": "999999", "name": "no-such-thing", "verb": "approve"}


def _api_operations():
    return [(path, method, callback.cls) for path, _, method, callback in EndpointEnumerator().get_api_endpoints()
            if path.startswith("/api/v1/")]


def _filled(path):
    """The path with its parameters ({pk}, <int:tenant_id>, …) replaced by ids that exist nowhere."""
    path = re.sub(r"\{(\w+)\}", lambda m: STAND_INS.get(m.group(1), "999999"), path)
    return re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "no-such-thing" if m.group(1) == "str" else "999999", path)


def _pages(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _pages(entry, route)
        elif isinstance(entry, URLPattern) and not route.startswith(NOT_PAGES):
            yield route, entry.callback


@pytest.fixture
def private_layer(settings):
    """A channel layer prefix of this test's own: parallel runs on the same Redis never cross."""
    layers = {key: dict(value) for key, value in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": f"sbtest:{uuid.uuid4().hex}"}
    settings.CHANNEL_LAYERS = layers


@pytest.fixture
def members(named):
    """A user of every role in Acme, each with an API key and a logged-in browser."""
    found = {}
    for role in Role:
        user = make_user(f"{role}-{uuid.uuid4().hex[:6]}@acme.test")
        Membership.objects.create(user=user, tenant=named.acme, role=role)
        _, raw = create_api_key(user=user, tenant=named.acme, name="matrix")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        browser = Client()
        browser.force_login(user)
        found[role] = (user, api, browser)
    return found


def test_the_table_names_every_permission_once_and_only_roles():
    assert set(PERMISSIONS) == set(Perm)
    for perm, roles in PERMISSIONS.items():
        assert set(roles) <= set(Role), perm
    assert not any(allows(role, Perm.PLATFORM) for role in Role)
    # The owner has everything a workspace role can have; the viewer changes nothing.
    assert all(allows(Role.OWNER, perm) for perm in Perm if perm != Perm.PLATFORM)
    assert [p for p in Perm if allows(Role.VIEWER, p) and p.value.endswith((".manage", ".send", ".reply",
                                                                              ".transfer", ".delete"))] == []


def test_every_api_operation_declares_a_permission():
    operations = _api_operations()
    assert len(operations) > 60  # the enumerator sees the whole API
    undeclared = [f"{method} {path}" for path, method, view in operations if declared_permission(view, method) is None]
    assert undeclared == []


def test_every_page_declares_a_permission():
    pages = list(_pages())
    assert len(pages) > 30
    undeclared = [route for route, view in pages if page_permission(view) is None]
    assert undeclared == []


def _is_permission_denied(response):
    return response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"


@pytest.mark.django_db(transaction=True)
def test_api_role_matrix(members, settings):
    settings.WHATSAPP_PROVIDER = "simulator"
    wrong = []
    for path, method, view in _api_operations():
        perm = declared_permission(view, method)
        if perm in (Perm.PUBLIC,):
            continue
        url = _filled(path)
        for role, (_, api, _) in members.items():
            response = getattr(api, method.lower())(url, {}, format="json") if method != "GET" else api.get(url)
            assert response.status_code < 500, (method, path, role, response.content[:300])
            assert response["Content-Type"].startswith("application/json") or response.status_code == 204, (
                method, path, role)
            if perm == Perm.PLATFORM:
                refused = response.status_code in (403, 404)
                expected_refused = True
            else:
                refused = _is_permission_denied(response)
                expected_refused = not allows(role, perm)
            if refused != expected_refused:
                wrong.append((method, path, str(role), str(perm), response.status_code))
    assert wrong == []


@pytest.mark.django_db(transaction=True)
def test_page_role_matrix(members):
    wrong = []
    for route, view in _pages():
        declared = page_permission(view)
        by_method = getattr(view, "required_permissions", {})
        if declared in (Perm.PUBLIC, Perm.SIGNED_IN):
            continue
        url = "/" + _filled(route)
        for role, (_, _, browser) in members.items():
            for method in ("GET", "POST"):
                perm = by_method.get(method, declared)
                response = getattr(browser, method.lower())(url)
                if response.status_code == 405:
                    continue
                refused = response.status_code in (403, 404) if perm == Perm.PLATFORM or not allows(role, perm) \
                    else response.status_code == 403
                expected = perm == Perm.PLATFORM or not allows(role, perm)
                if refused != expected:
                    wrong.append((method, route, str(role), str(perm), response.status_code))
    assert wrong == []


def _sockets():
    from config.routing import websocket_urlpatterns

    return [(str(p.pattern), p.callback.consumer_class) for p in websocket_urlpatterns]


def test_every_socket_declares_a_permission():
    undeclared = [route for route, consumer in _sockets() if getattr(consumer, "required_permission", None) is None]
    assert undeclared == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("private_layer")
async def test_socket_role_matrix(members):
    from whatsapp.tests.socket_support import open_socket

    wrong = []
    for route, consumer in _sockets():
        perm = consumer.required_permission
        if perm in WITHOUT_ROLE - {Perm.PLATFORM}:
            continue
        for role, (user, _, _) in members.items():
            if "<" in route:  # a socket about one thing: refused before the thing is looked up
                path = "/" + _filled(route)
            else:
                path = "/" + route
            ws, connected, handshake_code = await open_socket(Client(), user, path)
            if not connected:  # refused at the handshake (the backups socket does so)
                refused, code = True, handshake_code or 4404
            elif await ws.receive_nothing(timeout=1):  # open and quiet (nothing to send yet)
                refused, code = False, None
            else:
                first = await ws.receive_output(timeout=5)
                refused, code = first["type"] == "websocket.close", first.get("code")
            if connected and not refused:
                await ws.disconnect()
            expected = perm == Perm.PLATFORM or not allows(role, perm)
            if "<" in route and not expected:
                # Allowed, the role reaches the lookup: the stand-in id is unknown (4404), never 4403.
                if code != 4404:
                    wrong.append((route, str(role), str(perm), code))
            elif refused != expected or (expected and code not in (4403, 4404)):
                wrong.append((route, str(role), str(perm), code))
    assert wrong == []


@pytest.mark.django_db
def test_members_of_yesterday_are_agents(named):
    assert Membership.objects.get(user=named.bob).role == Role.AGENT


def test_readme_shows_the_table():
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    for perm, roles in PERMISSIONS.items():
        if perm in MARKERS:
            continue
        row = f"| `{perm}` | " + " | ".join("yes" if role in roles else "" for role in Role) + " |"
        assert row.replace("  ", " ") in readme.replace("  ", " "), row
