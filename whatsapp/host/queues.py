"""Queue names of the session hosts (no Django imports: the Celery app loads this at configuration time)."""

SHARED_QUEUE = "whatsapp"  # every host: wake-ups to claim free sessions now


def host_queue(host_id):
    """One host: commands for the sessions it runs."""
    return f"whatsapp.host.{host_id}"
