"""core.rows builds from hand-written statements exactly the instances the ORM builds from the same rows.

Shown on models of libraries (django_celery_beat and allauth's, in the public schema: core imports no app of ours)
whose fields cover what a column may need: a field's own database converter (JSON), decimals, a time zone field,
time-zone-aware datetimes, nullable foreign keys. Every statement written out with core.rows has its own test
beside its feature, against the ORM.
"""
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model
from django.db import connection
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from core import rows
from core.tests.instances import assert_same_instance, assert_same_instances

pytestmark = pytest.mark.django_db

JOINED = [(IntervalSchedule, "i"), (CrontabSchedule, "c"), (SolarSchedule, "s"), (ClockedSchedule, "k")]


@pytest.fixture
def tasks():
    """Two periodic tasks: one on a crontab in a time zone with a nullable column or two filled, one on a solar
    event with decimal coordinates and the rest empty."""
    crontab = CrontabSchedule.objects.create(minute="5", hour="4", timezone="Asia/Jakarta")
    solar = SolarSchedule.objects.create(event="sunrise", latitude=Decimal("-6.200000"), longitude=Decimal("106.8"))
    on_crontab = PeriodicTask.objects.create(
        name="nightly", task="core.nightly", crontab=crontab, kwargs='{"deep": true}', priority=3,
        expires=datetime(2031, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), description="night")
    on_solar = PeriodicTask.objects.create(name="dawn", task="core.dawn", solar=solar, enabled=False)
    return on_crontab, on_solar


def joined_statement_rest():
    t = rows.table
    return (f"LEFT JOIN {t(IntervalSchedule)} i ON i.id = p.interval_id "
            f"LEFT JOIN {t(CrontabSchedule)} c ON c.id = p.crontab_id LEFT JOIN {t(SolarSchedule)} s "
            f"ON s.id = p.solar_id LEFT JOIN {t(ClockedSchedule)} k ON k.id = p.clocked_id WHERE p.id = ANY(%s) "
            f"ORDER BY p.id")


def test_select_builds_what_the_orm_builds(tasks):
    ids = sorted(task.pk for task in tasks)
    found = rows.select(PeriodicTask, "p", "WHERE p.id = ANY(%s) ORDER BY p.id", [ids])
    assert_same_instances(found, list(PeriodicTask.objects.filter(pk__in=ids).order_by("pk")))
    for model in (CrontabSchedule, SolarSchedule):  # the time zone and the decimals, converted as the ORM does
        assert_same_instances(rows.select(model, "m", "ORDER BY m.id", []), list(model.objects.order_by("pk")))


def test_a_json_column_is_decoded_as_the_orm_decodes_it():
    user = get_user_model().objects.create_user(email="rows@core.test", password=None)
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP,
                                 data={"secret": "x", "codes": [1, "two", None], "ratio": 1.5, "on": True})
    Authenticator.objects.create(user=user, type=Authenticator.Type.RECOVERY_CODES, data=["a", "b"])
    found = rows.select(Authenticator, "a", "ORDER BY a.id", [])
    assert_same_instances(found, list(Authenticator.objects.order_by("pk")))
    assert found[0].data["codes"] == [1, "two", None]


def test_select_with_joined_models_gives_each_row_its_related_instances_or_none(tasks):
    ids = sorted(task.pk for task in tasks)
    found = rows.select(PeriodicTask, "p", joined_statement_rest(), [ids], joined=JOINED)
    expected = PeriodicTask.objects.filter(pk__in=ids).order_by("pk").select_related(
        "interval", "crontab", "solar", "clocked")
    assert len(found) == len(expected) == 2
    for (task, interval, crontab, solar, clocked), orm in zip(found, expected):
        assert_same_instance(task, orm)
        for ours, theirs in ((interval, orm.interval), (crontab, orm.crontab), (solar, orm.solar),
                             (clocked, orm.clocked)):
            assert_same_instance(ours, theirs)
    assert (found[0][2], found[0][3], found[1][2], found[1][3]) == (tasks[0].crontab, None, None, tasks[1].solar)


def test_select_appends_the_extra_expressions_values_after_the_instances(tasks):
    found = rows.select(PeriodicTask, "p", "WHERE p.id = %s", ["night", tasks[0].pk],
                        extra=["p.description = %s", "p.priority * 2"])
    [(task, same_description, doubled)] = found
    assert_same_instance(task, PeriodicTask.objects.get(pk=tasks[0].pk))
    assert (same_description, doubled) == (True, 6)
    assert rows.select(PeriodicTask, "p", "WHERE p.id = %s", [-1], extra=["1"]) == []


def test_run_builds_the_rows_an_update_returns(tasks):
    table = rows.table(PeriodicTask)
    moved = rows.run(PeriodicTask, (
        f"UPDATE {table} SET total_run_count = total_run_count + 1, last_run_at = %s WHERE enabled "
        f"RETURNING {rows.columns(PeriodicTask, PeriodicTask._meta.db_table)}"),
        [datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)])
    assert [task.pk for task in moved] == [tasks[0].pk]
    assert_same_instances(moved, [PeriodicTask.objects.get(pk=tasks[0].pk)])
    assert moved[0].total_run_count == 1


def test_a_row_without_its_primary_key_is_none_as_a_left_join_that_found_nothing():
    assert rows.instance(IntervalSchedule, [None] * len(IntervalSchedule._meta.concrete_fields)) is None


def test_the_comparison_fails_for_a_field_a_statement_left_out_or_read_wrong(tasks):
    """What guards every written-out statement: an instance lacking a column (a field added to the model and not
    to the statement) or holding another value or type than the ORM's fails assert_same_instance."""
    orm = PeriodicTask.objects.get(pk=tasks[0].pk)
    fields = PeriodicTask._meta.concrete_fields
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {rows.columns(PeriodicTask, 'p')} FROM {rows.table(PeriodicTask)} p "
                       f"WHERE p.id = %s", [orm.pk])
        values = cursor.fetchone()
    lacking = PeriodicTask.from_db("default", [f.attname for f in fields[:-1]], values[:-1])
    with pytest.raises(AssertionError, match=fields[-1].attname):
        assert_same_instance(lacking, orm)
    unconverted = PeriodicTask.from_db("default", [f.attname for f in fields], values)  # no converter applied
    unconverted.expires = orm.expires.astimezone(timezone(timedelta(hours=7)))
    with pytest.raises(AssertionError, match="expires"):
        assert_same_instance(unconverted, orm)
    unconverted.expires, unconverted.priority = orm.expires, "3"
    with pytest.raises(AssertionError, match="priority"):
        assert_same_instance(unconverted, orm)
    assert_same_instance(rows.instance(PeriodicTask, values), orm)
