"""A live Switchboard for browser tests: real processes on the pytest-django test database.

`LiveSystem` starts the web process (two daphnes: HTTP + websockets) and a Celery worker as subprocesses, each
in its own process group, pointed at the test database and at a private Redis database (broker, cache and channel layer all come
from REDIS_URL), so a worker started here never takes tasks from a dev system and a dev worker never takes
ours. Emails go to a directory through Django's file backend; `Mailbox` reads them back.

The pytest process takes part too (it registers businesses, fills the pool, publishes tasks): see
`tests/conftest.py`, which points its Celery app and channel layer at the same Redis database.
"""
import email
import email.policy
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
# `make test` runs the suite on Redis database TEST_REDIS_DB (15; 0 is the dev system's); browser tests use the one
# below it, and under pytest-xdist each worker its own, counting down, so parallel browser tests never share a broker
# or channel layer. Two suites on one Redis: give each its own TEST_REDIS_DB, far enough apart (and TEST_DATABASE_NAME).
LIVE_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15")) - 1
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
START_TIMEOUT = 40.0
STOP_TIMEOUT = 5.0
TIMEOUT_MS = 15_000  # what a browser test waits for anything on a page
PHONE = {"width": 390, "height": 844}
# pytestmark of a browser test module: committed rows (live processes read them), skipped without Chromium.
BROWSER_TEST = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_url_with_db(url, db):
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def database_url(db):
    """A DATABASE_URL for a Django DATABASES entry (the test database, inside a test)."""
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(db['NAME'], safe='')}"


def wait_until(predicate, *, timeout, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(interval)


class Process:
    """One subprocess in its own process group, output captured to a log file."""

    def __init__(self, name, argv, *, env, log_dir):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = Path(log_dir) / f"{name}.log"
        self.popen = None

    def start(self):
        log = open(self.log_path, "wb")
        try:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        return self

    @property
    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Signal the whole group, wait STOP_TIMEOUT, then SIGKILL whatever is left of the group."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session: the child leads its own group
        try:
            os.killpg(pgid, sig)
            self.popen.wait(timeout=STOP_TIMEOUT)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # a leader that ignored sig, or children it left behind
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=STOP_TIMEOUT)

    def output(self, last=None):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if last is not None:
            text = "\n".join(text.splitlines()[-last:])
        return text


class LiveSystem:
    """The web process + a Celery worker on the test database and a private Redis database; with `whatsapp={…}`
    (options of _add_whatsapp_worker) also a `whatsapp` worker hosting sessions on the simulator."""

    def __init__(self, *, db_settings, redis_url, work_dir, celery_app, whatsapp=None):
        self.work_dir = Path(work_dir)
        self.mail_dir = self.work_dir / "mail"
        self.log_dir = self.work_dir / "logs"
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.celery_app = celery_app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker_name = f"live-{secrets.token_hex(4)}@{socket.gethostname()}"
        self.mailbox = Mailbox(self.mail_dir)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url(db_settings),
            "DATABASE_CONN_MAX_AGE": "0",  # no idle connections left behind for the test's flush
            "REDIS_URL": redis_url,
            "DEBUG": "true",
            "SITE_URL": self.url,
            "ALLOWED_HOSTS": "localhost,.localhost,127.0.0.1",
            # django-environ drops the first slash of the path: filemail:///tmp/x would mean ./tmp/x.
            "EMAIL_URL": f"filemail:///{self.mail_dir}",
            "TENANT_POOL_SIZE": "1",
            "SECURE_SSL_REDIRECT": "false",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "LOG_LEVEL": "INFO",
            "WEB_CONCURRENCY": "2",
        }
        for name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
            self.env.pop(name, None)  # Celery prefers these over the settings: REDIS_URL must decide
        # As the Procfile runs it: two daphnes on one port (scripts/web.py), so pages, API calls and websockets
        # of one test land on different processes and meet only through Postgres and Redis, as in production.
        self.web = Process("web", [sys.executable, "scripts/web.py", "--bind", "127.0.0.1", "--port", str(self.port),
                                   "--", "--access-log", "-"],
                           env=self.env, log_dir=self.log_dir)
        self.worker = Process("celery", [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default",
                                         "-P", "solo", "-c", "1", "-n", self.worker_name, "-l", "INFO",
                                         "--without-gossip", "--without-mingle", "--without-heartbeat"],
                              env=self.env, log_dir=self.log_dir)
        self.processes = [self.web, self.worker]
        self.whatsapp = None
        if whatsapp is not None:
            self._add_whatsapp_worker(**whatsapp)

    def _add_whatsapp_worker(self, *, qr_seconds=None, max_qr_attempts=None):
        """The `whatsapp` process (session host) with the simulator, as the Procfile runs it: threads pool, its
        own per-host queue added by the bootstep. Every process sees the simulator (the pages show its banner)."""
        self.whatsapp_worker_name = f"whatsapp-{secrets.token_hex(4)}@{socket.gethostname()}"
        self.env["WHATSAPP_PROVIDER"] = "simulator"
        self.env["WHATSAPP_STORE_DIR"] = str(self.work_dir / "whatsapp-store")
        if qr_seconds is not None:
            self.env["WHATSAPP_SIMULATOR_QR_SECONDS"] = str(qr_seconds)
        if max_qr_attempts is not None:
            self.env["WHATSAPP_MAX_QR_ATTEMPTS"] = str(max_qr_attempts)
        self.whatsapp = Process("whatsapp", [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "whatsapp",
                                             "-P", "threads", "-c", "4", "-n", self.whatsapp_worker_name,
                                             "-l", "INFO", "--without-gossip", "--without-mingle",
                                             "--without-heartbeat"],
                                env=self.env, log_dir=self.log_dir)
        self.processes.append(self.whatsapp)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self):
        started = time.monotonic()
        try:
            for process in self.processes:
                process.start()
            self._wait_for_web()
            self._wait_for_worker(self.worker_name)
            if self.whatsapp is not None:
                self._wait_for_worker(self.whatsapp_worker_name)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self):
        # A warm Celery shutdown waits for the running task (a pool refill migrates a whole schema); the
        # test is over, so don't wait: SIGQUIT is Celery's cold shutdown.
        self.worker.stop(signal.SIGQUIT)
        if self.whatsapp is not None:
            self.whatsapp.stop(signal.SIGQUIT)
        self.web.stop(signal.SIGTERM)

    def _check_alive(self):
        for process in self.processes:
            if process.popen is not None and not process.alive:
                raise RuntimeError(f"{process.name} exited with {process.popen.returncode} during startup\n"
                                   f"{self.logs()}")

    def _wait_for_web(self):
        def answers():
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(answers, timeout=START_TIMEOUT, message=f"the web process at {self.url}/health")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.logs()}") from None

    def _wait_for_worker(self, name):
        def pong():
            self._check_alive()
            return self.celery_app.control.ping(destination=[name], timeout=0.5)

        try:
            wait_until(pong, timeout=START_TIMEOUT, interval=0.2, message=f"celery worker {name}")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.logs()}") from None

    def logs(self, last=200):
        return "\n".join(
            f"----- {p.name} ({p.log_path}) -----\n{p.output(last=last)}" for p in self.processes
        )


class Mailbox:
    """Emails written by Django's file backend (EMAIL_URL=filemail://…) by any process."""

    SEPARATOR = b"\n" + b"-" * 79 + b"\n"

    def __init__(self, directory):
        self.directory = Path(directory)

    def messages(self):
        found = []
        for path in sorted(self.directory.glob("*.log")):
            # The backend writes each message followed by the separator: what follows the last separator is
            # a message still being written.
            chunks = path.read_bytes().split(self.SEPARATOR)[:-1]
            for chunk in chunks:
                if chunk.strip():
                    found.append(email.message_from_bytes(chunk, policy=email.policy.default))
        return found

    @staticmethod
    def text(message):
        body = message.get_body(preferencelist=("plain", "html"))
        return body.get_content() if body is not None else ""

    def find(self, *, to, subject_contains=""):
        return [m for m in self.messages()
                if to.lower() in str(m["To"]).lower() and subject_contains.lower() in str(m["Subject"]).lower()]

    def wait_for(self, *, to, subject_contains="", timeout=15.0):
        return wait_until(lambda: self.find(to=to, subject_contains=subject_contains)[-1:], timeout=timeout,
                          interval=0.2, message=f"an email to {to} about {subject_contains!r}")[0]

    def link(self, message, pattern):
        match = re.search(pattern, self.text(message))
        assert match, f"no link matching {pattern!r} in:\n{self.text(message)}"
        return match.group(0)


def outside_event_loop(func, *args, **kwargs):
    """Run ORM code while Playwright's sync API is active.

    Playwright's sync API keeps an asyncio loop registered as running in the main thread, so Django refuses
    ORM calls there (SynchronousOnlyOperation) and async_to_sync refuses to run. A short-lived thread has
    neither problem; its database connection is closed before it ends so nothing is left open for the flush.
    """
    from django.db import connections

    result = {}

    def run():
        try:
            result["value"] = func(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


# --- pages in Chromium (Playwright's sync API) ------------------------------------------------------------------


def new_page(browser, live_system, **options):
    """A page in a browser context of its own (its own cookies) on the live server; options go to new_context."""
    context = browser.new_context(base_url=live_system.url, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def log_in(page, email, password=PASSWORD):
    """Through the login page; the caller waits for where the login lands."""
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


# The innermost elements reaching past the viewport's right edge: what to fix when a page overflows.
_OVERFLOWING = """() => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                 && ![...e.children].some(c => c.getBoundingClientRect().right > document.documentElement.clientWidth + 1))
    .slice(0, 5).map(e => `${e.tagName.toLowerCase()}${e.className ? '.' + e.className : ''}`
                          + ` (right ${Math.round(e.getBoundingClientRect().right)}): ${e.textContent.trim().slice(0, 60)}`)"""


def assert_fits_phone(page, what):
    # After a form's POST → redirect, the checks that found an element ran while the new page's stylesheet may still
    # be loading (the parser goes on meanwhile): measured unstyled, the members table was 508 px once on a busy CI.
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        offenders = page.evaluate(_OVERFLOWING)
        raise AssertionError(f"horizontal overflow at 390 px on {what}: scrollWidth={width}; {offenders}")
