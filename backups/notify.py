"""Where backup failures are told. One function, so the alerts app (the monitoring issue) can take it over."""
import logging

from django.conf import settings
from django.contrib.auth import get_user_model

from core.tasks import send_email

log = logging.getLogger(__name__)


def alert_platform_admins(subject, body):
    """An email to every platform admin (send_email retries while the mail server is down)."""
    log.error("backup alert: %s", subject)
    emails = get_user_model().objects.filter(is_staff=True, is_active=True).values_list("email", flat=True)
    for email in emails:
        send_email.delay(to=email, subject=f"[Switchboard] {subject}",
                         body=f"{body}\n\nBackups: {settings.SITE_URL}/platform/backups/\n")
