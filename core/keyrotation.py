"""Re-encrypting what is stored with the newest key of the keyring (core.crypto), for `manage.py
rotate_encryption_key`.

What it walks, found from the models rather than listed (a new encrypted column is picked up without touching this):
every EncryptedTextField, EncryptedJSONField and SecretTextField of every model, in the public schema for shared
apps and in every tenant schema for tenant apps; allauth's two-factor secrets (public schema); and the media files
under MEDIA_ROOT/<schema>/whatsapp/.

How: by primary key in batches of `batch_size` rows, each batch in its own short transaction, written with a
compare-and-swap (`WHERE id = … AND column = <the value read>`), so a row the application changed meanwhile is left
as the application wrote it (with the newest key already) and no table is locked for longer than one batch. Values
already under the newest key are left alone, so the command can stop at any point and run again: it resumes in
effect where it stopped, and a second run finds nothing to do. Files are replaced atomically (write beside, rename).

With WHATSAPP_ENCRYPT_MESSAGES off, message bodies and files encrypted earlier are written back in the clear (the
way to switch encryption off); secrets are always encrypted.

A value no key opens (its key was removed before rotating) is counted and reported, never a crash: put the key back
and run again.
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django_tenants.utils import get_public_schema_name, get_tenant_model, schema_context

from . import crypto
from .errors import DomainError

BODY, JSON_BODY, SECRET = "body", "json", "secret"


@dataclass
class Column:
    model: type
    column: str
    kind: str

    @property
    def label(self):
        return f"{self.model._meta.db_table}.{self.column}"


@dataclass
class Totals:
    scanned: int = 0
    rewritten: int = 0
    unreadable: int = 0
    unreadable_where: list = field(default_factory=list)

    def add(self, other):
        self.scanned += other.scanned
        self.rewritten += other.rewritten
        self.unreadable += other.unreadable
        self.unreadable_where += other.unreadable_where


def _kind(model_field):
    if isinstance(model_field, crypto.EncryptedTextField):
        return BODY
    if isinstance(model_field, crypto.EncryptedJSONField):
        return JSON_BODY
    if isinstance(model_field, crypto.SecretTextField):
        return SECRET
    return None


def _is_tenant_model(model):
    config = model._meta.app_config.name
    shared = set(settings.SHARED_APPS)
    return config in settings.TENANT_APPS and config not in shared


def encrypted_columns(*, tenant):
    """The encrypted columns of the tenant schemas' tables (tenant=True) or of the public schema's."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed or _is_tenant_model(model) != tenant:
            continue
        for model_field in model._meta.concrete_fields:
            kind = _kind(model_field)
            if kind:
                found.append(Column(model, model_field.column, kind))
    return found


# --- one value --------------------------------------------------------------------------------------------------


def _fresh(kind, stored):
    """The value `stored` should become, or None when it already is as it should be."""
    if kind == SECRET:
        return None if crypto.secret_under_newest(stored) else crypto.reseal_secret(stored)
    if kind == BODY:
        return None if crypto.under_newest(stored) else crypto.reseal(stored)
    value = json.loads(stored)  # JSON_BODY: the column's text
    if crypto.is_encrypted(value):
        if crypto.messages_encrypted() and crypto.under_newest(value):
            return None
        value = json.loads(crypto.decrypt(value))
    elif not crypto.messages_encrypted():
        return None
    if crypto.messages_encrypted():
        value = crypto.encrypt(json.dumps(value, separators=(",", ":")))
    return json.dumps(value)


def _rotate_column(column, batch_size, report):
    quote = connection.ops.quote_name
    table, name, pk = quote(column.model._meta.db_table), quote(column.column), quote(column.model._meta.pk.column)
    cast = "jsonb" if column.kind == JSON_BODY else "text"
    text_of = f"{name}::text" if column.kind == JSON_BODY else name
    totals = Totals()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        total = cursor.fetchone()[0]
    last = None
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            after = "" if last is None else f"WHERE {pk} > %s"
            cursor.execute(f"SELECT {pk}, {text_of} FROM {table} {after} ORDER BY {pk} LIMIT %s",
                           ([] if last is None else [last]) + [batch_size])
            batch = cursor.fetchall()
            if not batch:
                break
            last = batch[-1][0]
            changes = []
            for row_id, stored in batch:
                if stored is None or stored == "":
                    continue
                try:
                    fresh = _fresh(column.kind, stored)
                except DomainError:
                    totals.unreadable += 1
                    totals.unreadable_where.append(f"{column.label} id {row_id}")
                    continue
                if fresh is not None:
                    changes.append((row_id, stored, fresh))
            if changes:
                values = ", ".join([f"(%s, %s::{cast}, %s::{cast})"] * len(changes))
                cursor.execute(
                    f"UPDATE {table} AS t SET {name} = v.fresh FROM (VALUES {values}) AS v(id, stored, fresh) "
                    f"WHERE t.{pk} = v.id AND t.{name} = v.stored",
                    [value for change in changes for value in change])
                totals.rewritten += cursor.rowcount
            totals.scanned += len(batch)
        report(column.label, min(totals.scanned, total), total)
    if not total:
        report(column.label, 0, 0)
    return totals


# --- two-factor secrets (allauth, public schema) ------------------------------------------------------------------

MFA_STRINGS = ("secret", "seed")
MFA_LISTS = ("migrated_codes",)


def _rotate_mfa(batch_size, report):
    from allauth.mfa.models import Authenticator

    totals = Totals()
    total = Authenticator.objects.count()
    last = 0
    while True:
        with transaction.atomic():
            batch = list(Authenticator.objects.filter(pk__gt=last).order_by("pk")[:batch_size])
            if not batch:
                break
            last = batch[-1].pk
            for authenticator in batch:
                data, changed = dict(authenticator.data or {}), False
                try:
                    for key in MFA_STRINGS:
                        if isinstance(data.get(key), str) and not crypto.secret_under_newest(data[key]):
                            data[key], changed = crypto.encrypt_secret(_open_mfa(data[key])), True
                    for key in MFA_LISTS:
                        if isinstance(data.get(key), list) and not all(map(crypto.secret_under_newest, data[key])):
                            data[key] = [crypto.encrypt_secret(_open_mfa(code)) for code in data[key]]
                            changed = True
                except DomainError:
                    totals.unreadable += 1
                    totals.unreadable_where.append(f"mfa_authenticator id {authenticator.pk}")
                    continue
                if changed:
                    totals.rewritten += Authenticator.objects.filter(
                        pk=authenticator.pk, data=authenticator.data).update(data=data)
            totals.scanned += len(batch)
        report("mfa_authenticator.data", totals.scanned, total)
    return totals


def _open_mfa(value):
    return crypto.decrypt_secret(value) if crypto.is_encrypted(value) else value  # plain before the keyring


# --- media files --------------------------------------------------------------------------------------------------


def media_dir(schema_name):
    return Path(settings.MEDIA_ROOT) / schema_name / "whatsapp"


def _rotate_files(schema_name, report):
    totals = Totals()
    root = media_dir(schema_name)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")) if root.is_dir() else []
    for index, path in enumerate(paths, 1):
        stored = path.read_bytes()
        totals.scanned += 1
        try:
            if not crypto.bytes_under_newest(stored):
                fresh = crypto.seal_bytes(crypto.open_bytes(stored))
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(fresh)
                os.replace(tmp, path)
                totals.rewritten += 1
        except DomainError:
            totals.unreadable += 1
            totals.unreadable_where.append(f"file {path.relative_to(settings.MEDIA_ROOT)}")
        if index % 100 == 0 or index == len(paths):
            report("media files", index, len(paths))
    return totals


# --- everything ---------------------------------------------------------------------------------------------------


def tenant_schemas(only=None):
    """(schema_name, slug) of every tenant whose schema exists (pooled ones too: cheap, and they are handed out
    later), or of those `only` names by slug or schema."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace")
        existing = {row[0] for row in cursor.fetchall()}
    tenants = get_tenant_model().objects.exclude(schema_name=get_public_schema_name()).order_by("pk")
    if only:
        tenants = tenants.filter(Q(schema_name__in=only) | Q(slug__in=only))
    return [(t.schema_name, t.slug or t.schema_name) for t in tenants if t.schema_name in existing]


def rotate(*, batch_size=500, only=None, files=True, public=True, report=None):
    """Bring every stored value and file under the newest key; returns the Totals. `report(where, label, done,
    total)` is told as batches finish."""
    report = report or (lambda *args: None)
    crypto.newest()  # a bad keyring stops here, before anything is read
    totals = Totals()
    if public:
        with schema_context(get_public_schema_name()):
            where = "public"
            for column in encrypted_columns(tenant=False):
                totals.add(_rotate_column(column, batch_size, lambda *a: report(where, *a)))
            totals.add(_rotate_mfa(batch_size, lambda *a: report(where, *a)))
    for schema_name, label in tenant_schemas(only):
        where = f"{label} ({schema_name})" if label != schema_name else schema_name
        with schema_context(schema_name):
            for column in encrypted_columns(tenant=True):
                totals.add(_rotate_column(column, batch_size, lambda *a, w=where: report(w, *a)))
        if files:
            totals.add(_rotate_files(schema_name, lambda *a, w=where: report(w, *a)))
    return totals


def pending(*, only=None):
    """How many stored values and files are not yet as the newest key (and WHATSAPP_ENCRYPT_MESSAGES) want them,
    and how many no key opens: (pending, unreadable). Reads only."""
    count, unreadable = 0, 0

    def scan(column):
        nonlocal count, unreadable
        quote = connection.ops.quote_name
        text_of = f"{quote(column.column)}::text" if column.kind == JSON_BODY else quote(column.column)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {text_of} FROM {quote(column.model._meta.db_table)} "
                           f"WHERE {quote(column.column)} IS NOT NULL")
            for (stored,) in cursor:
                if stored in (None, ""):
                    continue
                try:
                    count += _fresh(column.kind, stored) is not None
                except DomainError:
                    unreadable += 1

    with schema_context(get_public_schema_name()):
        for column in encrypted_columns(tenant=False):
            scan(column)
        mfa = _rotate_mfa_dry()
        count, unreadable = count + mfa[0], unreadable + mfa[1]
    for schema_name, _ in tenant_schemas(only):
        with schema_context(schema_name):
            for column in encrypted_columns(tenant=True):
                scan(column)
        root = media_dir(schema_name)
        for path in (root.rglob("*") if root.is_dir() else ()):
            if path.is_file() and not path.name.endswith(".tmp"):
                stored = path.read_bytes()
                if not crypto.bytes_under_newest(stored):
                    try:
                        crypto.open_bytes(stored)
                        count += 1
                    except DomainError:
                        unreadable += 1
    return count, unreadable


def _rotate_mfa_dry():
    from allauth.mfa.models import Authenticator

    count, unreadable = 0, 0
    for data in Authenticator.objects.values_list("data", flat=True).iterator():
        values = [data.get(k) for k in MFA_STRINGS if isinstance((data or {}).get(k), str)]
        values += [v for k in MFA_LISTS for v in ((data or {}).get(k) or [])]
        stale = [v for v in values if not crypto.secret_under_newest(v)]
        if stale:
            try:
                [_open_mfa(v) for v in stale]
                count += 1
            except DomainError:
                unreadable += 1
    return count, unreadable
