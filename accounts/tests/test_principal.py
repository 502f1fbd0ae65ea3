"""An API key's principal (accounts.authentication.principal_of): the statement written out with core.rows
(SPEED_PATH_SQL=true, the default) and the same statement compiled by the ORM (false, kept to measure the
difference) each give exactly what the ORM reads row by row, in one statement, with every related object a
request asks for already loaded; and the API answers the same either way."""
import pytest
from django.core.exceptions import ObjectDoesNotExist

from accounts.authentication import principal_of
from accounts.models import ApiKey, Membership, User, hash_api_key
from billing.models import Subscription
from core.tests.instances import assert_same_instance
from tenants.models import Plan, Tenant

pytestmark = pytest.mark.django_db

PATHS = [pytest.param(True, id="rows"), pytest.param(False, id="orm")]


def loaded_parts(key):
    """(key, user, tenant, plan, subscription, its plan, membership) as a request reads them: no statement."""
    tenant = key.tenant
    if tenant is None:
        return key, key.user, None, None, None, None, key.tenant_membership
    try:
        subscription = tenant.subscription
    except ObjectDoesNotExist:
        subscription = None
    return (key, key.user, tenant, tenant.plan, subscription, subscription and subscription.plan,
            key.tenant_membership)


def rows_of(key_hash):
    """The same parts, each read by the ORM from its own table."""
    key = ApiKey.objects.get(key_hash=key_hash)
    tenant = Tenant.objects.filter(pk=key.tenant_id).first()
    subscription = Subscription.objects.filter(tenant_id=key.tenant_id).first() if tenant else None
    return (key, User.objects.get(pk=key.user_id), tenant, tenant and Plan.objects.filter(pk=tenant.plan_id).first(),
            subscription, subscription and Plan.objects.get(pk=subscription.plan_id),
            Membership.objects.filter(user_id=key.user_id, tenant_id=key.tenant_id).first() if tenant else None)


def principal(key_hash, settings, speed_path, django_assert_num_queries):
    settings.SPEED_PATH_SQL = speed_path
    with django_assert_num_queries(1):
        key = principal_of(key_hash)
    if key is None:
        return None
    with django_assert_num_queries(0):
        return loaded_parts(key)


@pytest.fixture
def keys(named, api_as):
    """Raw keys: alice's (Acme, whose subscription is on another plan than the tenant), carol's (Globex, no
    subscription), the platform admin's (no tenant) and bob's (Acme, a member no more)."""
    Subscription.objects.filter(tenant=named.acme).update(plan=Plan.objects.get(code="enterprise"))
    Subscription.objects.filter(tenant=named.globex).delete()
    raw = {name: api_as(getattr(named, name)).raw_key for name in ("alice", "carol", "admin", "bob")}
    Membership.objects.filter(user=named.bob).delete()
    return raw


@pytest.mark.parametrize("speed_path", PATHS)
@pytest.mark.parametrize("holder", ["alice", "carol", "admin", "bob"])
def test_the_principal_is_what_the_orm_reads_row_by_row(keys, holder, speed_path, settings,
                                                      django_assert_num_queries):
    key_hash = hash_api_key(keys[holder])
    found = principal(key_hash, settings, speed_path, django_assert_num_queries)
    expected = rows_of(key_hash)
    assert len(found) == len(expected)
    for ours, orm in zip(found, expected):
        assert_same_instance(ours, orm)
    _, _, tenant, plan, subscription, subscription_plan, membership = found
    shape = {"alice": (True, True, True), "carol": (True, False, True), "admin": (False, False, False),
             "bob": (True, True, False)}[holder]
    assert (tenant is not None, subscription is not None, membership is not None) == shape
    if holder == "alice":  # two joins of one table, each with its own row
        assert (plan.code, subscription_plan.code) == ("basic", "enterprise")


@pytest.mark.parametrize("speed_path", PATHS)
def test_an_unknown_key_has_no_principal(keys, speed_path, settings, django_assert_num_queries):
    assert principal(hash_api_key("sb_00000000_unknown"), settings, speed_path, django_assert_num_queries) is None


@pytest.mark.parametrize("path, statuses", [("/api/v1/me", [200, 200, 200, 401, 401]),
                                            ("/api/v1/sessions", [200, 200, 403, 401, 401])])
def test_the_api_answers_the_same_through_either_path(keys, settings, path, statuses):
    from rest_framework.test import APIClient

    answers = {}
    for speed_path in (True, False):
        settings.SPEED_PATH_SQL = speed_path
        answers[speed_path] = []
        for raw in [*keys.values(), "sb_00000000_unknown"]:  # alice, carol, the admin, bob, nobody
            response = APIClient().get(path, HTTP_AUTHORIZATION=f"Bearer {raw}")
            answers[speed_path].append((response.status_code, response.json()))
    assert answers[True] == answers[False]
    assert [status for status, _ in answers[True]] == statuses
