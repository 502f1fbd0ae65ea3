"""Celery's face of backups (autodiscovery imports <app>.tasks): each task is defined beside what it runs."""
from .actions import housekeeping_task, nightly_backup, scheduled_base_backup
from .exports import run_export
from .restoring import run_restore
from .runner import run_backup
from .wal import ship_wal_task

__all__ = ["housekeeping_task", "nightly_backup", "run_backup", "run_export", "run_restore", "scheduled_base_backup",
           "ship_wal_task"]
