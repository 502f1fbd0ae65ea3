"""Sign-in from a new device: a security email when a user signs in from a browser (family and OS, by ua-parser)
on a network (IPv4 /24, IPv6 /48) not seen for them before, with the time, the address, the browser and the link to
their sessions page. The very first sign-in of an account (after sign-up, or the first since devices are recorded)
only records the device: there is nothing to compare it with. Connected to Django's user_logged_in in
AccountsConfig.ready(), which every sign-in (password, passkey, invitation, after 2FA) goes through."""
import hashlib
import ipaddress

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from ua_parser import parse

from audit.middleware import client_ip
from core.tasks import send_email

from .models import KnownDevice


def browser_of(user_agent):
    """"Firefox on Ubuntu", or what of it can be told."""
    result = parse(user_agent or "")
    family = result.user_agent.family if result.user_agent else ""
    system = result.os.family if result.os else ""
    if family and system and family != "Other":
        return f"{family} on {system}"
    return family if family and family != "Other" else (f"A browser on {system}" if system else "An unknown browser")


def network_of(ip):
    """The network a sign-in came from: its IPv4 /24 or IPv6 /48 (addresses move within one; a new network is news)."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def fingerprint(browser, network):
    return hashlib.sha256(f"{browser}|{network}".encode()).hexdigest()


def note_sign_in(sender, *, request, user, **kwargs):
    if request is None or not getattr(user, "pk", None):
        return
    ip = client_ip(request)
    browser = browser_of(request.META.get("HTTP_USER_AGENT", ""))
    device_key = fingerprint(browser, network_of(ip))
    now = timezone.now()
    if KnownDevice.objects.filter(user=user, fingerprint=device_key).update(last_seen_at=now):
        return
    first = not KnownDevice.objects.filter(user=user).exists()
    try:
        with transaction.atomic():
            KnownDevice.objects.create(user=user, fingerprint=device_key, browser=browser[:120], first_seen_at=now,
                                       last_seen_at=now)
    except IntegrityError:  # the same browser signing in twice at once: told once
        return
    if first:
        return
    body = (f"Your {settings.SITE_NAME} account ({user.email}) was signed in to from a browser or network not seen "
            "before.\n\n"
            f"When: {now:%d %b %Y %H:%M} UTC\nIP address: {ip or 'unknown'}\nBrowser: {browser}\n\n"
            "If this was you, there is nothing to do. If not, change your password now and sign out the other "
            "sessions:\n"
            f"{settings.SITE_URL}{reverse('usersessions_list')}\n")
    to, subject = user.email, f"[{settings.SITE_NAME}] New sign-in to {settings.SITE_NAME}"
    transaction.on_commit(lambda: send_email.delay(to=to, subject=subject, body=body))
