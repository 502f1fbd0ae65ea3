from celery import shared_task

from . import deletion


@shared_task(name="accounts.tasks.delete_due_workspaces")
def delete_due_workspaces():
    """Beat: delete the workspaces whose deletion grace period is over (accounts.deletion)."""
    return deletion.delete_due_workspaces()
