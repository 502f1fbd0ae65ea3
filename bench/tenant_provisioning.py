"""Approval to a ready tenant: warm pool vs django-tenants' default create-and-migrate path.

Both paths start from a pending tenant with an owner (as after sign-up) and end with the tenant active and
its schema fully migrated. They run interleaved in the same process, on a throwaway database.

  pool     tenants.actions.approve_tenant with a pooled schema available: one transaction (lock the tenant,
           claim a pooled row, update, Domain, audit row) plus its on-commit hooks as a user experiences them
           (live status updates through the Redis channel layer, the pending-count query, the approval email
           task and the pool refill task published to Redis). The pool is filled before timing starts; the
           published tasks are not consumed by any worker during the run and are purged afterwards.
  default  the same bookkeeping (update, Domain, audit row, the same on-commit notifications), and the schema
           made the way django-tenants does it when a tenant with auto_create_schema is saved:
           TenantMixin.save -> create_schema -> CREATE SCHEMA + migrate_schemas --schema <name>.

Usage: .venv/bin/python bench/tenant_provisioning.py [--runs 15] [--profile]
"""
import argparse
import os
import sys
import time
import uuid

from _common import bench_database, emit, median_ms, quiet_logging, spread


def configure_celery(prefix):
    """Publishing is real (Redis) but lands under a bench-only key prefix no worker listens to."""
    from django.conf import settings

    from config.celery import app

    app.conf.task_always_eager = False
    app.conf.broker_url = settings.CELERY_BROKER_URL
    app.conf.broker_transport_options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": prefix}
    return app


def purge_redis(prefix):
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    queued = sum(client.llen(k) for k in keys if client.type(k) == b"list")
    if keys:
        client.delete(*keys)
    return queued


def make_pending(index, plan):
    from accounts.actions import register_business
    from accounts.models import User

    owner = User.objects.create_user(email=f"owner{index}@bench.test", password=None, full_name=f"Owner {index}")
    return register_business(user=owner, business_name=f"Bench Business {index}", plan=plan)


def approve_default_path(tenant, *, acting_user):
    """What approving looks like with django-tenants' stock behaviour: the schema is made during the request."""
    from django.db import transaction
    from django.utils import timezone

    from audit import actions as audit
    from tenants.actions import _announce, snapshot
    from tenants.models import Domain, Tenant

    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        before = snapshot(tenant)
        now = timezone.now()
        tenant.approved_at = now
        tenant.start_trial(now)
        tenant.schema_name = Tenant.new_schema_name()
        tenant.status = Tenant.Status.ACTIVE
        tenant.provisioning_progress = 100
        tenant.save()
        Domain.objects.get_or_create(tenant=tenant, domain=tenant.subdomain, defaults={"is_primary": True})
        audit.record("tenant.approved", actor=acting_user, target=tenant, before=before, after=snapshot(tenant),
                     tenant=tenant)
        _announce(tenant, "approved")
    # TenantMixin.save on a tenant whose schema does not exist yet: create_schema(check_if_exists=True),
    # i.e. CREATE SCHEMA and `migrate_schemas --tenant --schema <name>` (django-tenants' own path; our
    # migrate_schemas hands an explicit --schema to django-tenants unchanged).
    tenant.auto_create_schema = True
    tenant.save(verbosity=0, update_fields=["schema_name"])
    return tenant


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="profile one pool approval with pyinstrument")
    options = parser.parse_args()
    runs = options.runs
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
    prefix = f"sbbench{os.getpid()}-{uuid.uuid4().hex[:6]}:"

    with bench_database() as dbname:
        quiet_logging()
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from accounts.models import User
        from tenants import pool
        from tenants.actions import approve_tenant
        from tenants.migration_state import schemas_behind
        from tenants.models import Plan, Tenant

        configure_celery(prefix)
        try:
            admin = User.objects.create_superuser(email="admin@bench.test", password=None, full_name="Admin")
            plan = Plan.objects.order_by("sort_order").first()
            pending_pool = [make_pending(i, plan) for i in range(runs + 1)]
            pending_default = [make_pending(1000 + i, plan) for i in range(runs + 1)]

            started = time.perf_counter()
            pool.fill_pool(runs + 1)
            print(f"pool pre-filled with {pool.pooled_count()} schemas in {time.perf_counter() - started:.1f} s "
                  "(outside the timed section)")

            # One untimed approval per path first (connections to Redis, template loading, imports); the pool
            # one also counts the SQL statements an approval issues.
            with CaptureQueriesContext(connection) as queries:
                approve_tenant(pending_pool.pop(), acting_user=admin)
            pool_statements = [q["sql"] for q in queries.captured_queries]
            approve_default_path(pending_default.pop(), acting_user=admin)

            pool_times, default_times = [], []
            for pool_tenant, default_tenant in zip(pending_pool, pending_default):
                t0 = time.perf_counter()
                approved = approve_tenant(pool_tenant, acting_user=admin)
                pool_times.append(time.perf_counter() - t0)
                assert approved.status == Tenant.Status.ACTIVE, approved.status

                t0 = time.perf_counter()
                approved = approve_default_path(default_tenant, acting_user=admin)
                default_times.append(time.perf_counter() - t0)
                assert approved.status == Tenant.Status.ACTIVE, approved.status

            # Ready means active and fully migrated: check every approved tenant's schema.
            connection.set_schema_to_public()
            active = list(Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True))
            report = schemas_behind(connection, active)
            assert len(report.checked) == len(active) == 2 * (runs + 1), (len(report.checked), len(active))
            assert not report.behind and not report.missing, report

            profile_text = None
            pool_median = median_ms(pool_times)
            if options.profile or pool_median > 50:
                profile_text = profile_pool_approval(admin, plan)
        finally:
            published = purge_redis(prefix)

    default_median = median_ms(default_times)
    print("inside the timed section:")
    print("  pool:    approve_tenant() incl. its on-commit hooks (announcement + pool refill tasks published "
          "to Redis); pool filled beforehand")
    print("  default: same bookkeeping and hooks + CREATE SCHEMA + migrate_schemas --schema (TenantMixin.save)")
    print(f"pool path     ({runs} runs): {spread(pool_times)}")
    print(f"default path  ({runs} runs): {spread(default_times)}")
    print(f"{len(active)} approved tenants verified active with fully migrated schemas; "
          f"{published} published task messages purged from Redis")
    print(f"a pool approval issues {len(pool_statements)} SQL statements "
          f"({sum(s.startswith('SET search_path') for s in pool_statements)} of them SET search_path)")
    print(f"default / pool: {default_median / pool_median:.0f}x; targets: pool < 50 ms, >= 20x")
    if profile_text:
        print(profile_text)
    emit({
        "bench": "tenant_provisioning",
        "pool_median_ms": pool_median,
        "default_median_ms": default_median,
        "ratio": round(default_median / pool_median, 1),
        "runs": runs,
        "database": dbname,
    })


def profile_pool_approval(admin, plan, approvals=5):
    """Where a pool approval's time goes, sampled over a few approvals (pool filled first, untimed)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return "(pyinstrument not installed: no profile)"
    from tenants import pool
    from tenants.actions import approve_tenant

    pool.fill_pool(approvals)
    tenants = [make_pending(9000 + i, plan) for i in range(approvals)]
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for tenant in tenants:
        approve_tenant(tenant, acting_user=admin)
    profiler.stop()
    return f"profile of {approvals} pool approvals:\n" + profiler.output_text(unicode=False, color=False)


if __name__ == "__main__":
    sys.exit(main())
