"""The private-address guard: outgoing requests to URLs a tenant gave (webhook endpoints, media URLs) go to public
addresses only, unless WEBHOOK_ALLOW_PRIVATE_TARGETS says otherwise (a development machine, the tests)."""
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from .errors import DomainError, ErrorCode

# An http(s) URL with a host, as the OpenAPI schema states it (check_target answers what a pattern cannot).
HTTP_URL_PATTERN = r"^https?://[^\s/?#@\u0000]+([/?#][^\s\u0000]*)?$"


class NetError(ErrorCode):
    INVALID_URL = "invalid_url", 400
    UNRESOLVABLE_HOST = "unresolvable_host", 400
    PRIVATE_TARGET = "private_target", 400


class TargetError(DomainError):
    """A URL we refuse to connect to."""


def _refused(ip):
    ip = ip.ipv4_mapped or ip if ip.version == 6 else ip
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def _idna(hostname):
    try:
        hostname.encode("idna")
    except UnicodeError:
        return False
    return True


def _parse(url):
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. a "[" or "]" outside an IPv6 address
        raise TargetError(NetError.INVALID_URL, "The URL is not valid.") from exc
    if parts.scheme not in ("http", "https") or not hostname:
        raise TargetError(NetError.INVALID_URL, "Use an http:// or https:// URL with a host.")
    if not hostname.isascii() and not _idna(hostname) or any(ord(ch) < 33 or ord(ch) == 127 for ch in hostname):
        raise TargetError(NetError.INVALID_URL, f"'{hostname}' is not a host name.")
    if parts.username or parts.password:
        raise TargetError(NetError.INVALID_URL, "Credentials in the URL are not allowed; check the signature instead.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetError(NetError.INVALID_URL, "The URL's port is not valid.") from exc
    return parts, port


def resolve_target(url):
    """Check url like check_target and return the addresses it resolved to, in the resolver's order: the only
    addresses a delivery may connect to (resolving again when connecting would let a DNS answer with a short TTL
    swap a checked public address for a private one). Resolves even when private targets are allowed."""
    parts, port = _parse(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetError(NetError.UNRESOLVABLE_HOST, f"The host '{parts.hostname}' does not resolve.") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        for ip in addresses:
            if _refused(ip):
                raise TargetError(NetError.PRIVATE_TARGET,
                                  f"'{parts.hostname}' resolves to {ip}, a private, loopback or "
                                  "link-local address; webhooks go to public addresses only.")
    if not addresses:
        raise TargetError(NetError.UNRESOLVABLE_HOST, f"The host '{parts.hostname}' does not resolve.")
    return addresses


def check_target(url, *, resolve=True):
    """Raise TargetError unless url is an http(s) URL whose host resolves only to public addresses (every address
    is checked; WEBHOOK_ALLOW_PRIVATE_TARGETS lets private ones through)."""
    _parse(url)
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS or not resolve:
        return
    resolve_target(url)
