"""Media of messages: what WhatsApp accepts (type by content, size limits), fetching a media URL safely, and the
tenant's own media storage.

Files live under MEDIA_ROOT/<schema>/whatsapp/<yyyy>/<mm>/<random>.<ext>; Message.media_file holds that path
relative to MEDIA_ROOT. Validation hands back a `PendingFile` (the path plus its bytes); `kept_with_row` writes it
just before the row that names it is created and removes it again if that fails, so a committed row always has
its file and a rejected request leaves none. (A process killed between the write and the commit can leave an
unreferenced file, never a message without its media.)
"""
import io
import ipaddress
import logging
import os
import re
import secrets
import socket
import time
from contextlib import contextmanager
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx
import magic
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core import crypto
from core.errors import DomainError
from core.net import NetError, TargetError, check_target

from .errors import MessagingError

logger = logging.getLogger(__name__)

MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
# What WhatsApp plays per type (its Cloud API's list), after ALIASES. Documents: anything but executables.
ALLOWED = {
    "image": {"image/jpeg", "image/png", "image/webp"},
    "audio": {"audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr"},
    "video": {"video/mp4", "video/3gpp"},
    "sticker": {"image/webp"},
}
# libmagic's names for the same formats.
ALIASES = {"audio/x-m4a": "audio/mp4", "audio/x-hx-aac-adts": "audio/aac", "audio/x-aac": "audio/aac",
           "audio/x-amr": "audio/amr", "audio/amr-wb": "audio/amr", "application/ogg": "audio/ogg",
           "audio/x-ogg": "audio/ogg", "audio/mp3": "audio/mpeg", "image/jpg": "image/jpeg"}
EXECUTABLE_MIMETYPES = {"application/x-dosexec", "application/x-executable", "application/x-sharedlib",
                        "application/x-pie-executable", "application/x-mach-binary", "application/x-msdownload",
                        "application/vnd.microsoft.portable-executable", "application/x-elf",
                        "application/x-msi", "application/x-ms-installer"}
EXECUTABLE_EXTENSIONS = {"exe", "dll", "com", "scr", "msi", "bat", "cmd", "pif", "cpl"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "audio/ogg": "ogg",
              "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/aac": "aac", "audio/amr": "amr", "video/mp4": "mp4",
              "video/3gpp": "3gp", "application/pdf": "pdf", "text/plain": "txt", "text/csv": "csv",
              "application/zip": "zip", "application/msword": "doc",
              "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
              "application/vnd.ms-excel": "xls"}
MAX_REDIRECTS = 3
CHUNK = 64 * 1024
SAFE_FILENAME = re.compile(r"[^\w.\- ()+,]", re.UNICODE)


# --- limits and types --------------------------------------------------------------------------------------------


def max_bytes(kind):
    megabytes = settings.WHATSAPP_DOCUMENT_MAX_MB if kind == "document" else settings.WHATSAPP_MEDIA_MAX_MB
    return int(megabytes * 1024 * 1024)


def too_large(kind, size=None):
    limit = max_bytes(kind)
    return DomainError(MessagingError.MEDIA_TOO_LARGE,
                       f"{'An' if kind[0] in 'aeiou' else 'A'} {kind} may be at most {limit / 1024 / 1024:g} MB"
                       + (f"; this one is {size / 1024 / 1024:.1f} MB." if size else "."), {"max_bytes": limit})


def detect(content):
    """The mimetype libmagic reads from the bytes, in WhatsApp's names."""
    detected = magic.from_buffer(content[:65536], mime=True) or "application/octet-stream"
    return ALIASES.get(detected, detected)


def check(kind, content, filename=""):
    """(mimetype, extension) of media `content` sent as `kind`; 413 media_too_large or 415 unsupported_media_type."""
    if len(content) > max_bytes(kind):
        raise too_large(kind, len(content))
    if not content:
        raise DomainError(MessagingError.EMPTY_MEDIA, "The media file is empty.")
    mimetype = detect(content)
    if kind == "audio" and mimetype == "video/mp4":  # an audio-only MP4 container reads as video/mp4
        mimetype = "audio/mp4"
    allowed = ALLOWED.get(kind)
    if allowed is not None and mimetype not in allowed:
        raise DomainError(MessagingError.UNSUPPORTED_MEDIA_TYPE, f"WhatsApp does not take {mimetype} as {kind}.",
                          {"detected": mimetype, "allowed": sorted(allowed)})
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if kind == "document" and (mimetype in EXECUTABLE_MIMETYPES or extension in EXECUTABLE_EXTENSIONS):
        raise DomainError(MessagingError.UNSUPPORTED_MEDIA_TYPE, "Executable files cannot be sent as documents.",
                          {"detected": mimetype})
    return mimetype, EXTENSIONS.get(mimetype) or _safe_extension(extension) or "bin"


def _safe_extension(extension):
    return extension if re.fullmatch(r"[a-z0-9]{1,8}", extension or "") else ""


def clean_filename(name):
    """A file name safe to show and to put in Content-Disposition (no path, no control characters)."""
    name = os.path.basename(str(name or "").replace("\\", "/")).strip()
    return SAFE_FILENAME.sub("_", name)[:255].strip(". ")


# --- storage -----------------------------------------------------------------------------------------------------


class PendingFile(str):
    """A media path still in memory with its bytes, until kept_with_row writes it (see the module docstring)."""

    content = b""

    def __new__(cls, path, content):
        value = super().__new__(cls, path)
        value.content = content
        return value


def pending(content, extension, schema_name=None):
    """A new path under the tenant's directory for `content`, written by kept_with_row with its row."""
    schema_name = schema_name or connection.schema_name
    now = timezone.now()
    path = f"{schema_name}/whatsapp/{now:%Y}/{now:%m}/{secrets.token_urlsafe(18)}.{extension}"
    return PendingFile(path, content)


def absolute_path(relative):
    root = os.path.realpath(settings.MEDIA_ROOT)
    path = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"{relative!r} is outside MEDIA_ROOT")
    return path


def write(relative, content):
    """Keep `content` at `relative`, encrypted when WHATSAPP_ENCRYPT_MESSAGES is on (core.crypto)."""
    content = crypto.seal_bytes(content)
    path = absolute_path(relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)  # a reader never sees half a file


def read(relative):
    """The file's bytes, decrypted if it was stored encrypted (whatever WHATSAPP_ENCRYPT_MESSAGES says now)."""
    with open(absolute_path(relative), "rb") as f:
        return crypto.open_bytes(f.read())


def open_stored(relative):
    """A file object with the file's bytes: the file itself when stored plain (streamed), its decrypted bytes in
    memory when stored encrypted."""
    handle = open(absolute_path(relative), "rb")
    if handle.read(len(crypto.FILE_MAGIC)) != crypto.FILE_MAGIC:
        handle.seek(0)
        return handle
    with handle:
        return io.BytesIO(crypto.open_bytes(crypto.FILE_MAGIC + handle.read()))


def delete(relative):
    try:
        os.remove(absolute_path(relative))
    except (FileNotFoundError, ValueError):
        pass


@contextmanager
def kept_with_row(fields):
    """Around the creation of a Message from `fields`: write a PendingFile in fields["media_file"] now (the
    field then holds its path) and delete it if the block raises."""
    pending_file = fields.get("media_file")
    if not isinstance(pending_file, PendingFile):
        yield None
        return
    relative = str(pending_file)
    write(relative, pending_file.content)
    fields["media_file"] = relative
    try:
        yield relative
    except BaseException:
        delete(relative)
        raise


# --- fetching a media URL ------------------------------------------------------------------------------------------


def unreachable(url, reason):
    return DomainError(MessagingError.MEDIA_UNREACHABLE, f"The media URL could not be fetched: {reason}.",
                       {"url": url, "reason": reason})


def fetch(url, kind):
    """(bytes, filename) of the media at `url`, fetched now with WHATSAPP_MEDIA_FETCH_TIMEOUT as the whole budget
    and the size limit of `kind` as a cap on the bytes read. Each hop (up to MAX_REDIRECTS redirects) is resolved
    once, every address checked with the webhook target rules, and the connection made to the checked address
    (Host header and TLS SNI keep the name), so a DNS answer cannot change between the check and the fetch.
    400 invalid_media_url / media_url_forbidden, 422 media_unreachable, 413 media_too_large."""
    limit = max_bytes(kind)
    deadline = time.monotonic() + settings.WHATSAPP_MEDIA_FETCH_TIMEOUT
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        parts, address = _vetted_address(current)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise unreachable(url, "timeout")
        host_header = parts.netloc  # credentials in URLs are refused by check_target
        ip_host = f"[{address}]" if ":" in address else address
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = urlunsplit((parts.scheme, f"{ip_host}:{port}", parts.path or "/", parts.query, ""))
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            with httpx.Client(timeout=httpx.Timeout(remaining), follow_redirects=False, trust_env=False) as client:
                with client.stream("GET", target, headers={"Host": host_header, "Accept": "*/*",
                                                           "User-Agent": "Switchboard-Media/1"},
                                   extensions=extensions) as response:
                    if response.is_redirect and response.headers.get("location"):
                        current = urljoin(current, response.headers["location"])
                        continue
                    if response.status_code >= 400 or response.status_code < 200:
                        raise unreachable(url, f"HTTP {response.status_code}")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise too_large(kind, int(declared))
                    body = bytearray()
                    for chunk in response.iter_bytes(CHUNK):
                        body += chunk
                        if len(body) > limit:
                            raise too_large(kind)
                        if time.monotonic() > deadline:
                            raise unreachable(url, "timeout")
                    return bytes(body), _filename_of(response, parts)
        except httpx.TimeoutException:
            raise unreachable(url, "timeout") from None
        except httpx.ConnectError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else f"could not connect ({exc})"
            raise unreachable(url, reason) from None
        except httpx.HTTPError as exc:
            raise unreachable(url, f"{exc.__class__.__name__}: {exc}"[:200]) from None
    raise unreachable(url, f"more than {MAX_REDIRECTS} redirects")


def _vetted_address(url):
    """(parts, ip) — the URL checked and its host resolved once; every address must pass check_target."""
    parts = urlsplit(str(url or "").strip())
    try:
        check_target(url, resolve=False)
    except TargetError as exc:
        raise DomainError(MessagingError.INVALID_MEDIA_URL, exc.message, {"url": url}) from None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise unreachable(url, f"DNS: '{parts.hostname}' does not resolve") from None
    addresses = []
    for info in infos:
        address = info[4][0].split("%")[0]
        if address not in addresses:
            addresses.append(address)
    for address in addresses:
        literal = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
        try:  # an IP literal: check_target applies its address rules without another DNS query
            check_target(f"{parts.scheme}://{literal}:{port}/")
        except TargetError as exc:
            if exc.code == NetError.PRIVATE_TARGET:
                raise DomainError(MessagingError.MEDIA_URL_FORBIDDEN,
                                  f"'{parts.hostname}' resolves to {address}, a private, "
                                  "loopback or link-local address; media URLs must be public.", {"url": url}) from None
            raise DomainError(MessagingError.INVALID_MEDIA_URL, exc.message, {"url": url}) from None
    return parts, addresses[0]


def _filename_of(response, parts):
    disposition = response.headers.get("content-disposition") or ""
    found = re.search(r"filename\*=UTF-8''([^;]+)|filename=\"?([^\";]+)\"?", disposition, re.IGNORECASE)
    if found:
        return clean_filename(unquote(found.group(1) or found.group(2)))
    return clean_filename(unquote(parts.path.rsplit("/", 1)[-1]))
