"""The Django part of scripts/bootstrap.sh, in one process so that Django starts once rather than five times.

Same as running, in order: manage.py migrate_schemas --shared; manage.py migrate_schemas; manage.py
collectstatic --noinput; manage.py fill_tenant_pool; manage.py ensure_platform_admin.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = [
    ("django: migrating the shared schema", ["migrate_schemas", "--shared", "--noinput", "-v0"]),
    ("django: migrating tenant schemas", ["migrate_schemas", "--noinput", "-v0"]),
    (None, ["collectstatic", "--noinput", "-v0"]),
    (None, ["fill_tenant_pool"]),
    (None, ["ensure_platform_admin"]),
]


def main():
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    for message, argv in STEPS:
        if message:
            print(message, flush=True)
        call_command(*argv)


if __name__ == "__main__":
    main()
