from django.db import models


class SessionLease(models.Model):
    """One row per session that should be running, in any tenant. A host owns a session while its lease is
    fresh; it renews every heartbeat. An expired lease (its host died) is free for any host to claim."""

    schema_name = models.CharField(max_length=63)
    session_id = models.BigIntegerField()
    host_id = models.CharField(max_length=200, blank=True, db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Counted up by every claim: the holder's writes check it (leases.Fence), so a host that lost the lease while
    # paused changes nothing when it wakes.
    generation = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schema_name", "session_id"], name="lease_session_unique")]

    def __str__(self):
        return f"{self.schema_name}:{self.session_id} @ {self.host_id or '-'}"

    @property
    def session_key(self):
        return f"{self.schema_name}:{self.session_id}"
