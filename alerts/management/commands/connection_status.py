"""manage.py connection_status: every tenant's sessions with their state, when they were last seen and their
connection failures of the last 24 hours (disconnects, logouts, errors in the activity log)."""
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db.models import Count, Q
from django.utils import timezone
from django_tenants.utils import schema_context

from alerts.rules import COUNTED_STATUSES
from tenants.models import Tenant
from whatsapp.sessions.models import WhatsAppSession

FAILURES = ("disconnected", "logged_out", "error")


class Command(BaseCommand):
    help = "Print every session's state, last activity and connection failures of the last 24 hours."

    def handle(self, *args, **options):
        since = timezone.now() - timedelta(hours=24)
        self.stdout.write(f"{'workspace':<20} {'session':<24} {'state':<14} {'last seen':<17} failures/24h")
        for tenant in Tenant.objects.filter(status__in=COUNTED_STATUSES).order_by("slug"):
            with schema_context(tenant.schema_name):
                sessions = WhatsAppSession.objects.annotate(failures=Count(
                    "activity", filter=Q(activity__kind__in=FAILURES, activity__created_at__gte=since)))
                for session in sessions.order_by("name"):
                    seen = session.last_activity_at.strftime("%Y-%m-%d %H:%M") if session.last_activity_at else "never"
                    self.stdout.write(f"{tenant.slug:<20} {session.name:<24} {session.status:<14} {seen:<17} "
                                      f"{session.failures}")
