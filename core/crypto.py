"""Encryption at rest: one keyring for every value the installation stores reversibly.

WHATSAPP_ENCRYPTION_KEY is a keyring: Fernet keys separated by commas, newest first. The newest encrypts, every key
decrypts, so a key is replaced by putting the new one in front, running `manage.py rotate_encryption_key` (it
re-encrypts every stored value and file with the newest key) and then dropping the old one.

What is on it:
- **secrets**, always (whether or not messages are encrypted): webhook signing secrets, the receptionist's bot
  secrets, TOTP secrets of two-factor authentication (allauth's MFA adapter). Without WHATSAPP_ENCRYPTION_KEY they
  are encrypted with a key derived from WEBHOOK_ENCRYPTION_KEY or SECRET_KEY, as they were before the keyring
  existed; those derived keys (from SECRET_KEY_FALLBACKS too) stay on the ring for reading, so a secret written
  under them reads until rotation moves it onto the configured keys, after which SECRET_KEY can change freely.
- **message bodies**, opt-in (WHATSAPP_ENCRYPT_MESSAGES): message text and captions, conversation previews, the
  texts campaigns render per recipient (EncryptedTextField), webhook delivery payloads (EncryptedJSONField), and
  media files on disk (seal_bytes / open_bytes).

Why Fernet (cryptography's MultiFernet) rather than AES-GCM with key ids: it is the kept library's own keyring
(encrypt with the first key, decrypt with any, `rotate()`), authenticated (AES-128-CBC + HMAC-SHA256), and the
webhook secrets were already Fernet tokens, so the old ones read with the same code. What AES-GCM would save
(a key id instead of trying the keys in turn, ~40 bytes per value) does not matter at a handful of keys; its
nonce handling would be ours to get right.

Stored form: a value encrypted here starts with "enc:v1:" followed by the Fernet token, so plaintext written
before encryption was switched on (or while it is off) still reads, and a database holding both works. A plaintext
that itself starts with "enc:" is stored as "enc:plain:" + the text, so no message can pass for ciphertext. Empty
values stay empty (a blank caption is not worth a token, and filters on "" keep working). Files start with
FILE_MAGIC followed by the token's bytes.

A value no key on the ring opens raises DomainError(EncryptionError.KEY_UNAVAILABLE): 503 with a message saying
which setting to fix, never a 500 and never a wrong answer.
"""
import base64
import binascii
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .errors import DomainError, EncryptionError

PREFIX = "enc:v1:"
PLAIN_PREFIX = "enc:plain:"
MARK = "enc:"
FILE_MAGIC = b"SBENC1\n"
_LEGACY_SALT = b"switchboard.webhooks.secret:"

UNREADABLE_MESSAGE = ("This was encrypted with a key that is no longer in WHATSAPP_ENCRYPTION_KEY: put the old key "
                      "back (after the newest) and run manage.py rotate_encryption_key before dropping it.")


# --- the keyring ---------------------------------------------------------------------------------------------------


def configured_keys():
    """WHATSAPP_ENCRYPTION_KEY's keys, newest first (blank entries ignored)."""
    value = settings.WHATSAPP_ENCRYPTION_KEY
    keys = value if isinstance(value, list | tuple) else str(value or "").split(",")
    return [key.strip() for key in keys if key and key.strip()]


def key_problems():
    """Why the configured keyring cannot work (a sentence per bad key), or []."""
    problems = []
    for position, key in enumerate(configured_keys(), 1):
        try:
            Fernet(key)
        except (ValueError, binascii.Error):
            problems.append(f"key {position} of WHATSAPP_ENCRYPTION_KEY is not a Fernet key (32 bytes, url-safe "
                            "base64: 44 characters ending in '=')")
    return problems


def _legacy_keys():
    """The keys secrets were encrypted with before the keyring: derived from WEBHOOK_ENCRYPTION_KEY or SECRET_KEY
    (and SECRET_KEY_FALLBACKS, so an operator who already changed SECRET_KEY can still migrate)."""
    materials = [settings.WEBHOOK_ENCRYPTION_KEY, settings.SECRET_KEY,
                 *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    found = []
    for material in materials:
        if material:
            key = base64.urlsafe_b64encode(hashlib.sha256(_LEGACY_SALT + material.encode()).digest())
            if key not in found:
                found.append(key)
    return found


_rings = {}


def _ring_state():
    """(newest Fernet, MultiFernet of all), made once per combination of the settings they come from (on every
    value read or written: the settings are compared, nothing is derived again)."""
    configured = settings.WHATSAPP_ENCRYPTION_KEY
    state = (tuple(configured) if isinstance(configured, list | tuple) else configured,
             settings.WEBHOOK_ENCRYPTION_KEY, settings.SECRET_KEY, tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ())))
    ring = _rings.get(state)
    if ring is None:
        problems = key_problems()
        if problems:
            raise ImproperlyConfigured("; ".join(problems))
        fernets = [Fernet(key) for key in (*configured_keys(), *_legacy_keys())]
        ring = _rings[state] = (fernets[0], MultiFernet(fernets))
        if len(_rings) > 8:  # settings overridden in tests: keep only a few
            _rings.pop(next(iter(_rings)), None)
    return ring


def newest():
    """The Fernet that encrypts: the first configured key, else the one derived from SECRET_KEY."""
    return _ring_state()[0]


def keyring():
    """Every key that decrypts, newest first."""
    return _ring_state()[1]


def messages_encrypted():
    return settings.WHATSAPP_ENCRYPT_MESSAGES


def check_messages_key():
    """Encrypting messages needs a configured key (a derived one would tie them to SECRET_KEY)."""
    if messages_encrypted() and not configured_keys():
        raise ImproperlyConfigured("WHATSAPP_ENCRYPT_MESSAGES is on but WHATSAPP_ENCRYPTION_KEY is empty.")


def refuse_search(what="message text"):
    """Searching encrypted columns cannot work in the database: 400 search_unavailable_encrypted while
    WHATSAPP_ENCRYPT_MESSAGES is on."""
    if messages_encrypted():
        raise DomainError(EncryptionError.SEARCH_UNAVAILABLE,
                          f"Searching {what} is not available: this installation encrypts message bodies at rest "
                          "(WHATSAPP_ENCRYPT_MESSAGES), so the database cannot look inside them. Filter by contact, "
                          "session, direction or status instead.")


def generate_key():
    return Fernet.generate_key().decode()


# --- values --------------------------------------------------------------------------------------------------------


def unreadable(detail=None):
    return DomainError(EncryptionError.KEY_UNAVAILABLE, UNREADABLE_MESSAGE, detail)


def encrypt(text):
    """`text` encrypted with the newest key, in the stored form (PREFIX + token)."""
    return PREFIX + newest().encrypt(text.encode()).decode()


def decrypt(value):
    """The text of a value in the stored form (or a Fernet token without the prefix: secrets written before the
    keyring). Raises DomainError(KEY_UNAVAILABLE) when no key opens it."""
    token = value[len(PREFIX):] if value.startswith(PREFIX) else value
    try:
        return keyring().decrypt(token.encode()).decode()
    except InvalidToken:
        raise unreadable() from None


def is_encrypted(value):
    return isinstance(value, str) and value.startswith(PREFIX)


def seal(value):
    """What a message-body column stores for `value`: encrypted when WHATSAPP_ENCRYPT_MESSAGES is on, else the
    text (escaped when it starts like a stored form). None and "" as they are."""
    if not value:
        return value
    if messages_encrypted():
        check_messages_key()
        return encrypt(value)
    return PLAIN_PREFIX + value if value.startswith(MARK) else value


def unseal(value):
    """The text of a stored message-body value, encrypted or not."""
    if not value or not isinstance(value, str) or not value.startswith(MARK):
        return value
    if value.startswith(PLAIN_PREFIX):
        return value[len(PLAIN_PREFIX):]
    if value.startswith(PREFIX):
        return decrypt(value)
    return value  # plaintext written before the escape existed


def under_newest(value):
    """Whether a stored value needs no rotation: encrypted with the newest key, or (with message encryption off)
    plain."""
    if not value:
        return True
    if not is_encrypted(value) or not messages_encrypted():
        return not is_encrypted(value) and not messages_encrypted()
    try:
        newest().decrypt(value[len(PREFIX):].encode())
        return True
    except InvalidToken:
        return False


def reseal(value):
    """A stored message-body value re-encrypted with the newest key (or written plain again when message
    encryption is off: rotation then decrypts what was encrypted)."""
    return seal(unseal(value))


# --- secrets (always encrypted) ----------------------------------------------------------------------------------


def encrypt_secret(secret):
    return encrypt(secret)


def decrypt_secret(value):
    return decrypt(value)


def secret_under_newest(value):
    if not value:
        return True
    if not is_encrypted(value):
        return False
    try:
        newest().decrypt(value[len(PREFIX):].encode())
        return True
    except InvalidToken:
        return False


def reseal_secret(value):
    return encrypt(decrypt(value)) if value else value


# --- files ---------------------------------------------------------------------------------------------------------


def seal_bytes(content):
    """A media file's bytes as stored: encrypted (FILE_MAGIC + token) when WHATSAPP_ENCRYPT_MESSAGES is on."""
    if not messages_encrypted():
        return content
    check_messages_key()
    return FILE_MAGIC + base64.urlsafe_b64decode(newest().encrypt(content))


def open_bytes(stored):
    """A stored media file's bytes, decrypted when it was encrypted."""
    if not stored.startswith(FILE_MAGIC):
        return stored
    try:
        return keyring().decrypt(base64.urlsafe_b64encode(stored[len(FILE_MAGIC):]))
    except InvalidToken:
        raise unreadable() from None


def bytes_under_newest(stored):
    if not stored.startswith(FILE_MAGIC) or not messages_encrypted():
        return not stored.startswith(FILE_MAGIC) and not messages_encrypted()
    try:
        newest().decrypt(base64.urlsafe_b64encode(stored[len(FILE_MAGIC):]))
        return True
    except InvalidToken:
        return False


# --- fields --------------------------------------------------------------------------------------------------------


class EncryptedTextField(models.TextField):
    """A text column whose values are sealed on the way in and opened on the way out (ORM reads, .values(),
    core.rows' hand-written statements, which apply the fields' converters). Hand-written statements that write
    it must seal() their parameters themselves. Filtering on its content (contains, exact) cannot match an
    encrypted value: callers refuse such searches while WHATSAPP_ENCRYPT_MESSAGES is on."""

    def get_prep_value(self, value):
        return seal(super().get_prep_value(value))

    def from_db_value(self, value, expression, connection):
        return unseal(value)


class EncryptedJSONField(models.JSONField):
    """A JSON column stored, while WHATSAPP_ENCRYPT_MESSAGES is on, as one JSON string (the sealed JSON text);
    rows written plain still read. Not filterable by its content when encrypted."""

    def get_prep_value(self, value):
        if value is not None and messages_encrypted():
            check_messages_key()
            value = encrypt(json.dumps(value, cls=self.encoder or DjangoJSONEncoder, separators=(",", ":")))
        return super().get_prep_value(value)

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        if is_encrypted(value):
            return json.loads(decrypt(value))
        return value


class SecretTextField(models.TextField):
    """A secret stored encrypted (encrypt_secret / decrypt_secret, called by its feature, which needs the
    plaintext only at the moment it signs). The class marks the column for rotate_encryption_key."""
