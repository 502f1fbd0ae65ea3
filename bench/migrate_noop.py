"""A deploy's `migrate_schemas` with nothing to apply: ours (only schemas that are behind) vs django-tenants'.

Tenant schemas are made the normal way (tenants.pool.create_pooled_tenant: CREATE SCHEMA + migrate_schemas
--schema), in parallel worker processes, on a throwaway database; making them is not timed. Then the whole
deploy command (public schema + every tenant schema, verbosity 1, output captured) is timed in-process for
ours and for django-tenants' stock MigrateSchemasCommand at 100 tenants, and for ours at 1,000. Stock at
1,000 is extrapolated from its measured per-tenant cost unless --stock-1000 is given. Ours is also timed
once as a real `manage.py migrate_schemas` process (Django start-up and system checks included).

The whole run is bounded (--timeout, default from the largest size): past it, every thread's traceback is printed
and the bench fails (exit status 1) instead of hanging; making the tenants has a bound of its own.

Usage: .venv/bin/python bench/migrate_noop.py [--tenants 100 1000] [--repeat 3] [--workers N] [--stock-1000]
       [--timeout SECONDS]
"""
import argparse
import contextlib
import faulthandler
import io
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time

from _common import BASE_DIR, bench_database, emit, quiet_logging

# Making one tenant schema (CREATE SCHEMA + every tenant migration) took 1 to 3 s here (3 processes on 2 CPUs);
# the bounds allow several times that, so only a stuck run reaches them.
MAKE_TENANT_BOUND_SECONDS = 10
SPAWN_BOUND_SECONDS = 120  # processes starting and setting Django up


def _set_django_up():
    """A spawned worker's start: Django set up afresh (DATABASE_URL, the bench database, comes in the environment)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    quiet_logging()


def _make_tenants(count):
    from django.db import connections

    from tenants import pool

    try:
        for _ in range(count):
            pool.create_pooled_tenant()
    finally:
        connections.close_all()
    return count


def generate_tenants(count, workers):
    """`count` more tenants with schemas migrated the normal way, split over `workers` processes. The processes
    are spawned, not forked: this one holds threads (the connection pool's), and a forked child inherits their
    locks as they were, possibly held by a thread it does not have; forked workers hung on them for good. Fails
    with TimeoutError if the tenants are not made in time."""
    if count <= 0:
        return
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    bound = SPAWN_BOUND_SECONDS + MAKE_TENANT_BOUND_SECONDS * max(shares)
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_set_django_up) as processes:
        pending = processes.map_async(_make_tenants, [s for s in shares if s])
        try:
            made = sum(pending.get(timeout=bound))
        except multiprocessing.TimeoutError:
            raise TimeoutError(f"making {count} tenants in {workers} processes took more than {bound} s: stuck "
                               f"(the workers are stopped)") from None
    assert made == count, made


def fail_after(seconds):
    """Past `seconds`, print every thread's traceback and raise TimeoutError in the main thread (the bench
    database is still dropped on the way out)."""
    def expired(signum, frame):
        faulthandler.dump_traceback(all_threads=True)
        raise TimeoutError(f"migrate_noop: still running after {seconds} s (--timeout); where each thread was is "
                           f"printed above")

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


def timed_command(command, repeat):
    """Median wall time of call_command(command) over `repeat` runs, and the last run's output."""
    from django.core.management import call_command
    from django.db import connection

    times, output = [], ""
    for _ in range(repeat):
        buffer = io.StringIO()
        connection.set_schema_to_public()
        started = time.perf_counter()
        # django-tenants' executor writes the per-schema lines to sys.stdout: capture both streams.
        with contextlib.redirect_stdout(buffer):
            call_command(command, interactive=False, verbosity=1, stdout=buffer)
        times.append(time.perf_counter() - started)
        output = buffer.getvalue()
    return statistics.median(times), times, output


def our_line(output):
    return next((line for line in output.splitlines() if line.startswith("tenant schemas:")), "(no summary line)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stock-repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=max(2, (os.cpu_count() or 1) + 1))
    parser.add_argument("--stock-1000", action="store_true", help="also run the stock command at the largest size")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds the whole run may take (default: 600 + 5 per tenant of the largest size)")
    options = parser.parse_args()
    sizes = sorted(options.tenants)
    fail_after(options.timeout or 600 + 5 * sizes[-1])

    figures = {"bench": "migrate_noop"}
    with bench_database() as dbname:
        quiet_logging()
        from django.core.management import call_command
        from django.db import connection
        from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand as StockCommand

        from accounts.models import User
        from tenants.actions import register_business
        from tenants.models import Plan, Tenant

        stock_per_tenant_ms = None
        buffer = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            call_command("migrate_schemas", shared=True, interactive=False, verbosity=1, stdout=buffer)
        public_s = time.perf_counter() - started
        print(f"public schema alone (no-op): {public_s:.2f} s")

        made = 0
        for size in sizes:
            started = time.perf_counter()
            generate_tenants(size - made, options.workers)
            made = size
            connection.set_schema_to_public()
            assert Tenant.objects.count() == size
            print(f"{size} tenants: schemas made the normal way in {time.perf_counter() - started:.0f} s "
                  f"({options.workers} processes, not timed)")

            ours_s, ours_all, output = timed_command("migrate_schemas", options.repeat)
            print(f"  ours:  median {ours_s:.2f} s over {len(ours_all)} runs "
                  f"({', '.join(f'{t:.2f}' for t in ours_all)}); {our_line(output)}")
            assert f"{size} checked, 0 behind" in output, output[-500:]
            figures[f"ours_{size}_s"] = round(ours_s, 3)

            if size == sizes[0] or options.stock_1000:
                stock_s, stock_all, output = timed_command(StockCommand(), options.stock_repeat)
                stock_per_tenant_ms = (stock_s - public_s) / size * 1000
                print(f"  stock: median {stock_s:.2f} s over {len(stock_all)} runs; "
                      f"{stock_per_tenant_ms:.0f} ms per tenant schema")
                figures[f"stock_{size}_s"] = round(stock_s, 2)
                figures[f"ratio_{size}"] = round(stock_s / ours_s, 1)
            else:
                extrapolated = public_s + stock_per_tenant_ms * size / 1000
                print(f"  stock: not run at {size}; EXTRAPOLATED from {sizes[0]} tenants: ~{extrapolated:.0f} s "
                      f"({stock_per_tenant_ms:.0f} ms x {size} + public)")
                figures[f"stock_{size}_extrapolated_s"] = round(extrapolated, 1)
                figures[f"ratio_{size}_extrapolated"] = round(extrapolated / ours_s, 1)

        # Pending and rejected sign-ups have placeholder schema names that never exist: they must not count.
        plan = Plan.objects.first()
        for i in range(10):
            owner = User.objects.create_user(email=f"pending{i}@bench.test", password=None)
            register_business(user=owner, business_name=f"Pending {i}", plan=plan)
        ours_s, _, output = timed_command("migrate_schemas", 1)
        print(f"with 10 pending sign-ups added: {ours_s:.2f} s; {our_line(output)}")

        # What a deploy actually runs: a fresh process, Django start-up and system checks included.
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate_schemas", "--noinput"], cwd=BASE_DIR, capture_output=True,
            text=True, env={**os.environ},
        )
        process_s = time.perf_counter() - started
        assert result.returncode == 0, result.stderr[-2000:]
        print(f"`manage.py migrate_schemas` process at {made} tenants: {process_s:.2f} s; {our_line(result.stdout)}")
        figures[f"ours_{made}_process_s"] = round(process_s, 2)

    if stock_per_tenant_ms is not None:
        figures["stock_per_tenant_ms"] = round(stock_per_tenant_ms, 1)
    figures["public_s"] = round(public_s, 3)
    figures["database"] = dbname
    print("target: under 10 s at 1,000 tenants")
    emit(figures)


if __name__ == "__main__":
    sys.exit(main())
