"""The Analytics page (every member of a workspace whose plan includes analytics) and its CSV downloads.

GET only: the figures come from analytics.selectors (rollups); the page's socket (analytics.consumers) sends new
figures while it is open. ?days=7|30|90 and ?session=<name> choose the messages-per-day chart.
"""
import csv
import re

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from billing.decorators import billing_access_required
from core.permissions import Perm, permission_required
from whatsapp.sessions.models import WhatsAppSession

from . import selectors, usage
from .access import plan_includes_analytics

CHART_DAYS = (7, 30, 90)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def chart_choice(request):
    """(days, session or None) the messages-per-day chart shows; unknown values fall back to 30 days, all."""
    raw = request.GET.get("days", "")
    days = int(raw) if raw.isdigit() and int(raw) in CHART_DAYS else 30
    name = request.GET.get("session", "")
    session = WhatsAppSession.objects.filter(name=name).first() if name else None
    return days, session


def heatmap_rows(cells):
    """The weekday × hour cells as seven rows of 24 (sent + received), with each cell's share of the busiest."""
    busiest = max((c["sent"] + c["received"] for c in cells), default=0) or 1
    rows = []
    for weekday, name in enumerate(WEEKDAYS):
        row = [c for c in cells if c["weekday"] == weekday]
        rows.append({"name": name, "cells": [{"hour": c["hour"], "total": c["sent"] + c["received"],
                                              "level": round(4 * (c["sent"] + c["received"]) / busiest)}
                                             for c in row]})
    return rows


@never_cache
@billing_access_required
@permission_required(Perm.ANALYTICS_READ)
def analytics_page(request):
    tenant = request.tenant
    if not plan_includes_analytics(tenant):
        return render(request, "analytics/not_in_plan.html", {"plan": tenant.plan}, status=403)
    days, session = chart_choice(request)
    data = selectors.dashboard(tenant)
    zone = selectors.zone_of(tenant)
    trend = selectors.trends(zone, days, session.pk if session else None)
    return render(request, "analytics/analytics.html", {
        "data": data, "trend": trend, "days": days, "chart_days": CHART_DAYS, "session": session,
        "sessions": WhatsAppSession.objects.order_by("name"), "heatmap": heatmap_rows(data["hourly_activity"]),
        "hours": range(24), "live_seconds": None,
    })


PHONE = re.compile(r"\+\d{4,15}")


def _cell(value):
    """A cell starting with = + - @ would be a formula in a spreadsheet (names and reasons come from outside):
    quoted, except a phone number."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not PHONE.fullmatch(value):
        return "'" + value
    return value


CSV_CHARTS = ("messages-per-day", "weekday-hour", "top-contacts", "failures")


@never_cache
@billing_access_required
@permission_required(Perm.ANALYTICS_READ)
def analytics_csv(request, chart):
    tenant = request.tenant
    if chart not in CSV_CHARTS or not plan_includes_analytics(tenant):
        raise Http404
    zone = selectors.zone_of(tenant)
    if chart == "messages-per-day":
        days, session = chart_choice(request)
        header = ["date", "sent", "received", "failed"]
        rows = [[r["date"], r["sent"], r["received"], r["failed"]]
                for r in selectors.trends(zone, days, session.pk if session else None)]
    elif chart == "weekday-hour":
        header = ["weekday", "hour", "sent", "received"]
        rows = [[WEEKDAYS[c["weekday"]], c["hour"], c["sent"], c["received"]] for c in selectors.hourly_activity(zone)]
    elif chart == "top-contacts":
        header = ["name", "phone", "chat", "sent", "received", "total"]
        rows = [[c["name"], c["phone"], c["chat_jid"], c["sent"], c["received"], c["total"]]
                for c in selectors.top_contacts(zone)]
    else:
        header = ["reason", "count"]
        rows = [[f["reason"], f["count"]] for f in selectors.message_stats(zone)["failures_by_reason"]]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    stamp = timezone.now().astimezone(zone).strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="{tenant.slug}-{chart}-{stamp}.csv"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        # A cell starting with = + - @ would be a formula in a spreadsheet (names and reasons come from outside).
        writer.writerow([_cell(value) for value in row])
    return response


def dashboard_card(request):
    """The dashboard's Analytics card: today's messages and the last 30 days' rates (None without the feature)."""
    tenant = getattr(request, "tenant", None)
    if tenant is None or not tenant.has_schema or not plan_includes_analytics(tenant):
        return None
    zone = selectors.zone_of(tenant)
    return {"stats": selectors.message_stats(zone), "time_zone": str(zone)}


def usage_card_context(request):
    """This month's usage against the plan's limits, for the dashboard and the billing page (None without a
    workspace schema)."""
    tenant = getattr(request, "tenant", None)
    if tenant is None or not tenant.has_schema:
        return None
    return {"usage": usage.this_month(tenant)}
