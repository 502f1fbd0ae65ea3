"""Switchboard settings: one module, driven by environment variables.

Every variable read here is listed in .env.example with its default. Values come from, in order of
precedence: the process environment, var/runtime.env (written by scripts/bootstrap.sh with the database and
Redis it found or started; `make` exports it), then .env.
"""
import os
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / "var" / "runtime.env")
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-key-change-me" if DEBUG else environ.Env.NOTSET)
if not DEBUG and len(SECRET_KEY) < 50:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be a random string of at least 50 characters when DEBUG is false.")
# Previous SECRET_KEYs, comma-separated: signed cookies and links made with them stay valid, and secrets encrypted
# with a key derived from them (before WHATSAPP_ENCRYPTION_KEY) still read until rotate_encryption_key moves them.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", ".localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Where people reach the site (links in emails, webhooks, the console): unset, it follows PORT on this machine.
SITE_URL = env("SITE_URL", default=f"http://localhost:{env('PORT', default='8000')}").rstrip("/")
# Tenants may be selected by subdomain: <slug>.<TENANT_BASE_DOMAIN>. It never grants access.
TENANT_BASE_DOMAIN = env("TENANT_BASE_DOMAIN", default="localhost")
# The HTTP handler of config.asgi: "switchboard" (config.http's, one thread hop per request) or "stock" (Django's
# own, kept so that bench/send_pipeline.py can measure what the single hop gains). Leave it "switchboard".
ASGI_HANDLER = env("ASGI_HANDLER", default="switchboard")
# The product's name in emails and page titles.
SITE_NAME = env("SITE_NAME", default="Switchboard")

# --- applications -------------------------------------------------------------------------------
SHARED_APPS = [
    "tenants",  # first: its migrate_schemas replaces django-tenants' one
    # Before django_tenants: its admin templates assume a tenant from the hostname, ours comes from the user.
    "django.contrib.admin",
    "django_tenants",
    "daphne",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "core",
    "audit",
    "accounts",
    "billing",
    "whatsapp.host",
    "backups",  # Backup records span schemas: they live in public
    "alerts",  # platform and tenant alerts: public, one row per incident
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",  # the user's signed-in sessions, and "sign out the other sessions"
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "whatsapp",
    "analytics",
]
INSTALLED_APPS = list(SHARED_APPS) + [a for a in TENANT_APPS if a not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
# Send `SET search_path` only when the schema changes, not before every query. Turn off behind a
# transaction-pooling pgbouncer, where consecutive transactions may land on different server connections.
TENANT_LIMIT_SET_CALLS = env.bool("TENANT_LIMIT_SET_CALLS", default=True)

MIDDLEWARE = [
    "config.errors.RequestGuardMiddleware",  # first: request ids, NUL bytes, /api/ errors in the envelope
    "analytics.middleware.RequestMetricsMiddleware",  # HTTP counts and latency for /metrics
    "django.middleware.security.SecurityMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "core.csp.ContentSecurityPolicyMiddleware",  # django-csp's, with this host's websockets allowed
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.TenantFromPrincipalMiddleware",
    "audit.middleware.AuditContextMiddleware",  # the request's IP (and API key) on its audit rows
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.TwoFactorRequiredMiddleware",  # after the tenant: a workspace may require 2FA
    "allauth.usersessions.middleware.UserSessionsMiddleware",  # keeps each session's IP, browser and last seen
    "analytics.middleware.ApiUsageMiddleware",  # API requests per tenant and key (analytics.usage)
]

ROOT_URLCONF = "config.urls"
# A form posted without its CSRF token answers the site's own 403 page (config.errors), not Django's bare one.
CSRF_FAILURE_VIEW = "config.errors.csrf_failure"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.context_processors.navigation",
                "billing.context_processors.billing",
            ],
        },
    },
]

# --- data ---------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/switchboard")}
DATABASES["default"]["ENGINE"] = "config.postgresql"  # django-tenants' backend, with core.db's pool check
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Parameters bound by Postgres, not pasted into the text, and a statement run five times on one connection
# prepared there (psycopg): the hot paths (an API key's principal, a message's insert) are planned once per connection
# instead of on every request (planning the principal's join cost Postgres 0.7 ms, running it 0.15 ms).
# DATABASE_PREPARED_STATEMENTS=false behind a transaction-pooling pgbouncer (statements prepared on one server
# connection are unknown on the next).
if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
    DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
# The API's accept path (an API key's principal; a message's session, conversation, contact and block) reads its
# rows with statements written out once (core.rows), or, false, with the same statements compiled by the ORM on
# every request: kept so that bench/send_pipeline.py can measure what writing them out gains. Leave it true.
SPEED_PATH_SQL = env.bool("SPEED_PATH_SQL", default=True)
# A connection pool per process (psycopg_pool through Django): under daphne every request runs on a thread of its
# own, so a persistent connection (CONN_MAX_AGE) is never reused there and each request would open a new one.
# Django refuses a pool together with persistent connections: CONN_MAX_AGE only applies without the pool.
# django-tenants issues SET search_path again on every borrowed connection (its wrapper forgets the schema it
# set on close()), so one tenant's search_path never leaks into the next request (tests/test_db_pool.py).
DATABASE_POOL = env.bool("DATABASE_POOL", default=True)
if DATABASE_POOL:
    from core.db import reset_pooled_connection

    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        # 1, not more: Celery's prefork children close their pool after every task (celery.fixups.django), so
        # each task opens a new pool with min_size connections; servers grow theirs to what they need.
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),  # seconds a request waits for a connection
        "reset": reset_pooled_connection,  # session state (advisory locks) never outlives a borrower
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# Name of the throwaway database the test suite creates (lets two suites share one server).
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=f"test_{DATABASES['default']['NAME']}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "sb",
        # Cache keys carry the schema so tenants never read each other's entries.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "sb:channels"},
    }
}

# --- tenants and plans --------------------------------------------------------------------------
TRIAL_PERIOD_DAYS = env.int("TRIAL_PERIOD_DAYS", default=7)
# Schemas kept created and migrated ahead of approvals, so approving is a single transaction.
TENANT_POOL_SIZE = env.int("TENANT_POOL_SIZE", default=3)
SWITCHBOARD_ADMIN_EMAIL = env("SWITCHBOARD_ADMIN_EMAIL", default="admin@switchboard.localhost")
SWITCHBOARD_ADMIN_PASSWORD = env("SWITCHBOARD_ADMIN_PASSWORD", default="")
# Who hears of each new sign-up by email: these addresses (comma-separated), or when empty every platform admin.
ADMIN_EMAIL = env.list("ADMIN_EMAIL", default=[])

# --- billing ------------------------------------------------------------------------------------
# Without STRIPE_SECRET_KEY, Switchboard bills offline: the billing page explains how to pay and platform
# admins record manual payments.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
# Stripe's API base; tests point it at a local fake. Leave unset in production.
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
# Where the billing page's forms are redirected (Stripe Checkout, the customer portal), allowed by its
# Content-Security-Policy's form-action: add your custom Stripe domain here if you use one.
STRIPE_REDIRECT_ORIGINS = env.list("STRIPE_REDIRECT_ORIGINS",
                                   default=["https://checkout.stripe.com", "https://billing.stripe.com"])
# Stripe price ids per plan and interval, e.g. "basic:monthly=price_123,basic:yearly=price_456". Prices
# edited in the admin (billing.Price.stripe_price_id) take precedence.
STRIPE_PRICE_IDS = env.dict("STRIPE_PRICE_IDS", default={})
BILLING_CURRENCY = env("BILLING_CURRENCY", default="usd").lower()
# Offline mode: the price of any plan without a Price row, per interval, in BILLING_CURRENCY.
MONTHLY_PRICE = env.float("MONTHLY_PRICE", default=0.0)
YEARLY_PRICE = env.float("YEARLY_PRICE", default=0.0)
BILLING_OFFLINE_INSTRUCTIONS = env(
    "BILLING_OFFLINE_INSTRUCTIONS",
    default="Pay by bank transfer and send the receipt to the platform team; your subscription is extended "
    "as soon as the payment is recorded.",
)
# Days a tenant stays read-only after its trial or payments lapse, before it is suspended.
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=7)
# Days between an owner's request to delete the workspace and its deletion, during which an owner may cancel.
WORKSPACE_DELETE_GRACE_DAYS = env.int("WORKSPACE_DELETE_GRACE_DAYS", default=7)

# --- WhatsApp -----------------------------------------------------------------------------------
# "neonize" (the real client) or "simulator" (a stand-in for WhatsApp's servers: demos and tests).
WHATSAPP_PROVIDER = env("WHATSAPP_PROVIDER", default="neonize")
# Connection behaviour (times in milliseconds).
WHATSAPP_MAX_RECONNECT_ATTEMPTS = env.int("WHATSAPP_MAX_RECONNECT_ATTEMPTS", default=5)
WHATSAPP_RECONNECT_DELAY = env.int("WHATSAPP_RECONNECT_DELAY", default=5000)
WHATSAPP_KEEPALIVE_INTERVAL = env.int("WHATSAPP_KEEPALIVE_INTERVAL", default=30000)
WHATSAPP_CONNECTION_TIMEOUT = env.int("WHATSAPP_CONNECTION_TIMEOUT", default=60000)
WHATSAPP_MAX_QR_ATTEMPTS = env.int("WHATSAPP_MAX_QR_ATTEMPTS", default=3)
WHATSAPP_USE_PAIRING_CODE = env.bool("WHATSAPP_USE_PAIRING_CODE", default=False)
# Simulator only: every QR code lives this many seconds instead of WhatsApp's 60 s then 20 s (0 = WhatsApp's).
WHATSAPP_SIMULATOR_QR_SECONDS = env.float("WHATSAPP_SIMULATOR_QR_SECONDS", default=0)
# Sessions the whole installation may run at once, across tenants (-1 = no limit beyond the plans').
WHATSAPP_MAX_SESSIONS = env.int("WHATSAPP_MAX_SESSIONS", default=-1)
# Where each session's device store (one sqlite file per session) lives; keep it on a persistent volume
# and in backups: losing it means a new scan.
WHATSAPP_STORE_DIR = env("WHATSAPP_STORE_DIR", default=str(BASE_DIR / "var" / "whatsapp"))
# Times a queued message is handed to a session host before it is marked failed (counted in the database).
WHATSAPP_MESSAGE_MAX_ATTEMPTS = env.int("WHATSAPP_MESSAGE_MAX_ATTEMPTS", default=5)
# Numbers no tenant may message (comma-separated, E.164 or digits with the country code).
WHATSAPP_BLOCKED_NUMBERS = env.list("WHATSAPP_BLOCKED_NUMBERS", default=[])
# A regular expression every recipient's E.164 number must match (e.g. ^\+(1|44)\d+$); empty = any number.
WHATSAPP_ALLOWED_PHONE_PATTERN = env("WHATSAPP_ALLOWED_PHONE_PATTERN", default="")
# Media: largest image/audio/video/sticker and largest document, in megabytes; seconds a media URL may take.
WHATSAPP_MEDIA_MAX_MB = env.float("WHATSAPP_MEDIA_MAX_MB", default=16)
WHATSAPP_DOCUMENT_MAX_MB = env.float("WHATSAPP_DOCUMENT_MAX_MB", default=100)
WHATSAPP_MEDIA_FETCH_TIMEOUT = env.float("WHATSAPP_MEDIA_FETCH_TIMEOUT", default=20)
# Per-number pacing against bans (whatsapp.messaging.pacing), defaults for tenants that set none: at least
# MIN_INTERVAL_MS plus a random 0..JITTER_MS between two messages of one number (3 + 0..2 s: under 20 a
# minute), at most DAILY_CAP a day, and WARMUP_DAILY_CAP a day during a new number's first WARMUP_DAYS days.
WHATSAPP_PACING_ENABLED = env.bool("WHATSAPP_PACING_ENABLED", default=True)
WHATSAPP_PACING_MIN_INTERVAL_MS = env.int("WHATSAPP_PACING_MIN_INTERVAL_MS", default=3000)
WHATSAPP_PACING_JITTER_MS = env.int("WHATSAPP_PACING_JITTER_MS", default=2000)
WHATSAPP_PACING_DAILY_CAP = env.int("WHATSAPP_PACING_DAILY_CAP", default=1000)
WHATSAPP_PACING_WARMUP_DAYS = env.int("WHATSAPP_PACING_WARMUP_DAYS", default=7)
WHATSAPP_PACING_WARMUP_DAILY_CAP = env.int("WHATSAPP_PACING_WARMUP_DAILY_CAP", default=200)
# Send requests one tenant may make per window of WHATSAPP_RATE_LIMIT_WINDOW seconds (429 + Retry-After
# beyond it); a plan's lower messages_per_minute applies first. -1 = no installation-wide ceiling.
WHATSAPP_RATE_LIMIT_PER_COMPANY = env.int("WHATSAPP_RATE_LIMIT_PER_COMPANY", default=600)
WHATSAPP_RATE_LIMIT_WINDOW = env.int("WHATSAPP_RATE_LIMIT_WINDOW", default=60)
# Encryption at rest (core.crypto). WHATSAPP_ENCRYPTION_KEY is a keyring: Fernet keys, comma-separated, newest first
# (the newest encrypts, all decrypt); it always encrypts stored secrets (webhook and bot signing secrets, 2FA
# secrets), and message bodies, captions, previews, webhook payloads and media files too when
# WHATSAPP_ENCRYPT_MESSAGES is on. Empty: secrets use a key derived from SECRET_KEY (changing SECRET_KEY then
# loses them). Rotate with `manage.py rotate_encryption_key`, then drop the old key.
WHATSAPP_ENCRYPT_MESSAGES = env.bool("WHATSAPP_ENCRYPT_MESSAGES", default=False)
WHATSAPP_ENCRYPTION_KEY = env.list("WHATSAPP_ENCRYPTION_KEY", default=[])
# Broadcasts (whatsapp.campaigns): contacts per CSV import and its size; recipients per campaign unless the plan's
# features say max_campaign_recipients; the words (any language) that opt a contact out when sent alone.
CAMPAIGN_IMPORT_MAX_ROWS = env.int("CAMPAIGN_IMPORT_MAX_ROWS", default=50_000)
CAMPAIGN_IMPORT_MAX_BYTES = env.int("CAMPAIGN_IMPORT_MAX_BYTES", default=10_000_000)
CAMPAIGN_MAX_RECIPIENTS = env.int("CAMPAIGN_MAX_RECIPIENTS", default=100_000)
CAMPAIGN_OPT_OUT_WORDS = env.list("CAMPAIGN_OPT_OUT_WORDS", default=[
    "stop", "stopall", "unsubscribe", "stopp", "abmelden", "arret", "arrêt", "désabonner", "baja", "alto", "parar",
    "sair", "cancelar suscripción", "berhenti", "henti", "uitschrijven", "توقف", "停止", "退订", "रोकें"])
# Webhooks (whatsapp.webhooks): targets in private, loopback or link-local ranges are refused unless this is
# true (development only: receivers on this machine or your LAN).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
# Before WHATSAPP_ENCRYPTION_KEY: the key webhook secrets were encrypted with (empty = derived from SECRET_KEY). Still
# read (core.crypto's keyring), so old secrets open until `manage.py rotate_encryption_key` moves them.
WEBHOOK_ENCRYPTION_KEY = env("WEBHOOK_ENCRYPTION_KEY", default="")
# Seconds a delivery attempt may take; only a 2xx answer within it counts as delivered.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=15)
# Deliveries in flight at once per endpoint (and pump): one slow or dead endpoint holds at most this many.
WEBHOOK_CONCURRENCY_PER_ENDPOINT = env.int("WEBHOOK_CONCURRENCY_PER_ENDPOINT", default=16)
# The receptionist (whatsapp.automation): automatic messages one contact may get per hour (a loop between two
# bots stops there), and the milliseconds a tenant's bot webhook has to answer before the rules answer instead.
AUTOREPLY_MAX_PER_CONTACT_PER_HOUR = env.int("AUTOREPLY_MAX_PER_CONTACT_PER_HOUR", default=3)
BOT_TIMEOUT_MS = env.int("BOT_TIMEOUT_MS", default=3000)

# --- backups ------------------------------------------------------------------------------------
# Where backups go: empty = the local folder BACKUP_DIR (files 0600); or an S3-compatible bucket,
# s3://<bucket>/<prefix>?endpoint_url=https://…&region=… (credentials from the URL's user:password or the usual
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment).
BACKUP_DIR = env("BACKUP_DIR", default=str(BASE_DIR / "var" / "backups"))
BACKUP_STORAGE_URL = env("BACKUP_STORAGE_URL", default="")
# Encryption (age format, pyrage). Preferred: public keys (age1…, comma-separated); the server then cannot read its
# own backups, the identity is given at restore. Else a passphrase; else one derived from SECRET_KEY (development).
BACKUP_AGE_RECIPIENTS = env.list("BACKUP_AGE_RECIPIENTS", default=[])
BACKUP_ENCRYPTION_KEY = env("BACKUP_ENCRYPTION_KEY", default="")
# An age identity file the workers may read to decrypt (re-verify, restore from the API); empty = none on the server.
BACKUP_AGE_IDENTITY_FILE = env("BACKUP_AGE_IDENTITY_FILE", default="")
BACKUP_SCHEDULE = env("BACKUP_SCHEDULE", default="0 3 * * *")  # nightly full backup, cron in UTC
BACKUP_RETENTION_DAYS = env.int("BACKUP_RETENTION_DAYS", default=30)
BACKUP_RESTORE_GRACE_DAYS = env.int("BACKUP_RESTORE_GRACE_DAYS", default=7)  # then <schema>_pre_<time> is dropped
BACKUP_ZSTD_LEVEL = env.int("BACKUP_ZSTD_LEVEL", default=3)
# A running backup whose worker has not reported for this long died (SIGKILL, lost machine): it is marked failed.
BACKUP_STALE_SECONDS = env.int("BACKUP_STALE_SECONDS", default=300)
# Seconds a tenant restore waits, after stopping the tenant's sessions, for the session hosts to let go of them.
BACKUP_SESSION_STOP_WAIT_SECONDS = env.float("BACKUP_SESSION_STOP_WAIT_SECONDS", default=20)
# GDPR exports ("Export my data"): per tenant per day, and how long the emailed link works (hours).
BACKUP_EXPORTS_PER_DAY = env.int("BACKUP_EXPORTS_PER_DAY", default=3)
BACKUP_EXPORT_LINK_HOURS = env.int("BACKUP_EXPORT_LINK_HOURS", default=24)
# Point-in-time recovery (the private Postgres bootstrap starts): WAL segments land in this spool (archive_command)
# and are shipped, compressed and encrypted, to the backup storage; a base backup is taken by BACKUP_BASE_SCHEDULE.
BACKUP_WAL_SPOOL_DIR = env("BACKUP_WAL_SPOOL_DIR", default=str(BASE_DIR / "var" / "wal-spool"))
BACKUP_BASE_SCHEDULE = env("BACKUP_BASE_SCHEDULE", default="0 2 * * 0")  # weekly, Sunday 02:00 UTC
# RPO when the machine is lost = archive_timeout (the segment in progress is lost) + the shipping interval (an
# archived segment waits in the spool) + the shipment + ~2 s (Postgres counts whole seconds): about 42 s; measured by
# bench/backup_restore.py (worst 39.7 s). With 60 it was 72.3 s. A segment closed early is zero-filled: ~1 KB once
# compressed, so a short timeout costs nothing.
BACKUP_WAL_SHIP_SECONDS = env.int("BACKUP_WAL_SHIP_SECONDS", default=10)
BACKUP_ARCHIVE_TIMEOUT_SECONDS = env.int("BACKUP_ARCHIVE_TIMEOUT_SECONDS", default=30)  # scripts/bootstrap.sh reads it
# Postgres client binaries (pg_dump, pg_restore, psql, pg_basebackup); empty = the /usr/lib/postgresql/<N>/bin
# matching the server's major version.
BACKUP_PG_BIN_DIR = env("BACKUP_PG_BIN_DIR", default="")

# --- analytics ----------------------------------------------------------------------------------
# Seconds between two folds of the counted message changes into the rollups (reads add what is not folded yet).
ANALYTICS_ROLLUP_SECONDS = env.int("ANALYTICS_ROLLUP_SECONDS", default=15)
# Days custom events (POST /api/v1/analytics/events) are kept.
ANALYTICS_RETENTION_DAYS = env.int("ANALYTICS_RETENTION_DAYS", default=90)
# Seconds between two checks of an open analytics page for changed figures.
ANALYTICS_LIVE_SECONDS = env.float("ANALYTICS_LIVE_SECONDS", default=2)
# GET /metrics (Prometheus): a bearer token, or a client in these networks; per-tenant labels only when asked (one
# series per tenant per figure). Every process's HTTP counts go through files in PROMETHEUS_MULTIPROC_DIR
# (prometheus_client's multiprocess mode), which must be set before prometheus_client is imported: here.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
METRICS_PER_TENANT = env.bool("METRICS_PER_TENANT", default=False)
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default=str(BASE_DIR / "var" / "prometheus"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# Alerts (alerts.rules, checked every minute): told by email, a signed webhook and Telegram, once when an incident
# fires and once when it resolves; one that holds again within ALERT_COOLDOWN_MINUTES goes on without a new message.
WHATSAPP_ALERTING_ENABLED = env.bool("WHATSAPP_ALERTING_ENABLED", default=True)
WHATSAPP_ALERT_WEBHOOK = env("WHATSAPP_ALERT_WEBHOOK", default="")
WHATSAPP_ALERT_WEBHOOK_SECRET = env("WHATSAPP_ALERT_WEBHOOK_SECRET", default="")
WHATSAPP_ALERT_ERROR_RATE = env.float("WHATSAPP_ALERT_ERROR_RATE", default=0.1)
# Drops of a connection over the sessions connected in the last 15 minutes (at least 3 drops), above this: an alert.
WHATSAPP_ALERT_DISCONNECT_RATE = env.float("WHATSAPP_ALERT_DISCONNECT_RATE", default=0.2)
# A worker, session host or web process whose resident memory (from its heartbeat) is over this many MiB.
WHATSAPP_ALERT_MEMORY_MB = env.int("WHATSAPP_ALERT_MEMORY_MB", default=500)
ALERT_QUEUE_AGE_SECONDS = env.int("ALERT_QUEUE_AGE_SECONDS", default=600)
ALERT_SESSION_DOWN_MINUTES = env.int("ALERT_SESSION_DOWN_MINUTES", default=10)
ALERT_COOLDOWN_MINUTES = env.int("ALERT_COOLDOWN_MINUTES", default=15)
TELEGRAM_BOT_TOKEN = env("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_CHAT_IDS = env.list("TELEGRAM_CHAT_IDS", default=[])
TELEGRAM_API_BASE = env("TELEGRAM_API_BASE", default="https://api.telegram.org")

# --- accounts -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "landing"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
# Sign-up says plainly that an email is taken (the issue asks for a clear message); the signup and
# password-reset rate limits below bound how fast anyone can probe addresses.
ACCOUNT_PREVENT_ENUMERATION = False
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.BusinessSignupForm"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
MFA_ADAPTER = "accounts.adapter.MFAAdapter"  # 2FA secrets on the keyring (core.crypto)
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{SITE_NAME}] "
# allauth tells a user by email when their password, or an email address of theirs, changes.
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
# allauth's defaults, spelled out so they stay on: failed logins are limited per IP and per account.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": env("LOGIN_FAILED_RATE_LIMIT", default="10/m/ip,5/5m/key"),
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
}
# An authenticator app (TOTP) with recovery codes, and passkeys / security keys (WebAuthn, through fido2): as a
# second factor, and on their own to sign in ("Sign in with a passkey" on the login page).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
# WebAuthn needs a secure origin; `make run` serves http://localhost in DEBUG.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG
# "Trust this browser": after the second factor, the user may skip it on this browser for MFA_TRUST_COOKIE_AGE.
MFA_TRUST_ENABLED = True
# The session list (/accounts/sessions/) shows when each session was last used.
USERSESSIONS_TRACK_ACTIVITY = True
# A platform admin without an authenticator is sent to the TOTP setup page on every page (accounts.middleware).
# Off only in the test suite, whose many platform admins sign in without a second factor; its own tests turn it on.
PLATFORM_ADMINS_REQUIRE_2FA = env.bool("PLATFORM_ADMINS_REQUIRE_2FA", default=True)

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Switchboard <no-reply@switchboard.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- API ----------------------------------------------------------------------------------------
def _throttle_rate(name, default):
    """A DRF rate ("3000/min": requests per second, min, hour or day) from the environment; "off" turns it off."""
    rate = env(name, default=default).strip()
    return None if rate.lower() in ("off", "none", "") else rate


# Every API endpoint is throttled (core.throttles, counted in Redis across the web processes): per API key, per
# user (all their keys and browser sessions together) and, on the endpoints open without a key, per client IP.
# Over the rate: 429 `throttled` with Retry-After. The send endpoints' per-tenant limit (WHATSAPP_RATE_LIMIT_*)
# applies on top.
API_THROTTLE_KEY_RATE = _throttle_rate("API_THROTTLE_KEY_RATE", "3000/min")
API_THROTTLE_USER_RATE = _throttle_rate("API_THROTTLE_USER_RATE", "6000/min")
API_THROTTLE_ANON_RATE = _throttle_rate("API_THROTTLE_ANON_RATE", "300/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["core.api.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.api.PageLimitPagination",
    "EXCEPTION_HANDLER": "core.api.envelope_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.ScopedAutoSchema",  # with the key scope each operation needs
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "STRICT_JSON": True,  # NaN and Infinity are not JSON
    "DEFAULT_THROTTLE_CLASSES": ["core.throttles.ApiKeyThrottle", "core.throttles.UserThrottle",
                                 "core.throttles.AnonymousThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": API_THROTTLE_KEY_RATE, "user": API_THROTTLE_USER_RATE,
                               "anon": API_THROTTLE_ANON_RATE},
    # A client's IP is REMOTE_ADDR, never a X-Forwarded-For it sent itself: behind a proxy, daphne's
    # --proxy-headers puts the proxy's word there (README, deployment).
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": "Multi-tenant WhatsApp gateway. Authenticate with `Authorization: Bearer <key>` or `X-API-Key`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # A PATCH body is its serializer's (fields left out keep their value: every PATCH serializer's fields are
    # optional), not a copy with every field made optional: a change of plan needs its plan.
    "COMPONENT_SPLIT_PATCH": False,
    # Swagger UI served from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # The envelope and the error answers of every operation (core.schema).
    # The message types' enum is named once (a send's `type` and a simulated inbound's differ; both are "type").
    "ENUM_NAME_OVERRIDES": {"MessageTypeEnum": "whatsapp.messaging.types.SUPPORTED_TYPES",
                            "RoleEnum": "core.permissions.Role.choices",
                            "InvitableRoleEnum": "accounts.members.INVITABLE_CHOICES",
                            "KeywordRuleActionEnum": "whatsapp.automation.models.KeywordRule.Action",
                            "AutomationKindEnum": "whatsapp.automation.models.LOG_KINDS",
                            "ConversationStatusEnum": "whatsapp.conversations.models.Conversation.Status",
                            "AlertStateEnum": "alerts.models.Alert.State",
                            "AlertChannelEnum": "alerts.models.Channel",
                            "AlertKindEnum": "alerts.models.Kind",
                            # An alert's state without labels (the platform metrics') and what a channel was told.
                            "FiringOrResolvedEnum": "alerts.models.STATES",
                            # The platform metrics' own "interval" and "state" (config/platform_metrics.py) beside
                            # the billing interval's and a chat presence's, which keep their names.
                            "MetricsIntervalEnum": "analytics.platform.INTERVALS",
                            "IntervalEnum": "billing.models.Interval.values",
                            "StateEnum": "whatsapp.providers.base.CHAT_PRESENCE_STATES"},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.envelope_and_errors"],
}

# --- background work ----------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)


def _cron(expression):
    """A five-field cron expression (minute hour day-of-month month day-of-week, UTC) as Celery's crontab."""
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week)


CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "refill-tenant-pool": {"task": "tenants.tasks.refill_tenant_pool", "schedule": timedelta(minutes=5)},
    "billing-clock": {"task": "billing.tasks.run_billing_clock", "schedule": timedelta(minutes=15)},
    "delete-due-workspaces": {"task": "accounts.tasks.delete_due_workspaces", "schedule": timedelta(minutes=15)},
    "deliver-due-webhooks": {"task": "whatsapp.webhooks.tasks.deliver_due_webhooks", "schedule": timedelta(seconds=10)},
    "sweep-queued-messages": {"task": "whatsapp.tasks.sweep_queued_messages", "schedule": timedelta(seconds=30)},
    "mark-orphaned-sessions": {"task": "whatsapp.sessions.tasks.mark_orphaned_sessions",
                               "schedule": timedelta(seconds=5)},
    "feed-campaigns": {"task": "whatsapp.campaigns.tasks.feed_campaigns", "schedule": timedelta(seconds=5)},
    "nightly-backup": {"task": "backups.tasks.nightly_backup", "schedule": _cron(BACKUP_SCHEDULE)},
    "backup-housekeeping": {"task": "backups.tasks.housekeeping", "schedule": timedelta(minutes=1)},
    # On a queue of its own (the Procfile's `wal` process): behind a long backup on `default` it would wait minutes.
    "ship-wal": {"task": "backups.tasks.ship_wal", "schedule": timedelta(seconds=BACKUP_WAL_SHIP_SECONDS),
                 "options": {"queue": "wal", "expires": BACKUP_WAL_SHIP_SECONDS}},
    "base-backup": {"task": "backups.tasks.base_backup", "schedule": _cron(BACKUP_BASE_SCHEDULE)},
    "analytics-rollups": {"task": "analytics.tasks.fold_rollups",
                          "schedule": timedelta(seconds=ANALYTICS_ROLLUP_SECONDS)},
    "analytics-api-usage": {"task": "analytics.tasks.flush_api_usage", "schedule": timedelta(minutes=1)},
    "check-alerts": {"task": "alerts.tasks.check_alerts", "schedule": timedelta(minutes=1)},
    "analytics-retention": {"task": "analytics.tasks.purge_old_events", "schedule": timedelta(hours=1)},
}

# --- web ----------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "var" / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = env("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
MEDIA_URL = "/media/"
WHITENOISE_USE_FINDERS = DEBUG

# --- security: production defaults follow DEBUG, each can be overridden ------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Browser features no page here uses, switched off for every page (django-permissions-policy).
PERMISSIONS_POLICY = {feature: [] for feature in (
    "accelerometer", "autoplay", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer",
    "microphone", "midi", "payment", "usb", "xr-spatial-tracking")}
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): scripts, styles, images and connections from this site only, so injected
# markup can't run a script; no inline <script>, event handler (onclick=…) or style attribute anywhere (confirm
# prompts are data-confirm, static/js/site.js). img-src allows data: URIs (the favicon, Swagger UI's icons);
# connect-src gets this host's ws:// or wss:// added per request (core.csp) for the live pages. Form posts go to
# this site only, except the billing page's, which redirect to Stripe (billing.views). The API docs page loads its
# start-up script from a URL (config.urls). CSP_REPORT_URI: where browsers report violations (unset: nowhere).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        **({"report-uri": [env("CSP_REPORT_URI")]} if env("CSP_REPORT_URI", default="") else {}),
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
