"""The disconnect-rate and memory rules, through the alerts' own delivery (alerts.actions.check): each incident told
once when it fires and once when it resolves, by a fake Telegram server, the email outbox and a webhook receiver.

alice owns Acme, carol owns Globex; admin is a platform admin.
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from alerts import actions, rules
from alerts.models import Alert
from core import heartbeats
from whatsapp.sessions.models import SessionActivity, WhatsAppSession

from .test_alerts import hook, telegram, texts  # noqa: F401 (fixtures)


@pytest.fixture
def no_heartbeats():
    """No process's heartbeat but the test's own (what a dev system on this Redis may have written is removed)."""
    def clear():
        for kind in rules.MEMORY_KINDS:
            for beat in heartbeats.alive(kind):
                heartbeats.forget(kind, beat["name"])

    clear()
    yield
    clear()


def told(telegram, hook, mailoutbox):  # noqa: F811
    return len(telegram.received), len(hook.received), len(mailoutbox)


def test_a_high_disconnect_rate_fires_once_and_resolves(named, telegram, hook, mailoutbox, settings):  # noqa: F811
    now = timezone.now()
    with tenant_context(named.acme):
        flaky = WhatsAppSession.objects.create(name="flaky", status="connected")
        for kind, minutes in (("connected", 12), ("reconnecting", 11), ("reconnecting", 10.5), ("connected", 10),
                              ("reconnecting", 9), ("connected", 8), ("disconnected", 7), ("connected", 6)):
            SessionActivity.objects.create(session=flaky, kind=kind, created_at=now - timedelta(minutes=minutes))
    with tenant_context(named.globex):
        for n in range(4):  # steady numbers: 3 drops over 5 sessions connected
            WhatsAppSession.objects.create(name=f"steady-{n}", status="connected")

    settings.WHATSAPP_ALERT_DISCONNECT_RATE = 0.9
    assert actions.check() == ([], [])  # 60 % is not above 90 %
    settings.WHATSAPP_ALERT_DISCONNECT_RATE = 0.2
    fired, resolved = actions.check()
    assert [a.rule for a in fired] == ["disconnect_rate"] and resolved == []
    assert fired[0].details == {"disconnections": 3, "active": 5, "rate": 0.6}
    assert texts(telegram) == ["[Switchboard] ALERT: 3 connections dropped in the last 15 minutes, 60% of the 5 "
                               "sessions connected"]
    assert told(telegram, hook, mailoutbox) == (1, 1, 1) and mailoutbox[0].to == ["admin@platform.test"]
    assert actions.check() == ([], [])  # still firing: nobody is told again
    assert told(telegram, hook, mailoutbox) == (1, 1, 1)

    with tenant_context(named.acme):  # the drops are older than the window now
        SessionActivity.objects.update(created_at=now - timedelta(hours=1))
    fired, resolved = actions.check()
    assert fired == [] and [a.rule for a in resolved] == ["disconnect_rate"]
    assert texts(telegram)[-1].startswith("[Switchboard] RESOLVED: 3 connections dropped")
    assert told(telegram, hook, mailoutbox) == (2, 2, 2)
    assert Alert.objects.get(rule="disconnect_rate").state == "resolved"


def test_too_few_drops_are_not_a_platform_alert(named, settings):
    now = timezone.now()
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="only", status="connected")
        for kind, minutes in (("connected", 10), ("reconnecting", 9), ("connected", 8), ("disconnected", 7)):
            SessionActivity.objects.create(session=session, kind=kind, created_at=now - timedelta(minutes=minutes))
    assert rules.disconnect_rate(now) == {}  # 2 drops of 1 session: the session_down rule's business


def test_a_process_over_the_memory_limit_fires_once_and_resolves(named, telegram, hook, mailoutbox,  # noqa: F811
                                                                 settings, no_heartbeats):
    settings.WHATSAPP_ALERT_MEMORY_MB = 500
    heartbeats.beat("web", "box:11", pid=11, host="box", rss_mb=180.0)
    heartbeats.beat("worker", "box:12", pid=12, host="box", rss_mb=120.0, queues=["default"],
                    children_rss_mb={"13": 140.0, "14": 90.0})
    # A session host writes two heartbeats (worker and host): one process, one incident, named a host.
    heartbeats.beat("worker", "box:20", pid=20, host="box", rss_mb=300.0, queues=["whatsapp"])
    heartbeats.beat("host", "box:20:abc", pid=20, host="box", rss_mb=300.0, sessions=4)
    assert actions.check() == ([], [])

    heartbeats.beat("host", "box:20:abc", pid=20, host="box", rss_mb=812.4, sessions=4)
    heartbeats.beat("worker", "box:20", pid=20, host="box", rss_mb=812.4, queues=["whatsapp"])
    heartbeats.beat("worker", "box:12", pid=12, host="box", rss_mb=120.0, queues=["default"],
                    children_rss_mb={"13": 640.0})  # a pool process grew
    fired, _ = actions.check()
    assert sorted(a.key for a in fired) == ["memory:box:12", "memory:box:20"]
    assert sorted(texts(telegram)) == [
        "[Switchboard] ALERT: The host process box:20 uses 812 MB of memory (over 500 MB)",
        "[Switchboard] ALERT: The worker process box:12 uses 640 MB of memory (over 500 MB)"]
    assert told(telegram, hook, mailoutbox) == (2, 2, 2)
    heartbeats.beat("host", "box:20:abc", pid=20, host="box", rss_mb=830.0, sessions=4)
    assert actions.check() == ([], [])  # still over: nobody is told again
    assert told(telegram, hook, mailoutbox) == (2, 2, 2)

    heartbeats.beat("host", "box:20:abc", pid=20, host="box", rss_mb=410.0, sessions=4)
    heartbeats.beat("worker", "box:20", pid=20, host="box", rss_mb=410.0, queues=["whatsapp"])
    heartbeats.forget("worker", "box:12")  # stopped (or restarted under another pid)
    fired, resolved = actions.check()
    assert fired == [] and sorted(a.key for a in resolved) == ["memory:box:12", "memory:box:20"]
    assert sorted(texts(telegram)[-2:]) == [
        "[Switchboard] RESOLVED: The host process box:20 uses 812 MB of memory (over 500 MB)",
        "[Switchboard] RESOLVED: The worker process box:12 uses 640 MB of memory (over 500 MB)"]
    assert told(telegram, hook, mailoutbox) == (4, 4, 4)


def test_real_heartbeats_carry_the_memory_the_rule_reads(db, no_heartbeats):
    info = heartbeats.process_info()
    assert info["rss_mb"] > 10 and info["pid"] > 1 and info["host"]
    stop = heartbeats.keep_beating("web", "test-web")
    try:
        for _ in range(50):
            if heartbeats.alive("web"):
                break
            stop.wait(0.1)
        [beat] = heartbeats.alive("web")
        assert beat["name"] == "test-web" and beat["rss_mb"] == pytest.approx(info["rss_mb"], rel=0.5)
    finally:
        stop.set()
