"""Encryption of everything a backup writes: the age format (authenticated, streamed) through pyrage.

Two ways to hold the key, chosen by the settings:
- **recipients** (BACKUP_AGE_RECIPIENTS, public keys `age1…`): files are encrypted to those keys and the server
  keeps no identity, so a stolen server cannot read its own backups; the identity is given at restore (or kept in
  BACKUP_AGE_IDENTITY_FILE by an operator who accepts that). So that every backup is still proven by a restore,
  a backup is also encrypted to a one-off identity that lives only in the worker's memory while it verifies that
  very file, and is then forgotten.
- **passphrase** (BACKUP_ENCRYPTION_KEY, or one derived from SECRET_KEY when unset): a random x25519 identity,
  itself encrypted with the passphrase (age's scrypt recipient), is kept in the storage at `keys/identity.age` and
  copied beside each backup; files are encrypted to its public key. (pyrage encrypts to a passphrase only in
  memory, so the large files go through the wrapped identity; both layers are plain age files: `age -d`.)
"""
import hashlib
import io

import pyrage
from django.conf import settings
from django.db import connection, transaction
from pyrage import passphrase as age_passphrase
from pyrage import ssh, x25519

from core.errors import DomainError

from .errors import BackupError

RECIPIENTS = "age-recipients"
PASSPHRASE = "age-passphrase"
KEYRING_NAME = "keys/identity.age"
KEY_SIDECAR_SUFFIX = ".key.age"
_KEYRING_LOCK = 0x5B_B4C1  # pg advisory lock: one worker creates the wrapped identity


def mode():
    return RECIPIENTS if settings.BACKUP_AGE_RECIPIENTS else PASSPHRASE


def passphrase():
    """BACKUP_ENCRYPTION_KEY, else a value derived from SECRET_KEY (changing SECRET_KEY then loses the backups)."""
    if settings.BACKUP_ENCRYPTION_KEY:
        return settings.BACKUP_ENCRYPTION_KEY
    return hashlib.sha256(f"switchboard-backups:{settings.SECRET_KEY}".encode()).hexdigest()


def parse_recipient(text):
    text = text.strip()
    try:
        if text.startswith("age1"):
            return x25519.Recipient.from_str(text)
        return ssh.Recipient.from_str(text)
    except Exception as exc:  # pyrage raises RecipientError or ValueError depending on the kind
        raise DomainError(BackupError.ENCRYPTION_NOT_CONFIGURED,
                          f"BACKUP_AGE_RECIPIENTS holds something that is not an age or ssh public key: {text[:20]}…",
                          ) from exc


def parse_identities(text):
    """Identities from the text of an age identity file (AGE-SECRET-KEY-… lines; # comments) or an ssh key."""
    text = (text or "").strip()
    if not text:
        return []
    if "PRIVATE KEY" in text:
        try:
            return [ssh.Identity.from_buffer(text.encode())]
        except Exception as exc:  # pyrage's IdentityError or ValueError
            raise DomainError(BackupError.WRONG_KEY, "That ssh private key could not be read.") from exc
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except Exception as exc:  # pyrage's IdentityError or ValueError
            raise DomainError(BackupError.WRONG_KEY, "The identity is not an age secret key (AGE-SECRET-KEY-1…).",
                              ) from exc
    return identities


def configured_identities():
    """The identities the server itself may use: BACKUP_AGE_IDENTITY_FILE (recipients mode) or the wrapped one."""
    if mode() == RECIPIENTS:
        path = settings.BACKUP_AGE_IDENTITY_FILE
        if not path:
            return []
        with open(path) as handle:
            return parse_identities(handle.read())
    return []


# --- the passphrase keyring --------------------------------------------------------------------------------------

def wrap_identity(identity):
    return age_passphrase.encrypt(str(identity).encode(), passphrase())


_unwrapped = {}  # (sha256 of the wrapped key, of the passphrase) -> identity: scrypt costs ~3 s per unwrap


def unwrap_identity(wrapped, secret=None):
    secret = secret or passphrase()
    key = (hashlib.sha256(wrapped).hexdigest(), hashlib.sha256(secret.encode()).hexdigest())
    if key in _unwrapped:
        return _unwrapped[key]
    try:
        identity = x25519.Identity.from_str(age_passphrase.decrypt(wrapped, secret).decode().strip())
        _unwrapped[key] = identity
        return identity
    except pyrage.DecryptError as exc:
        raise DomainError(BackupError.WRONG_KEY, "The passphrase does not open this backup's key: check "
                          "BACKUP_ENCRYPTION_KEY (or SECRET_KEY, when it is unset).") from exc


def keyring_identity(store):
    """The passphrase mode's identity, created (and stored wrapped) on first use."""
    if store.exists(KEYRING_NAME):
        return unwrap_identity(store.read_bytes(KEYRING_NAME))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_KEYRING_LOCK])
        if store.exists(KEYRING_NAME):
            return unwrap_identity(store.read_bytes(KEYRING_NAME))
        identity = x25519.Identity.generate()
        wrapped = wrap_identity(identity)
        store.write_bytes(KEYRING_NAME, wrapped)
        _unwrapped[(hashlib.sha256(wrapped).hexdigest(), hashlib.sha256(passphrase().encode()).hexdigest())] = identity
        return identity


class Sealing:
    """How one new file is encrypted: its recipients, the identity that verifies it, the wrapped key kept beside."""

    def __init__(self, recipients, verify_identity, wrapped_key=None):
        self.recipients = recipients
        self.verify_identity = verify_identity
        self.wrapped_key = wrapped_key
        self.mode = mode()


def sealing_for_new_file(store, *, one_off=True):
    """Recipients for a new file. In recipients mode, `one_off` adds a throwaway identity so the worker can verify
    the stored file (WAL segments are not verified one by one and get none)."""
    if mode() == RECIPIENTS:
        recipients = [parse_recipient(text) for text in settings.BACKUP_AGE_RECIPIENTS if text.strip()]
        verify = x25519.Identity.generate() if one_off else None
        if verify is not None:
            recipients.append(verify.to_public())
        return Sealing(recipients, verify)
    identity = keyring_identity(store)
    return Sealing([identity.to_public()], identity, wrapped_key=store.read_bytes(KEYRING_NAME))


def identities_for_reading(store, *, given=None, sidecar_name=None, extra=()):
    """Every identity that may open a stored file: the one given at restore, the server's own (identity file or
    the wrapped passphrase identity, from the sidecar beside the backup or the keyring)."""
    identities = list(extra) + parse_identities(given) + configured_identities()
    for name in (sidecar_name, KEYRING_NAME):
        if name and store.exists(name):
            try:
                identities.append(unwrap_identity(store.read_bytes(name)))
                break
            except DomainError:
                continue  # another passphrase's key: the recipients may still match
    return identities


# --- streams -----------------------------------------------------------------------------------------------------

def encrypt(reader, writer, recipients):
    """Encrypt everything `reader` gives into `writer` (pyrage streams in chunks and releases the GIL)."""
    if not recipients:
        raise DomainError(BackupError.ENCRYPTION_NOT_CONFIGURED, "No key to encrypt backups with.")
    pyrage.encrypt_io(reader, writer, recipients)


def decrypt(reader, writer, identities):
    if not identities:
        raise DomainError(BackupError.NO_KEY, "This backup is encrypted to public keys and no identity was given: "
                          "pass the age identity (AGE-SECRET-KEY-1…) that matches BACKUP_AGE_RECIPIENTS.")
    try:
        pyrage.decrypt_io(reader, writer, identities)
    except (pyrage.DecryptError, OSError) as exc:  # a damaged chunk surfaces mid-stream as OSError
        if "No matching keys" in str(exc):
            raise DomainError(BackupError.WRONG_KEY, "Wrong key: none of the identities given opens this backup.",
                              ) from exc
        raise DomainError(BackupError.CORRUPTED, f"The backup could not be decrypted: it is damaged ({exc}).",
                          ) from exc


def decrypt_bytes(data, identities):
    out = io.BytesIO()
    decrypt(io.BytesIO(data), out, identities)
    return out.getvalue()
